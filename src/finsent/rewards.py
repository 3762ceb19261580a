"""GRPO rewards: plain ``(completions, **kwargs) -> list[float]`` functions in the ``REWARDS`` registry.

Each scores one thing in [0, 1], so equal weights make a total in [0, 4]. Completions are strings or, as TRL passes
them for chat datasets, lists of message dicts. The gold label comes from the dataset's ``label`` column and the
input from its ``text`` column (else from the user message in ``prompts``); a ``task`` column names the task whose
labels answers are checked against (default sentiment). Every parse goes through ``finsent.completion``, the one
contract shared with data, eval and serve.

>>> good = "<reasoning>Net sales rose 12%, a clear gain for investors: positive.</reasoning><answer>positive</answer>"
>>> kwargs = {"label": ["positive"], "text": ["Net sales rose 12% to EUR 30 mn in 2010."]}
>>> [REWARDS.get(name)([good], **kwargs) for name in REWARDS.names()]
[[1.0], [1.0], [1.0], [1.0]]
>>> correctness_reward(["positive"], label=["positive"])  # the label word alone is not an answer
[0.0]
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from typing import Any

from finsent.completion import LABELS, copy_ratio, is_degenerate, parse_completion, strip_think
from finsent.errors import DataError
from finsent.lexicon import load_lexicon
from finsent.registry import Registry
from finsent.tasks import TASKS

RewardFunc = Callable[..., list[float]]
REWARDS: Registry[RewardFunc] = Registry("reward")

# Same bounds as the data stage's ValidationConfig defaults, so the SFT data scores well on reasoning quality.
MIN_REASONING_WORDS = 5
MAX_REPEATED_NGRAM_RATIO = 0.3
# Copy credit is full while at most this share of the words is copied from the prompt, then falls linearly to 0
# for a verbatim copy. Stricter than the data stage's 0.9 reject threshold: the input plus "so positive" must not pay.
FREE_COPY_RATIO = 0.5
# Reasoning gets full length credit inside this band (words); outside, credit falls off in proportion.
LENGTH_BAND = (10, 150)
# Distinct input terms a reasoning must cite for full term credit.
MIN_CITED_TERMS = 2

_TOKEN = re.compile(r"[a-z0-9]+(?:['.,][a-z0-9]+)*")
_NUMBER = re.compile(r"\d+(?:[.,]\d+)*")
_TAG = re.compile(r"</?(?:reasoning|answer)>")
_CLAUSE_END = re.compile(r"[.;:!?](?:\s|$)|,\s|\bbut\b")
_NEGATORS = frozenset(
    "not no never without nor neither hardly cannot didn't doesn't don't isn't wasn't weren't aren't won't".split()
)
# Function words that say nothing about the input; any other word of 4+ letters counts as an input term.
_STOPWORDS = frozenset(
    """about above after again against also been before being below between both could does doing down during each
    from further have having here into itself just more most other over same should some such than that their theirs
    them then there these they this those through under until very were what when where which while will with would
    your year years said says""".split()
)


def _content(completion: str | Sequence[dict[str, Any]]) -> str:
    """Return a completion's text: a string as is, a conversation's message contents joined."""
    if isinstance(completion, str):
        return completion
    return "".join(str(message.get("content") or "") for message in completion)


def _final_answer(text: str, labels: tuple[str, ...] = LABELS) -> str | None:
    """Return the label of the completion's one ``<answer>`` block (any case) when nothing but text follows it.

    None for two answers, an answer nested in or followed by the reasoning, or no answer block at all.
    """
    parsed = parse_completion(text, labels)
    if parsed.is_format_ok:
        return parsed.label
    text = strip_think(text)
    if text.count("<answer>") != 1 or text.count("</answer>") != 1:
        return None
    start, end = text.index("<answer>"), text.index("</answer>")
    if end < start or "reasoning>" in text[start:]:
        return None
    answer = text[start + len("<answer>") : end].strip().lower()
    return answer if answer in labels else None


def _reasoning_block(text: str) -> str | None:
    """Return the content of the completion's one ``<reasoning>`` block, or None if there is not exactly one
    or it holds other tags (an answer inside the reasoning)."""
    text = strip_think(text)
    if text.count("<reasoning>") != 1 or text.count("</reasoning>") != 1:
        return None
    start, end = text.index("<reasoning>") + len("<reasoning>"), text.index("</reasoning>")
    if end < start or _TAG.search(text[start:end]):
        return None
    return text[start:end].strip()


def _is_in_order(text: str) -> bool:
    """True when each of the four tags appears once, as ``<reasoning></reasoning><answer></answer>``."""
    text = strip_think(text)
    tags = ("<reasoning>", "</reasoning>", "<answer>", "</answer>")
    if any(text.count(tag) != 1 for tag in tags):
        return False
    positions = [text.index(tag) for tag in tags]
    return positions == sorted(positions)


def _inputs(kwargs: dict[str, Any], n: int, reward: str) -> list[str]:
    """Return the input text of each completion: the ``text`` column, else the last user message of the prompt."""
    if kwargs.get("text") is not None:
        return [str(t) for t in kwargs["text"]]
    prompts = kwargs.get("prompts")
    if prompts is None:
        raise DataError(
            f"reward {reward!r} needs the input text: a 'text' dataset column or the prompts",
            field="text",
            expected=f"a list of {n} strings",
            got=None,
        )
    return [_content([m for m in p if m.get("role") == "user"][-1:]) if not isinstance(p, str) else p for p in prompts]


def _prompt_texts(kwargs: dict[str, Any], n: int) -> list[str]:
    """Return each prompt's full text (system prompt included), or empty strings when prompts are not given."""
    prompts = kwargs.get("prompts")
    return [_content(p) for p in prompts] if prompts is not None else [""] * n


