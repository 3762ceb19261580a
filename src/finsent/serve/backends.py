"""Prediction backends: one registry, one small interface, heavy imports only in the chosen backend's constructor.

``transformers`` runs any causal LM (hub id, local dir, LoRA on top) with batched greedy generation;
``llamacpp`` runs a GGUF through llama-cpp-python; ``openai`` calls any OpenAI-compatible server
(vLLM, Ollama, llama.cpp server, OpenAI).

Asked for ``score_labels``, a backend also returns how likely each label is after the completion's ``<answer>``:
``transformers`` and ``llamacpp`` score every label's tokens there (the sum of their log-probabilities, then a
softmax over the labels); ``openai`` reads the server's ``top_logprobs`` of the answer's first token, where the
server gives them.
"""

from __future__ import annotations

import inspect
import logging
import math
import os
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Literal, Protocol

import numpy as np
import openai
import torch
from transformers import PreTrainedModel, PreTrainedTokenizerBase
from transformers.utils.chat_template_utils import render_jinja_template

from finsent.config import ModelConfig
from finsent.errors import ConfigError, FinsentError
from finsent.modeling import load_model, load_tokenizer
from finsent.registry import Registry

logger = logging.getLogger(__name__)

ANSWER_TAG = "<answer>"
TOP_LOGPROBS = 20  # the most alternatives the OpenAI API returns per token
Messages = list[dict[str, str]]
Prompt = str | Messages


@dataclass(frozen=True)
class Completion:
    """One generated reply and what it cost."""

    text: str
    latency_ms: float  # from sending this prompt to having its reply (a batch's prompts share the batch's time)
    completion_tokens: int
    prompt_tokens: int = 0
    finish_reason: Literal["stop", "length"] = "stop"  # length: cut at the token limit
    label_probabilities: dict[str, float] | None = None  # over Sampling.score_labels; None: not asked or not known


@dataclass(frozen=True)
class Sampling:
    """How to generate (``max_new_tokens=None`` is the backend's own limit, ``temperature=0`` is greedy) and which
    labels to score after the completion's ``<answer>`` (none: no scoring)."""

    max_new_tokens: int | None = None
    temperature: float = 0.0
    score_labels: tuple[str, ...] = ()


GREEDY = Sampling()


class Backend(Protocol):
    """Turns prompts (a text, taken as one user message, or chat messages) into completions, in order."""

    def complete(self, prompts: Sequence[Prompt], sampling: Sampling = GREEDY) -> list[Completion]: ...


BackendFactory = Callable[[ModelConfig], Backend]
BACKENDS: Registry[BackendFactory] = Registry("backend")


def as_messages(prompt: Prompt) -> Messages:
    """Return chat messages: a bare text is one user message."""
    return [{"role": "user", "content": prompt}] if isinstance(prompt, str) else prompt


def answer_prefix(completion: str) -> str | None:
    """Return ``completion`` up to and including its first ``<answer>`` (None: it has none, nothing to score)."""
    at = completion.find(ANSWER_TAG)
    return None if at < 0 else completion[: at + len(ANSWER_TAG)]


def label_continuations(
    prefix: str, labels: Sequence[str], tokenize: Callable[[str], list[int]]
) -> tuple[list[int], list[list[int]]]:
    """Return the tokens that every ``prefix + label`` shares and each label's own tokens after them.

    The split is made on the tokens of the whole text, so a label merged with the tag's ``>`` is scored as the
    tokenizer writes it. Where one label is a prefix of another, ``</answer>`` closes each, so none is empty.
    """
    closing = "</answer>" if any(a != b and b.startswith(a) for a in labels for b in labels) else ""
    sequences = [tokenize(prefix + label + closing) for label in labels]
    shared = 0
    while all(len(s) > shared for s in sequences) and len({s[shared] for s in sequences}) == 1:
        shared += 1
    return sequences[0][:shared], [s[shared:] for s in sequences]


def softmax_over_labels(scores: Sequence[float], labels: Sequence[str]) -> dict[str, float]:
    """Return the labels' probabilities from their log-likelihood scores."""
    top = max(scores)
    weights = [math.exp(score - top) for score in scores]
    total = sum(weights)
    return {label: weight / total for label, weight in zip(labels, weights, strict=True)}


