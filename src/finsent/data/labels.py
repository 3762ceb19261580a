"""Label normalisation: every mapping from a source's raw labels to ``positive|negative|neutral`` lives here.

Generic files (csv, jsonl, parquet, hub) must already hold one of the labels (any case, surrounding whitespace
ignored) unless a ``label_map`` says otherwise; the built-in sources know their own raw labels. Integers such as
``0/1/2`` mean different things in different datasets, so they are only read through a source's table or a map.

>>> normalize_label("Moderately Positive", "fingpt_sentiment")
'positive'
>>> fiqa_label(-0.05, band=0.1)
'neutral'
"""

from __future__ import annotations

import string
from collections.abc import Mapping

from finsent.completion import LABELS

_IDENTITY = {label: label for label in LABELS}
# Words used for the three classes by instruction datasets (Sujet, FinGPT) that merge several sources.
_ALIASES = {
    **_IDENTITY,
    "bullish": "positive",
    "bearish": "negative",
    "pos": "positive",
    "neg": "negative",
    "neu": "neutral",
}

# Raw label -> label, per source. Integer labels are matched by their decimal string.
SOURCE_LABELS: dict[str, dict[str, str]] = {
    # The hub copy (takala/financial_phrasebank) stores a ClassLabel: 0 negative, 1 neutral, 2 positive.
    "financial_phrasebank": {**_IDENTITY, "0": "negative", "1": "neutral", "2": "positive"},
    # zeroshot/twitter-financial-news-sentiment: 0 bearish, 1 bullish, 2 neutral.
    "twitter_financial_news": {"0": "negative", "1": "positive", "2": "neutral"},
    "fingpt_sentiment": _ALIASES,
    "sujet_finance_instruct": _ALIASES,
}
# FinGPT grades its outputs ("mildly negative", "strong positive"); the grade is folded away.
_GRADES = ("strongly", "strong", "moderately", "mildly", "slightly", "very", "extremely")
# Instruction datasets end answers with punctuation or quote them ("Positive.", "'neutral'").
_PUNCTUATION = string.punctuation + string.whitespace
_LOOSE_SOURCES = frozenset({"fingpt_sentiment", "sujet_finance_instruct"})


def normalize_label(raw: object, source: str, label_map: Mapping[str, str] | None = None) -> str | None:
    """Return the label for ``raw`` as read from ``source``, or ``None`` when it is not a known raw label.

    Args:
        source: a registered source name; names without a table of their own (csv, jsonl, parquet, hub)
            accept exactly the labels, in any case.
        label_map: raw label -> label; when given it is the only mapping used (case-insensitive keys).
    """
    if isinstance(raw, bool) or not isinstance(raw, str | int):
        return None
    key = " ".join(str(raw).casefold().split())
    if label_map is not None:
        return {" ".join(k.casefold().split()): v for k, v in label_map.items()}.get(key)
    if source in _LOOSE_SOURCES:
        key = key.strip(_PUNCTUATION)
    if source == "fingpt_sentiment":
        grade, _, rest = key.partition(" ")
        if grade in _GRADES and rest in ("positive", "negative"):
            key = rest
    return SOURCE_LABELS.get(source, _IDENTITY).get(key)


def describe_labels(source: str, label_map: Mapping[str, str] | None = None) -> str:
    """Return what ``normalize_label`` accepts for ``source``, for the ``expected`` part of an error."""
    accepted = label_map or SOURCE_LABELS.get(source, _IDENTITY)
    text = "one of " + "|".join(accepted)
    if label_map is None and source == "fingpt_sentiment":
        text += ", optionally graded (mildly, moderately, strong, ...)"
    return text


def check_label_map(label_map: Mapping[str, str]) -> None:
    """Raise ``ValueError`` naming the entries of ``label_map`` whose value is not a label."""
    bad = {key: value for key, value in label_map.items() if value not in LABELS}
    if bad:
        raise ValueError(f"label_map values must be one of {'|'.join(LABELS)}; got {bad}")


def fiqa_label(score: float, band: float) -> str:
    """Return the label of a FiQA sentiment score: ``>= band`` positive, ``< -band`` negative, else neutral.

    The half-open band matches how FinGPT labels FiQA-SA, so results stand beside its published numbers;
    a score of exactly 0 stays neutral when the band is 0.
    """
    if score >= band and score > 0:
        return "positive"
    if score < -band:
        return "negative"
    return "neutral"