def _labels(kwargs: dict[str, Any]) -> tuple[str, ...]:
    """Return the label set of the rows' task (the ``task`` column), sentiment's without one."""
    tasks = kwargs.get("task")
    labels = TASKS.get(str(tasks[0])).labels if tasks else LABELS
    if labels is None:
        raise DataError("rewards check labels; task instruct has free-form answers", field="task", got=tasks[0])
    return labels


def _gold(kwargs: dict[str, Any], n: int, reward: str) -> list[str]:
    labels = kwargs.get("label")
    if labels is None or len(labels) != n:
        raise DataError(
            f"reward {reward!r} needs the gold label of each completion",
            field="label",
            expected=f"a 'label' dataset column ({n} values)",
            got=labels,
        )
    return [str(label) for label in labels]


@REWARDS.register("correctness")
def correctness_reward(completions: list[Any], **kwargs: Any) -> list[float]:
    """1.0 when the one answer equals the gold label, else 0.0.

    The answer is the content of the completion's single ``<answer>`` block, compared case-insensitively (case is
    the format reward's business). Two answer blocks (hedging), an answer inside or before the reasoning, an answer
    outside the label set, or a bare label word without tags all score 0.0.
    """
    gold, labels = _gold(kwargs, len(completions), "correctness"), _labels(kwargs)
    return [float(_final_answer(_content(c), labels) == g) for c, g in zip(completions, gold, strict=True)]


@REWARDS.register("format")
def format_reward(completions: list[Any], **kwargs: Any) -> list[float]:
    """1.0 for exactly ``<reasoning>...</reasoning><answer>label</answer>``; 0.5 with the tags right but not the rest.

    1.0: ``completion.parse_completion`` finds the strict format: one reasoning block, then one answer block
    holding a label in lower case, nothing else but whitespace. 0.5 (partial credit): the four tags appear once each
    and in order, but the answer is not exactly a label (wrong case, extra words, unknown label) or there is text
    before ``<reasoning>`` or after ``</answer>``. 0.0: anything else (a missing, repeated, nested or misordered
    tag, a bare label word). Empty reasoning is well formed here; ``reasoning_quality`` scores it.
    """
    scores, labels = [], _labels(kwargs)
    for completion in completions:
        text = _content(completion)
        scores.append(1.0 if parse_completion(text, labels).is_format_ok else 0.5 if _is_in_order(text) else 0.0)
    return scores