def first_token_probabilities(
    tokens: Sequence[tuple[str, Sequence[tuple[str, float]]]], labels: Sequence[str]
) -> dict[str, float] | None:
    """Return label probabilities from a completion's per-token ``(token, [(alternative, logprob), ...])``: the
    alternatives for the token where the answer starts, each credited to the one label it begins. A label outside
    the alternatives gets 0; an alternative that begins two labels counts for neither. None: no ``<answer>``."""
    text = "".join(token for token, _ in tokens)
    at = text.find(ANSWER_TAG)
    if at < 0:
        return None
    answer_start, start = at + len(ANSWER_TAG), 0
    position = 0
    while start + len(tokens[position][0]) <= answer_start:  # to the token holding the answer's first character
        start += len(tokens[position][0])
        position += 1
        if position == len(tokens):
            return None
    alternatives = tokens[position][1]
    head = text[start:answer_start]  # the part of this token that is still the tag, such as ">"
    mass = dict.fromkeys(labels, 0.0)
    for alternative, logprob in alternatives:
        rest = alternative[len(head) :] if alternative.startswith(head) else ""
        begun = [label for label in labels if rest and (label.startswith(rest) or rest.startswith(label))]
        if len(begun) == 1:
            mass[begun[0]] += math.exp(logprob)
    total = sum(mass.values())
    return {label: m / total for label, m in mass.items()} if total > 0 else None


@BACKENDS.register("transformers")
def load_transformers(cfg: ModelConfig) -> TransformersBackend:
    """Any causal LM by hub id or path, LoRA adapters on top; batched greedy generation on CPU or GPU."""
    tokenizer = load_tokenizer(cfg.path, padding_side="left", trust_remote_code=cfg.trust_remote_code)
    model = load_model(
        cfg.path, adapter=cfg.adapter, dtype=cfg.dtype, device=cfg.device, trust_remote_code=cfg.trust_remote_code
    )
    return TransformersBackend(model, tokenizer, cfg.max_new_tokens, cfg.batch_size)


