"""Teachers write the chain of thought: ``lexicon`` and ``rules`` (offline baselines), ``openai`` (any compatible
server), ``vllm``.

A teacher takes requests (the chat messages plus the text and, in guided mode, the gold label) and yields
``(index, TeacherOutput)`` as each reply completes, so the caller can write every result to disk at once.
``finsent ls teachers`` lists them.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import os
import queue
import random
import re
import threading
from collections.abc import Callable, Generator, Sequence
from dataclasses import dataclass
from typing import Protocol

import httpx2
import openai

from finsent.completion import render_completion, strip_think
from finsent.config import TeacherConfig
from finsent.data.transactions import CATEGORY_NAMES, categorize
from finsent.errors import ConfigError
from finsent.lexicon import find_cues, load_lexicon
from finsent.registry import Registry

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class TeacherRequest:
    """One example to explain. ``gold_label`` is None in blind mode: the teacher must find the label itself."""

    id: str
    messages: list[dict[str, str]]
    text: str
    gold_label: str | None


@dataclass(frozen=True)
class TeacherOutput:
    """One reply: ``text`` (``<think>`` blocks removed), or ``error`` when no reply came after all retries."""

    text: str | None
    error: str | None
    prompt_tokens: int = 0
    completion_tokens: int = 0


class Teacher(Protocol):
    """Writes completions for requests; built from a ``TeacherConfig`` by the factory registered in ``TEACHERS``."""

    def generate(
        self, requests: Sequence[TeacherRequest], temperature: float
    ) -> Generator[tuple[int, TeacherOutput], None, None]:
        """Yield ``(index into requests, output)`` for every request, in the order they complete."""
        ...


TeacherFactory = Callable[[TeacherConfig], Teacher]
TEACHERS: Registry[TeacherFactory] = Registry("teacher")


def load_teacher(cfg: TeacherConfig) -> Teacher:
    """Return the teacher named by ``cfg.name``; unknown names list the known ones."""
    if cfg.name not in TEACHERS:
        raise ConfigError(TEACHERS.unknown_message(cfg.name), field="teacher.name")
    return TEACHERS.get(cfg.name)(cfg)


# --- lexicon ------------------------------------------------------------------------------------------------------

_FIGURE = re.compile(
    r"(?:EUR|USD|GBP|SEK|NOK|DKK|\$|€|£)\s?\d+(?:,\d{3})*(?:\.\d+)?(?:\s?(?:mn|m|bn|million|billion)\b)?"
    r"|\d+(?:,\d{3})*(?:\.\d+)?\s?(?:%|percent\b|per cent\b)"
)
_POSITIVE_CUES = (
    "The text uses positive wording: {cues}.",
    "Favourable cue words stand out: {cues}.",
    "Positive signals for an investor include {cues}.",
)
_NEGATIVE_CUES = (
    "The text uses negative wording: {cues}.",
    "Unfavourable cue words stand out: {cues}.",
    "Negative signals for an investor include {cues}.",
)
_NO_CUES = (
    "None of the lexicon's positive or negative cue words occur in the text.",
    "The text contains no cue word from the sentiment lexicon.",
    "No word from the cue list signals a gain or a loss here.",
)
_FIGURES = (
    "It cites {figures}.",
    "Figures in the text: {figures}.",
    "The text quotes {figures}.",
)
_AGREE = (
    "Taken together, the sentiment for an investor is {label}.",
    "On balance the text reads as {label}.",
    "So the label is {label}.",
)
_DISAGREE = (
    "The cue words alone would suggest {polarity}, so the {label} label rests on context the word list misses.",
    "A count of cue words points to {polarity}, yet the statement as a whole is {label}.",
)


class TemplateTeacher:
    """An offline teacher that fills templates: ``explain`` writes each completion from a seeded generator.

    Unlike model teachers, it explains one task only (``task``), which the recipe checks name.
    """

    task: str
    seed: int

    def generate(
        self, requests: Sequence[TeacherRequest], temperature: float
    ) -> Generator[tuple[int, TeacherOutput], None, None]:
        for index, request in enumerate(requests):
            # Seeded per request and round, so a resumed run writes the same text and a retry a different one.
            rng = random.Random(f"{self.seed}:{request.id}:{temperature}")
            yield index, TeacherOutput(self.explain(request.text, request.gold_label, rng), None)

    def explain(self, text: str, gold_label: str | None, rng: random.Random) -> str:
        raise NotImplementedError


@TEACHERS.register("lexicon")
class LexiconTeacher(TemplateTeacher):
    """Offline baseline, no model: a templated rationale quoting the lexicon's cue words and the text's figures.

    Guided mode ends with the gold label; blind mode answers with the cue words' polarity. The teacher name
    ``lexicon`` in every record marks the data as baseline reasoning; ``teacher.lexicon`` picks the word lists.
    """

    task = "sentiment"

    def __init__(self, cfg: TeacherConfig) -> None:
        self.lexicon = load_lexicon(cfg.lexicon)
        self.seed = cfg.seed

    def explain(self, text: str, gold_label: str | None, rng: random.Random) -> str:
        """Return a completion for ``text``: cue words, figures, then ``gold_label`` (or the cue polarity)."""
        cues = find_cues(text, self.lexicon)
        sentences = []
        if cues.positive:
            sentences.append(rng.choice(_POSITIVE_CUES).format(cues=_quote(cues.positive)))
        if cues.negative:
            sentences.append(rng.choice(_NEGATIVE_CUES).format(cues=_quote(cues.negative)))
        if not cues.positive and not cues.negative:
            sentences.append(rng.choice(_NO_CUES))
        figures = list(dict.fromkeys(" ".join(match.split()) for match in _FIGURE.findall(text)))[:3]
        if figures:
            sentences.append(rng.choice(_FIGURES).format(figures=_join(figures)))
        label = gold_label or cues.polarity
        if label == cues.polarity:
            sentences.append(rng.choice(_AGREE).format(label=label))
        else:
            sentences.append(rng.choice(_DISAGREE).format(polarity=cues.polarity, label=label))
        return render_completion(" ".join(sentences), label)


def _quote(words: Sequence[str]) -> str:
    return _join([f'"{word}"' for word in dict.fromkeys(words)][:3])


def _join(items: list[str]) -> str:
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


# --- rules --------------------------------------------------------------------------------------------------------

_KEYWORD = (
    'The description names "{keyword}", which the merchant rules file under {name}.',
    'The merchant keyword "{keyword}" in the description points to {name}.',
    'The rules match "{keyword}" in the description: a {name} merchant.',
)
_NO_KEYWORD = (
    "No merchant keyword from the rules appears in the description.",
    "The description holds no merchant or keyword the rules know.",
)
_FLOW = (
    "The amount {amount} is money {direction}.",
    "It moves {amount}, money {direction}.",
)
_RULES_AGREE = (
    "So the category is {name}.",
    "That makes it {name}.",
)
_RULES_DISAGREE = (
    "The keyword rules alone would say {rule_name}, but the transaction as a whole is {name}.",
    "A keyword lookup gives {rule_name}; the transaction itself is {name}.",
)
_AMOUNT = re.compile(r"[+-]?[$£€₹]?\s?\d[\d,. ]*\d(?:\s?(?:USD|EUR|GBP|INR|CR|DR))?|[+-]?[$£€₹]?\d+")
_CREDIT = re.compile(r"(?:^|\s)\+|\bCR\b|\b(?:REFUND|RETURN|CREDIT|DEPOSIT|PAYROLL|SALARY|FROM)\b", re.IGNORECASE)


@TEACHERS.register("rules")
class RulesTeacher(TemplateTeacher):
    """Offline baseline for transactions, no model: the merchant keyword that decides the category, and the amount.

    Guided mode ends with the gold category; blind mode answers the rules' category. The teacher name ``rules`` in
    every record marks the data as baseline reasoning. The keyword table is ``finsent.data.transactions.KEYWORDS``,
    shared with the ``rules`` baseline.
    """

    task = "transactions"

    def __init__(self, cfg: TeacherConfig) -> None:
        self.seed = cfg.seed

    def explain(self, text: str, gold_label: str | None, rng: random.Random) -> str:
        """Return a completion for ``text``: the deciding keyword, the amount, then ``gold_label`` (or the rules')."""
        match = categorize(text)
        label = gold_label or match.label
        name = CATEGORY_NAMES.get(label, label)
        sentences = []
        if match.keyword:
            sentences.append(rng.choice(_KEYWORD).format(keyword=match.keyword, name=CATEGORY_NAMES[match.label]))
        else:
            sentences.append(rng.choice(_NO_KEYWORD))
        amounts = _AMOUNT.findall(text)
        if amounts:
            direction = "in" if _CREDIT.search(text) else "out"
            sentences.append(rng.choice(_FLOW).format(amount=amounts[-1].strip(), direction=direction))
        if label == match.label:
            sentences.append(rng.choice(_RULES_AGREE).format(name=name))
        else:
            sentences.append(rng.choice(_RULES_DISAGREE).format(rule_name=CATEGORY_NAMES[match.label], name=name))
        return render_completion(" ".join(sentences), label)


# --- openai -------------------------------------------------------------------------------------------------------


@TEACHERS.register("openai")
class OpenAITeacher:
    """Any OpenAI-compatible chat-completions server (vLLM serve, llama.cpp, Ollama, OpenAI), async with retries.

    Requests are spread round-robin over ``base_urls``, at most ``max_concurrency`` in flight. The ``openai`` client
    retries 408/409/429/5xx, timeouts and connection errors with exponential backoff and jitter, honouring
    ``Retry-After``/``retry-after-ms`` up to two minutes; an unreadable 200 reply is retried the same way.
    """

    def __init__(self, cfg: TeacherConfig) -> None:
        if not cfg.model:
            raise ConfigError("", field="teacher.model", expected="the model name the server serves", got=cfg.model)
        self.cfg = cfg
        self.model: str = cfg.model
        # The client refuses to start without a key; keyless servers (vLLM, llama.cpp) ignore this placeholder.
        self.api_key = os.environ.get(cfg.api_key_env) or "EMPTY"

    def generate(
        self, requests: Sequence[TeacherRequest], temperature: float
    ) -> Generator[tuple[int, TeacherOutput], None, None]:
        if not requests:
            return
        # The event loop runs in a thread feeding a queue, so callers get a plain generator; closing it (or a
        # KeyboardInterrupt while waiting) cancels the in-flight requests and joins the thread.
        results: queue.SimpleQueue[tuple[int, TeacherOutput] | Exception] = queue.SimpleQueue()
        loop = asyncio.new_event_loop()
        task = loop.create_task(self._generate_all(requests, temperature, results))
        thread = threading.Thread(target=_run_loop, args=(loop, task), name="finsent-openai-teacher", daemon=True)
        thread.start()
        try:
            for _ in requests:
                item = results.get()
                if isinstance(item, Exception):
                    raise item
                yield item
        finally:
            loop.call_soon_threadsafe(task.cancel)
            thread.join()
            loop.close()

    async def _generate_all(
        self,
        requests: Sequence[TeacherRequest],
        temperature: float,
        results: queue.SimpleQueue[tuple[int, TeacherOutput] | Exception],
    ) -> None:
        try:
            pending = iter(enumerate(requests))
            async with contextlib.AsyncExitStack() as stack:
                clients = itertools.cycle(
                    [await stack.enter_async_context(self._client(url)) for url in self.cfg.base_urls]
                )

                async def work() -> None:
                    for index, request in pending:
                        results.put((index, await self._complete(next(clients), request, temperature)))

                # A fixed pool of workers (rather than one task per request) bounds memory on large datasets.
                async with asyncio.TaskGroup() as group:
                    for _ in range(min(self.cfg.max_concurrency, len(requests))):
                        group.create_task(work())
        except Exception as err:  # handed to the consuming thread, which raises it
            results.put(err)

    def _client(self, base_url: str) -> openai.AsyncOpenAI:
        return openai.AsyncOpenAI(
            base_url=base_url,
            api_key=self.api_key,
            max_retries=self.cfg.max_retries,
            timeout=self.cfg.timeout_s,
            http_client=openai.DefaultAsyncHttpxClient(event_hooks={"response": [_require_chat_completion]}),
        )

    async def _complete(
        self, client: openai.AsyncOpenAI, request: TeacherRequest, temperature: float
    ) -> TeacherOutput:
        try:
            completion = await client.chat.completions.create(
                model=self.model,
                messages=request.messages,
                temperature=temperature,
                top_p=self.cfg.top_p,
                max_tokens=self.cfg.max_tokens,
                seed=self.cfg.seed,
            )
        except openai.APIStatusError as err:
            error = f"http_{err.status_code}"
        except openai.APITimeoutError:
            error = "timeout"
        except openai.APIConnectionError as err:
            error = "invalid_body" if isinstance(err.__cause__, httpx2.DecodingError) else "connection_error"
        else:
            usage = completion.usage
            return TeacherOutput(
                strip_think(completion.choices[0].message.content or ""),
                None,
                (usage.prompt_tokens or 0) if usage else 0,
                (usage.completion_tokens or 0) if usage else 0,
            )
        logger.warning("%s: request %s failed: %s", client.base_url, request.id, error)
        return TeacherOutput(None, error)


async def _require_chat_completion(response: httpx2.Response) -> None:
    # The openai client retries statuses, timeouts and dropped connections but hands back a 200 whose body is cut off
    # or is no chat completion; a transport error raised here, inside its send, makes it retry those the same way.
    if response.is_success:
        await response.aread()
        try:
            response.json()["choices"][0]["message"]["content"]
        except (ValueError, LookupError, TypeError) as err:
            raise httpx2.DecodingError(f"not a chat completion: {err!r}", request=response.request) from err


def _run_loop(loop: asyncio.AbstractEventLoop, task: asyncio.Task[None]) -> None:
    asyncio.set_event_loop(loop)
    with contextlib.suppress(asyncio.CancelledError):
        loop.run_until_complete(task)
    loop.run_until_complete(loop.shutdown_asyncgens())


# --- vllm ---------------------------------------------------------------------------------------------------------


@TEACHERS.register("vllm")
class VLLMTeacher:
    """In-process vLLM (``pip install 'finsent[vllm]'``); sends ``max_concurrency`` requests per batch."""

    def __init__(self, cfg: TeacherConfig) -> None:
        try:
            import vllm
        except ModuleNotFoundError as err:
            raise ConfigError(
                "the vllm teacher needs vLLM: pip install 'finsent[vllm]' (or use the openai teacher against "
                "`vllm serve`)",
                field="teacher.name",
            ) from err
        if not cfg.model:
            raise ConfigError("", field="teacher.model", expected="a hub id or local model path", got=cfg.model)
        self.cfg = cfg
        self.sampling_params = vllm.SamplingParams
        self.llm = vllm.LLM(
            model=cfg.model,
            tensor_parallel_size=cfg.tensor_parallel_size,
            gpu_memory_utilization=cfg.gpu_memory_utilization,
            seed=cfg.seed,
        )

    def generate(
        self, requests: Sequence[TeacherRequest], temperature: float
    ) -> Generator[tuple[int, TeacherOutput], None, None]:
        params = self.sampling_params(temperature=temperature, top_p=self.cfg.top_p, max_tokens=self.cfg.max_tokens)
        # vLLM returns a batch only when all of it is done: small batches bound what a crash loses.
        for start in range(0, len(requests), self.cfg.max_concurrency):
            batch = requests[start : start + self.cfg.max_concurrency]
            outputs = self.llm.chat([request.messages for request in batch], params, use_tqdm=False)
            for offset, output in enumerate(outputs):
                completion = output.outputs[0]
                prompt_tokens = len(output.prompt_token_ids or ())
                reply = TeacherOutput(strip_think(completion.text), None, prompt_tokens, len(completion.token_ids))
                yield start + offset, reply
