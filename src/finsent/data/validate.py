"""Strict checks on inputs and teacher replies; every rejection has a reason from a fixed set.

Reasons, checked in this order (the first that applies is returned):

- ``text_too_short`` (inputs only): fewer than ``min_text_chars`` characters.
- ``format:<issue>``: not exactly one ``<reasoning>`` block then one ``<answer>`` block and nothing else, per
  ``completion.parse_completion``; ``<issue>`` is ``empty``, ``no_answer_tag``, ``no_reasoning_tag``,
  ``repeated_tags``, ``wrong_order``, ``text_outside_tags`` or ``answer_case``.
- ``label_not_in_set``: well formed, but the answer is not one of the labels.
- ``answer_mismatch``: the answer is not the gold label (never kept, in guided and blind mode alike).
- ``reasoning_too_short`` / ``reasoning_too_long``: word count outside the configured bounds.
- ``copies_input``: more than ``max_copy_ratio`` of the reasoning's words sit in 3-word runs copied from the input
  (quoting a few words or figures is fine; restating the text is not).
- ``degenerate``: a sentence said twice, or more than ``max_repeated_ngram_ratio`` of the 3-grams are repeats.

>>> validate_completion("<reasoning>Net sales rose 5.2 %, a clear gain.</reasoning><answer>positive</answer>",
...                     "Net sales rose 5.2 % in 2010.", "positive", ValidationConfig())
"""

from __future__ import annotations

from finsent.completion import LABELS, copy_ratio, is_degenerate, parse_completion, strip_think
from finsent.config import ValidationConfig

REJECTION_REASONS: tuple[str, ...] = (
    "text_too_short",
    "format",
    "label_not_in_set",
    "answer_mismatch",
    "reasoning_too_short",
    "reasoning_too_long",
    "copies_input",
    "degenerate",
)


def validate_input(text: str, cfg: ValidationConfig) -> str | None:
    """Return ``text_too_short`` when the input is too short to classify, else None."""
    return "text_too_short" if len(text.strip()) < cfg.min_text_chars else None


def validate_completion(
    text: str, example_text: str, gold_label: str, cfg: ValidationConfig, labels: tuple[str, ...] = LABELS
) -> str | None:
    """Return why a teacher's completion for ``example_text`` must be rejected, or None to keep it."""
    if not strip_think(text).strip():
        return "format:empty"
    parsed = parse_completion(text, labels)
    if parsed.issue == "answer_not_in_labels":
        return "label_not_in_set"
    if not parsed.is_format_ok:
        return f"format:{parsed.issue}"
    if parsed.label != gold_label:
        return "answer_mismatch"
    n_words = len(parsed.reasoning.split())
    if n_words < cfg.min_reasoning_words:
        return "reasoning_too_short"
    if n_words > cfg.max_reasoning_words:
        return "reasoning_too_long"
    if copy_ratio(parsed.reasoning, example_text) > cfg.max_copy_ratio:
        return "copies_input"
    if is_degenerate(parsed.reasoning, cfg.max_repeated_ngram_ratio):
        return "degenerate"
    return None