class TransformersBackend:
    """A loaded causal LM and its tokenizer (also a model in training): greedy generation in batches."""

    def __init__(
        self, model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, max_new_tokens: int, batch_size: int
    ) -> None:
        self.model, self.tokenizer = model, tokenizer
        self.max_new_tokens, self.batch_size = max_new_tokens, batch_size
        eos = model.generation_config.eos_token_id
        self.eos_ids = set(eos if isinstance(eos, list) else [eos]) | {tokenizer.eos_token_id}
        # transformers renamed the KV cache argument and output from past_key_values to cache.
        base = model.get_base_model() if hasattr(model, "get_base_model") else model
        self._cache_key = "cache" if "cache" in inspect.signature(base.forward).parameters else "past_key_values"

    def render(self, prompt: Prompt) -> str:
        """Return the chat-templated prompt; Qwen3's thinking is off, as in training."""
        return self.tokenizer.apply_chat_template(
            as_messages(prompt), tokenize=False, add_generation_prompt=True, enable_thinking=False
        )

    def complete(self, prompts: Sequence[Prompt], sampling: Sampling = GREEDY) -> list[Completion]:
        completions = []
        for i in range(0, len(prompts), self.batch_size):
            completions.extend(self._complete_batch(prompts[i : i + self.batch_size], sampling))
        return completions

    def _complete_batch(self, prompts: Sequence[Prompt], sampling: Sampling) -> list[Completion]:
        # Left padding keeps every prompt's last token next to its first generated token.
        rendered = [self.render(p) for p in prompts]
        batch = self.tokenizer(
            rendered,
            return_tensors="pt",
            padding=True,
            padding_side="left",
            add_special_tokens=False,
        ).to(self.model.device)
        is_sampled = sampling.temperature > 0
        start = time.perf_counter()
        with torch.inference_mode():
            output = self.model.generate(
                **batch,
                max_new_tokens=sampling.max_new_tokens or self.max_new_tokens,
                do_sample=is_sampled,
                temperature=sampling.temperature if is_sampled else None,
                top_p=None,
                top_k=None,
                pad_token_id=self.tokenizer.pad_token_id,
            )
        texts, lengths = [], []
        for row in output[:, batch["input_ids"].shape[1] :].tolist():
            ends = next((i + 1 for i, token in enumerate(row) if token in self.eos_ids), None)
            lengths.append((ends or len(row), "stop" if ends else "length"))
            texts.append(self.tokenizer.decode(row[: lengths[-1][0]], skip_special_tokens=True))
        probabilities = self.label_probabilities(rendered, texts, sampling.score_labels)
        latency_ms = (time.perf_counter() - start) * 1000
        prompt_tokens = batch["attention_mask"].sum(1).tolist()
        return [
            Completion(text, latency_ms, n_tokens, n_prompt, reason, label_probs)
            for text, (n_tokens, reason), n_prompt, label_probs in zip(
                texts, lengths, prompt_tokens, probabilities, strict=True
            )
        ]

    def label_probabilities(
        self, rendered: Sequence[str], completions: Sequence[str], labels: Sequence[str]
    ) -> list[dict[str, float] | None]:
        """Return, per completion, each label's probability after its ``<answer>`` given the rendered prompt."""
        found = [(i, answer_prefix(text)) for i, text in enumerate(completions)] if labels else []
        scorable = [(i, rendered[i] + prefix) for i, prefix in found if prefix is not None]
        probabilities: list[dict[str, float] | None] = [None] * len(completions)
        if not scorable:
            return probabilities
        splits = [label_continuations(text, labels, self._tokenize) for _, text in scorable]
        scores = self._score_continuations(splits)
        for (i, _), row in zip(scorable, scores.tolist(), strict=True):
            probabilities[i] = softmax_over_labels(row, labels)
        return probabilities

    def _tokenize(self, text: str) -> list[int]:
        return self.tokenizer(text, add_special_tokens=False)["input_ids"]

    def _score_continuations(self, splits: Sequence[tuple[list[int], list[list[int]]]]) -> torch.Tensor:
        """Return (prefixes x labels) sums of the label tokens' log-probabilities after each shared prefix.

        One pass over the left-padded prefixes gives every label's first token (logits of the last position only);
        labels of several tokens go on from the prefixes' cache, repeated once per label, in a second short pass.
        """
        n, k = len(splits), len(splits[0][1])
        prefixes, suffixes = [p for p, _ in splits], [s for _, sufs in splits for s in sufs]
        width, pad = max(map(len, prefixes)), self.tokenizer.pad_token_id
        ids = torch.full((n, width), pad, dtype=torch.long)
        mask = torch.zeros((n, width), dtype=torch.long)
        for row, prefix in enumerate(prefixes):
            ids[row, width - len(prefix) :] = torch.tensor(prefix)
            mask[row, width - len(prefix) :] = 1
        longest = max(map(len, suffixes))
        device = self.model.device
        with torch.inference_mode():
            out = self.model(
                input_ids=ids.to(device),
                attention_mask=mask.to(device),
                position_ids=(mask.cumsum(1) - 1).clamp(min=0).to(device),
                use_cache=longest > 1,
                logits_to_keep=1,
            )
            logits = out.logits[:, -1].float()
            owner = torch.arange(n, device=device).repeat_interleave(k)
            first = torch.tensor([s[0] for s in suffixes], device=device)
            scores = logits[owner, first] - logits.logsumexp(-1)[owner]
            if longest > 1:
                # Feed each label's tokens but the last; the logits after token j score token j + 1.
                rest = longest - 1
                feed = torch.full((n * k, rest), pad, dtype=torch.long)
                targets = torch.zeros((n * k, rest), dtype=torch.long)
                is_label = torch.zeros((n * k, rest), dtype=torch.bool)
                for row, suffix in enumerate(suffixes):
                    feed[row, : len(suffix) - 1] = torch.tensor(suffix[:-1])
                    targets[row, : len(suffix) - 1] = torch.tensor(suffix[1:])
                    is_label[row, : len(suffix) - 1] = True
                cache = getattr(out, self._cache_key)
                cache.batch_repeat_interleave(k)
                prefix_mask = mask.repeat_interleave(k, dim=0)
                positions = prefix_mask.sum(1, keepdim=True) + torch.arange(rest)
                logits = self.model(
                    input_ids=feed.to(device),
                    attention_mask=torch.cat([prefix_mask, is_label.long()], dim=1).to(device),
                    position_ids=positions.to(device),
                    **{self._cache_key: cache},
                ).logits.float()
                token_scores = logits.gather(-1, targets.to(device)[..., None]).squeeze(-1) - logits.logsumexp(-1)
                scores = scores + (token_scores * is_label.to(device)).sum(1)
        return scores.view(n, k).cpu()


