"""Label normalisation: per-source tables, graded FinGPT outputs, label maps and the FiQA band."""

from __future__ import annotations

import doctest

import pytest

from finsent.completion import LABELS
from finsent.data import labels
from finsent.data.labels import check_label_map, describe_labels, fiqa_label, normalize_label


def test_module_examples_run() -> None:
    assert doctest.testmod(labels).failed == 0


@pytest.mark.parametrize("source", ["csv", "jsonl", "parquet", "hub"])
def test_generic_sources_accept_only_the_labels_in_any_case(source: str) -> None:
    assert normalize_label(" Positive\r\n", source) == "positive"
    assert normalize_label("NEUTRAL", source) == "neutral"
    for raw in ("bullish", "pos", "positive.", "0", 1, "mixed", ""):
        assert normalize_label(raw, source) is None


@pytest.mark.parametrize(
    ("raw", "label"),
    [
        ("positive", "positive"),
        ("negative", "negative"),
        ("neutral", "neutral"),
        (0, "negative"),
        (1, "neutral"),
        (2, "positive"),
    ],
)
def test_phrasebank_words_and_hub_class_ids(raw: object, label: str) -> None:
    assert normalize_label(raw, "financial_phrasebank") == label


@pytest.mark.parametrize(
    ("raw", "label"),
    [
        ("0", "negative"),
        ("1", "positive"),
        ("2", "neutral"),
        (0, "negative"),
        (1, "positive"),
        (2, "neutral"),
        (" 2 ", "neutral"),
    ],
)
def test_twitter_bearish_bullish_neutral_ids(raw: object, label: str) -> None:
    assert normalize_label(raw, "twitter_financial_news") == label


def test_twitter_rejects_words_and_other_ids() -> None:
    for raw in ("positive", "bullish", "3", -1):
        assert normalize_label(raw, "twitter_financial_news") is None


@pytest.mark.parametrize(
    ("raw", "label"),
    [
        ("moderately positive", "positive"),
        ("mildly negative", "negative"),
        ("strong positive", "positive"),
        ("Strong Negative", "negative"),
        ("strongly negative", "negative"),
        ("neutral", "neutral"),
        ("Positive.", "positive"),
        ("bearish", "negative"),
    ],
)
def test_fingpt_grades_fold_to_three_labels(raw: str, label: str) -> None:
    assert normalize_label(raw, "fingpt_sentiment") == label


@pytest.mark.parametrize("raw", ["mildly neutral", "moderately", "very very positive", "mixed", "positive negative"])
def test_fingpt_rejects_what_it_cannot_fold(raw: str) -> None:
    assert normalize_label(raw, "fingpt_sentiment") is None


@pytest.mark.parametrize(
    ("raw", "label"),
    [
        ("Positive", "positive"),
        ("negative.", "negative"),
        ("'neutral'", "neutral"),
        (" Bullish!", "positive"),
        ("BEARISH", "negative"),
        ("neu", "neutral"),
    ],
)
def test_sujet_answers_with_case_and_punctuation(raw: str, label: str) -> None:
    assert normalize_label(raw, "sujet_finance_instruct") == label


def test_sujet_rejects_graded_and_other_answers() -> None:
    for raw in ("mildly positive", "yes", "Finance"):
        assert normalize_label(raw, "sujet_finance_instruct") is None


def test_label_map_is_the_only_mapping_when_given() -> None:
    label_map = {"up": "positive", "DOWN": "negative", "1": "neutral"}
    assert normalize_label(" Up ", "csv", label_map) == "positive"
    assert normalize_label("down", "csv", label_map) == "negative"
    assert normalize_label(1, "twitter_financial_news", label_map) == "neutral"
    assert normalize_label("positive", "csv", label_map) is None


@pytest.mark.parametrize("raw", [None, True, 1.0, ["positive"]])
def test_non_string_non_int_labels_are_unknown(raw: object) -> None:
    assert normalize_label(raw, "financial_phrasebank") is None


def test_check_label_map_names_bad_values() -> None:
    check_label_map({"up": "positive"})
    with pytest.raises(ValueError, match="'flat': 'sideways'"):
        check_label_map({"up": "positive", "flat": "sideways"})


def test_describe_labels_lists_what_is_accepted() -> None:
    assert describe_labels("twitter_financial_news") == "one of 0|1|2"
    assert describe_labels("csv") == "one of " + "|".join(LABELS)
    assert describe_labels("csv", {"up": "positive"}) == "one of up"
    assert "mildly" in describe_labels("fingpt_sentiment")


@pytest.mark.parametrize(
    ("score", "band", "label"),
    [
        # the band is half-open like FinGPT's FiQA-SA labelling: [-band, band) is neutral
        (0.1, 0.1, "positive"),
        (0.0999, 0.1, "neutral"),
        (-0.1, 0.1, "neutral"),
        (-0.1001, 0.1, "negative"),
        (0.0, 0.1, "neutral"),
        (0.0, 0.0, "neutral"),
        (0.001, 0.0, "positive"),
        (-0.938, 0.1, "negative"),
    ],
)
def test_fiqa_band(score: float, band: float, label: str) -> None:
    assert fiqa_label(score, band) == label