@REWARDS.register("reasoning_quality")
def reasoning_quality_reward(completions: list[Any], **kwargs: Any) -> list[float]:
    """Copy credit x (0.5 x length credit + 0.5 x grounding credit), or 0.0 when the reasoning fails a gate.

    Gates (0.0): not exactly one ``<reasoning>`` block, tags inside it, fewer than ``MIN_REASONING_WORDS`` words,
    or degenerate (a sentence said twice, or more than ``MAX_REPEATED_NGRAM_RATIO`` of the 3-grams repeated).
    Copy credit: with ``r`` the share of words in 3-word runs copied from the input or the prompt (system prompt
    included), 1.0 while ``r <= FREE_COPY_RATIO``, then ``(1 - r) / (1 - FREE_COPY_RATIO)``: 0.0 for a verbatim copy.
    Length credit: 1.0 inside ``LENGTH_BAND`` words, else words/low below and high/words above.
    Grounding credit: the mean of number credit (1.0 when the reasoning cites one of the input's numbers, or the
    input has none) and term credit (distinct input words of 4+ letters cited, over ``MIN_CITED_TERMS``, at most 1).
    """
    n = len(completions)
    inputs, prompts = _inputs(kwargs, n, "reasoning_quality"), _prompt_texts(kwargs, n)
    scores = []
    for completion, source, prompt in zip(completions, inputs, prompts, strict=True):
        reasoning = _reasoning_block(_content(completion))
        scores.append(0.0 if reasoning is None else _reasoning_quality(reasoning, source, prompt))
    return scores


def _reasoning_quality(reasoning: str, source: str, prompt: str) -> float:
    words = _TOKEN.findall(reasoning.lower())
    if len(words) < MIN_REASONING_WORDS or is_degenerate(reasoning, MAX_REPEATED_NGRAM_RATIO):
        return 0.0
    copied = max(copy_ratio(reasoning, source), copy_ratio(reasoning, prompt))
    copy_credit = min(1.0, (1 - copied) / (1 - FREE_COPY_RATIO))
    low, high = LENGTH_BAND
    length = min(1.0, len(words) / low, high / len(words))
    numbers = {_normalize_number(m) for m in _NUMBER.findall(source)}
    cited_numbers = {_normalize_number(m) for m in _NUMBER.findall(reasoning)}
    number_credit = 1.0 if not numbers or numbers & cited_numbers else 0.0
    terms = {w for w in _TOKEN.findall(source.lower()) if len(w) >= 4 and w.isalpha() and w not in _STOPWORDS}
    term_credit = min(1.0, len(terms & set(words)) / MIN_CITED_TERMS) if terms else 1.0
    return copy_credit * (0.5 * length + 0.5 * (number_credit + term_credit) / 2)


def _normalize_number(number: str) -> str:
    return number.replace(",", "")


@REWARDS.register("consistency")
def consistency_reward(completions: list[Any], **kwargs: Any) -> list[float]:
    """1.0 when the polarity the reasoning argues is the answer's label, else 0.0.

    The argued polarity is the majority of the finsent lexicon's positive and negative cue words in the reasoning
    (label words count: "positive" is a positive cue), a cue flipped when a negator ("not", "no", "didn't", ...)
    precedes it in the same clause; a tie or no cue argues ``neutral``. Scores 0.0 without a single answer block
    with a valid label, or without a reasoning block of at least ``MIN_REASONING_WORDS`` words. Sentiment only.
    """
    if _labels(kwargs) != LABELS:
        raise DataError("reward consistency compares sentiment polarities", field="task", got=kwargs["task"][0])
    scores = []
    for completion in completions:
        text = _content(completion)
        answer, reasoning = _final_answer(text), _reasoning_block(text)
        if answer is None or reasoning is None or len(_TOKEN.findall(reasoning.lower())) < MIN_REASONING_WORDS:
            scores.append(0.0)
        else:
            scores.append(float(argued_polarity(reasoning) == answer))
    return scores


def argued_polarity(reasoning: str) -> str:
    """Return ``positive``, ``negative`` or ``neutral``: the negation-aware majority of cue words in ``reasoning``."""
    lexicon = load_lexicon("finsent")
    balance = 0
    for clause in _CLAUSE_END.split(reasoning.lower()):
        is_negated = False
        for word in _TOKEN.findall(clause):
            if word in _NEGATORS:
                is_negated = True
                continue
            sign = 1 if word.upper() in lexicon.positive else -1 if word.upper() in lexicon.negative else 0
            balance += -sign if is_negated else sign
    return "positive" if balance > 0 else "negative" if balance < 0 else "neutral"