@BACKENDS.register("openai")
class OpenAIBackend:
    """Any OpenAI-compatible chat-completions server (vLLM, Ollama, llama.cpp server, OpenAI); greedy."""

    def __init__(self, cfg: ModelConfig) -> None:
        self.cfg = cfg
        self.url = f"{cfg.base_url.rstrip('/')}/chat/completions"
        # The client refuses to start without a key; keyless servers (vLLM, llama.cpp) ignore this placeholder.
        api_key = os.environ.get(cfg.api_key_env) or "EMPTY"
        self.client = openai.OpenAI(base_url=cfg.base_url, api_key=api_key, max_retries=3, timeout=cfg.timeout_s)
        self.has_warned_no_logprobs = False
        self.warning_lock = threading.Lock()

    def complete(self, prompts: Sequence[Prompt], sampling: Sampling = GREEDY) -> list[Completion]:
        if not prompts:
            return []
        with ThreadPoolExecutor(max_workers=min(self.cfg.batch_size, len(prompts))) as pool:
            return list(pool.map(self._complete_one, prompts, [sampling] * len(prompts)))

    def _complete_one(self, prompt: Prompt, sampling: Sampling) -> Completion:
        start = time.perf_counter()
        asks_logprobs = {"logprobs": True, "top_logprobs": TOP_LOGPROBS} if sampling.score_labels else {}
        try:
            completion = self.client.chat.completions.create(
                model=self.cfg.path,
                messages=as_messages(prompt),
                max_tokens=sampling.max_new_tokens or self.cfg.max_new_tokens,
                temperature=sampling.temperature,
                **asks_logprobs,
            )
            choice = completion.choices[0]
            text = choice.message.content or ""
            probabilities = self._label_probabilities(choice, sampling.score_labels)
        except openai.APIStatusError as err:
            raise FinsentError(f"{self.url}: HTTP {err.status_code}: {err.response.text[:300]}") from err
        except openai.APIConnectionError as err:
            raise FinsentError(f"{self.url}: {type(err).__name__}: {err}") from err
        except (ValueError, AttributeError, IndexError, TypeError) as err:
            raise FinsentError(f"{self.url}: not a chat-completions reply ({err!r})") from err
        latency_ms = (time.perf_counter() - start) * 1000
        usage = completion.usage
        tokens = usage.completion_tokens if usage else None
        return Completion(
            text,
            latency_ms,
            int(tokens) if tokens is not None else len(text.split()),
            int(usage.prompt_tokens or 0) if usage else 0,
            "length" if choice.finish_reason == "length" else "stop",
            probabilities,
        )

    def _label_probabilities(self, choice: Any, labels: Sequence[str]) -> dict[str, float] | None:
        if not labels:
            return None
        content = choice.logprobs.content if choice.logprobs else None
        if not content:
            with self.warning_lock:  # requests run on several threads: say it once
                if not self.has_warned_no_logprobs:
                    logger.warning("%s gave no logprobs: no label probabilities for %s", self.url, self.cfg.path)
                    self.has_warned_no_logprobs = True
            return None
        tokens = [(t.token, [(a.token, a.logprob) for a in t.top_logprobs or [t]]) for t in content]
        return first_token_probabilities(tokens, labels)


