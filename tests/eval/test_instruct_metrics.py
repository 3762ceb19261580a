"""Scores of free-form answers: exact match, token F1, ROUGE-L, yes/no and sentiment accuracy, per task type."""

import pytest

from finsent.eval.instruct import (
    answer_scores,
    bootstrap_mean,
    exact_match,
    headline_metric,
    normalize_answer,
    rouge_l,
    sentiment_of,
    token_f1,
    yes_no,
)


def test_normalize_answer_as_squad():
    assert normalize_answer("The  Net-profit, rose!") == "netprofit rose"
    assert normalize_answer("An EUR 5 million gain.") == "eur 5 million gain"


@pytest.mark.parametrize(
    ("prediction", "reference", "f1"),
    [
        ("EUR 85 million", "EUR 85 million", 1.0),
        ("the EUR 85 million.", "EUR 85 million", 1.0),  # articles and punctuation do not count
        ("EUR 85", "EUR 85 million", 0.8),  # precision 1, recall 2/3
        ("85 85 85", "85", 0.5),  # repeated tokens count once per match
        ("profit fell", "EUR 85 million", 0.0),
        ("", "", 1.0),
        ("", "EUR 85 million", 0.0),
    ],
)
def test_token_f1(prediction, reference, f1):
    assert token_f1(prediction, reference) == pytest.approx(f1)


def test_exact_match_normalizes():
    assert exact_match("Yes.", "yes") == 1.0
    assert exact_match("Yes, it did", "yes") == 0.0


@pytest.mark.parametrize(
    ("prediction", "reference", "score"),
    [
        ("profit rose sharply", "profit rose", 0.8),  # LCS 2: precision 2/3, recall 1
        ("rose profit", "profit rose", 0.5),  # order matters: LCS 1
        ("Net profit ROSE", "net profit rose", 1.0),
        ("a b c d", "a x c y d", 2 * (3 / 4) * (3 / 5) / (3 / 4 + 3 / 5)),
        ("nothing shared", "profit rose", 0.0),
    ],
)
def test_rouge_l_is_the_lcs_f1(prediction, reference, score):
    assert rouge_l(prediction, reference) == pytest.approx(score)


def test_yes_no_and_sentiment_answers():
    assert yes_no("Yes, revenue grew 12%.") == "yes"
    assert yes_no("No.") == "no"
    assert yes_no("Not known; maybe.") is None  # "not" is not "no"
    assert sentiment_of("Positive.") == "positive"
    assert sentiment_of("Bearish") == "negative"
    assert sentiment_of("The sentiment is neutral overall") == "neutral"
    assert sentiment_of("unclear") is None


def test_scores_and_headline_per_task_type():
    assert answer_scores("yes_no_question", "Yes, it did.", "Yes")["yes_no_accuracy"] == 1.0
    assert answer_scores("yes_no_question", "Maybe", "Yes")["yes_no_accuracy"] == 0.0
    assert answer_scores("sentiment_analysis", "negative", "Bearish")["sentiment_accuracy"] == 1.0
    qa = answer_scores("qa_with_context", "EUR 85 million", "EUR 85 million")
    assert set(qa) == {"exact_match", "token_f1", "rouge_l"} and qa["token_f1"] == 1.0
    assert [headline_metric(t) for t in ("yes_no_question", "sentiment_analysis", "qa", "topic_classification")] == [
        "yes_no_accuracy", "sentiment_accuracy", "token_f1", "token_f1",
    ]  # fmt: skip


def test_bootstrap_interval_of_a_mean_is_seeded_and_brackets_it():
    values = [1.0] * 30 + [0.0] * 10
    low, high = bootstrap_mean(values, 500, 0.95, seed=0)
    assert (low, high) == bootstrap_mean(values, 500, 0.95, seed=0)
    assert low < 0.75 < high and 0 <= low and high <= 1
