"""The ``<reasoning>...</reasoning><answer>label</answer>`` contract shared by every stage.

Data validation, rewards, evaluation, export and serving all render prompts and parse answers here,
so the label set, the prompt and the parser cannot drift between stages.

>>> parse_completion("<reasoning>Sales rose 12%.</reasoning><answer>positive</answer>").label
'positive'
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

LABELS: tuple[str, ...] = ("positive", "negative", "neutral")

DEFAULT_SYSTEM_PROMPT = (
    "You are a financial analyst. Classify the sentiment of the text for an investor as positive, negative or "
    "neutral. First explain your reasoning briefly, citing the words and figures that matter, inside "
    "<reasoning></reasoning> tags. Then give only the label inside <answer></answer> tags."
)
DEFAULT_USER_TEMPLATE = "Text: {text}"

ParseStatus = Literal["ok", "fallback", "missing"]

_THINK = re.compile(r"<think>.*?</think>", re.DOTALL)
_STRICT = re.compile(
    r"\A\s*<reasoning>(?P<reasoning>.*?)</reasoning>\s*<answer>(?P<answer>.*?)</answer>\s*\Z", re.DOTALL
)
_TAG = re.compile(r"</?(reasoning|answer)>")
_ANSWER = re.compile(r"<answer>(.*?)</answer>", re.DOTALL)
_REASONING = re.compile(r"<reasoning>(.*?)</reasoning>", re.DOTALL)
# Words for the reasoning checks shared by data validation and the reasoning_quality reward.
_TOKEN = re.compile(r"[a-z0-9]+(?:['.,][a-z0-9]+)*|%")
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")


@dataclass(frozen=True)
class PromptConfig:
    """The student's prompt: one definition used by data, SFT, GRPO, eval, export and serve."""

    system: str = DEFAULT_SYSTEM_PROMPT
    user_template: str = DEFAULT_USER_TEMPLATE


@dataclass(frozen=True)
class ParsedCompletion:
    """What a completion says. ``status`` is ``ok`` only for a strictly well-formed completion."""

    label: str | None
    reasoning: str
    status: ParseStatus
    issue: str | None = None

    @property
    def is_format_ok(self) -> bool:
        return self.status == "ok"


def build_messages(text: str, prompt: PromptConfig) -> list[dict[str, str]]:
    """Return the system and user messages the model sees for ``text``."""
    return [
        {"role": "system", "content": prompt.system},
        {"role": "user", "content": prompt.user_template.format(text=text)},
    ]


def render_completion(reasoning: str, label: str) -> str:
    """Return the assistant text for ``reasoning`` and ``label`` in the exact trained format."""
    return f"<reasoning>{reasoning.strip()}</reasoning><answer>{label}</answer>"


def strip_think(text: str) -> str:
    """Remove ``<think>...</think>`` blocks that reasoning models such as Qwen3 emit before answering."""
    text = _THINK.sub("", text)
    # A dangling "</think>" (the opening tag was in the prompt) leaves everything after it.
    return text.split("</think>", 1)[1] if "</think>" in text else text


def parse_completion(text: str, labels: tuple[str, ...] = LABELS) -> ParsedCompletion:
    """Parse a completion strictly; fall back to a documented extraction, flagged, when the format is broken.

    Strict (``ok``): exactly one ``<reasoning>`` block, then one ``<answer>`` block holding a label of ``labels``
    exactly (lower case), and nothing else but whitespace. Fallback (``fallback``, never format-compliant):
    the first ``<answer>`` block whose content is a label in any case, else the last label word in the text.
    ``missing``: no label found at all.
    """
    text = strip_think(text)
    match = _STRICT.match(text) if len(_TAG.findall(text)) == 4 else None
    if match:
        answer = match.group("answer").strip()
        if answer in labels:
            return ParsedCompletion(answer, match.group("reasoning").strip(), "ok")
        issue = "answer_case" if answer.lower() in labels else "answer_not_in_labels"
    else:
        issue = _format_issue(text)
    reasoning_match = _REASONING.search(text)
    reasoning = (reasoning_match.group(1) if reasoning_match else _TAG.sub("", text)).strip()
    for answer in _ANSWER.findall(text):
        if answer.strip().lower() in labels:
            return ParsedCompletion(answer.strip().lower(), reasoning, "fallback", issue)
    label = _last_label_word(text, labels)
    return ParsedCompletion(label, reasoning, "fallback" if label else "missing", issue)


def _format_issue(text: str) -> str:
    n_reasoning, n_answer = text.count("<reasoning>"), text.count("<answer>")
    if n_answer == 0 or "</answer>" not in text:
        return "no_answer_tag"
    if n_reasoning == 0 or "</reasoning>" not in text:
        return "no_reasoning_tag"
    if n_answer > 1 or n_reasoning > 1 or text.count("</answer>") > 1 or text.count("</reasoning>") > 1:
        return "repeated_tags"
    if text.find("<answer>") < text.find("<reasoning>"):
        return "wrong_order"
    return "text_outside_tags"


def _last_label_word(text: str, labels: tuple[str, ...]) -> str | None:
    pattern = r"\b(" + "|".join(re.escape(label) for label in labels) + r")\b"
    found = re.findall(pattern, _TAG.sub(" ", text), flags=re.IGNORECASE)
    return found[-1].lower() if found else None


def copy_ratio(reasoning: str, source: str) -> float:
    """Return the share of the reasoning's words that lie in a 3-word run also found in ``source``."""
    tokens = _TOKEN.findall(reasoning.lower())
    n = min(3, len(tokens))
    if n == 0:
        return 0.0
    source_tokens = _TOKEN.findall(source.lower())
    source_ngrams = {tuple(source_tokens[i : i + n]) for i in range(len(source_tokens) - n + 1)}
    copied = [False] * len(tokens)
    for i in range(len(tokens) - n + 1):
        if tuple(tokens[i : i + n]) in source_ngrams:
            copied[i : i + n] = [True] * n
    return sum(copied) / len(tokens)


def is_degenerate(reasoning: str, max_repeated_ngram_ratio: float) -> bool:
    """Return True when a sentence repeats or too many word 3-grams are repeats (looping generations)."""
    sentences = [" ".join(_TOKEN.findall(s.lower())) for s in _SENTENCE_END.split(reasoning)]
    sentences = [s for s in sentences if s]
    if len(set(sentences)) < len(sentences):
        return True
    tokens = _TOKEN.findall(reasoning.lower())
    ngrams = [tuple(tokens[i : i + 3]) for i in range(len(tokens) - 2)]
    return bool(ngrams) and 1 - len(set(ngrams)) / len(ngrams) > max_repeated_ngram_ratio