@BACKENDS.register("llamacpp")
class LlamaCppBackend:
    """A GGUF file through llama-cpp-python (pip install 'finsent[gguf]'); greedy, one prompt at a time."""

    def __init__(self, cfg: ModelConfig) -> None:
        try:
            from llama_cpp import Llama
        except ImportError as err:
            raise ConfigError("the llamacpp backend needs llama-cpp-python: pip install 'finsent[gguf]'") from err
        if not os.path.isfile(cfg.path):
            raise ConfigError("", field="path", expected="a GGUF file for the llamacpp backend", got=cfg.path)
        self.cfg = cfg
        self.llm = Llama(model_path=cfg.path, n_ctx=cfg.n_ctx, n_gpu_layers=cfg.n_gpu_layers, verbose=False)
        self.template = self.llm.metadata.get("tokenizer.chat_template")
        if not self.template:
            raise ConfigError("the GGUF has no chat template", path=cfg.path, field="tokenizer.chat_template")

    def render(self, prompt: Prompt) -> str:
        """Return the prompt rendered with the GGUF's own chat template, thinking off as in training."""
        # llama-cpp-python's chat handler cannot pass enable_thinking, so the template is rendered here.
        rendered, _ = render_jinja_template(
            [as_messages(prompt)], chat_template=self.template, add_generation_prompt=True, enable_thinking=False
        )
        return rendered[0]

    def complete(self, prompts: Sequence[Prompt], sampling: Sampling = GREEDY) -> list[Completion]:
        completions = []
        for prompt in prompts:
            start = time.perf_counter()
            rendered = self.render(prompt)
            out = self.llm.create_completion(
                rendered,
                max_tokens=sampling.max_new_tokens or self.cfg.max_new_tokens,
                temperature=sampling.temperature,
            )
            choice, usage = out["choices"][0], out["usage"]
            (probabilities,) = self.label_probabilities([rendered], [choice["text"]], sampling.score_labels)
            latency_ms = (time.perf_counter() - start) * 1000
            reason = "length" if choice["finish_reason"] == "length" else "stop"
            completions.append(
                Completion(
                    choice["text"],
                    latency_ms,
                    usage["completion_tokens"],
                    usage["prompt_tokens"],
                    reason,
                    probabilities,
                )
            )
        return completions

    def label_probabilities(
        self, rendered: Sequence[str], completions: Sequence[str], labels: Sequence[str]
    ) -> list[dict[str, float] | None]:
        """Return, per completion, each label's probability after its ``<answer>`` given the rendered prompt."""
        probabilities: list[dict[str, float] | None] = []
        for text, completion in zip(rendered, completions, strict=True):
            prefix = answer_prefix(completion) if labels else None
            if prefix is None:
                probabilities.append(None)
                continue
            shared, suffixes = label_continuations(text + prefix, labels, self._tokenize)
            probabilities.append(softmax_over_labels(self._score_continuations(shared, suffixes), labels))
        return probabilities

    def _tokenize(self, text: str) -> list[int]:
        return self.llm.tokenize(text.encode("utf-8"), add_bos=False, special=True)

    def _score_continuations(self, shared: list[int], suffixes: list[list[int]]) -> list[float]:
        """Return each label's summed token log-probabilities after ``shared``, reusing the cached prompt."""
        from llama_cpp import llama_get_logits

        # Keep the cache of what was evaluated before (the prompt) up to where it meets ``shared``, less one token
        # so the last one is evaluated again and its logits are fresh.
        cached = self.llm.input_ids[: self.llm.n_tokens].tolist()
        same = [a == b for a, b in zip(cached, shared, strict=False)]
        kept = same.index(False) if False in same else len(same)
        self.llm.n_tokens = min(kept, len(shared) - 1)
        self.llm.eval(shared[self.llm.n_tokens :])
        vocab = self.llm.n_vocab()

        def last_log_softmax() -> np.ndarray:
            logits = np.ctypeslib.as_array(llama_get_logits(self.llm.ctx), shape=(vocab,)).astype(np.float64)
            return logits - logits.max() - np.log(np.exp(logits - logits.max()).sum())

        after_shared = last_log_softmax()
        scores = []
        for suffix in suffixes:
            self.llm.n_tokens = len(shared)
            log_probs, score = after_shared, 0.0
            for position, token in enumerate(suffix):
                score += float(log_probs[token])
                if position < len(suffix) - 1:
                    self.llm.eval([token])
                    log_probs = last_log_softmax()
            scores.append(score)
        return scores


def load_backend(cfg: ModelConfig) -> Backend:
    """Return the backend ``cfg.backend`` built for ``cfg`` (unknown names list the known ones)."""
    return BACKENDS.get(cfg.backend)(cfg)
