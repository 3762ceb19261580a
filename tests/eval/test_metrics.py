"""Metrics against confusion matrices computed by hand, and the seeded bootstrap."""

import numpy as np
import pytest

from finsent.completion import LABELS
from finsent.eval.metrics import (
    NO_ANSWER,
    bootstrap_intervals,
    calibration_intervals,
    calibration_metrics,
    classification_metrics,
    resampled_confusion,
    row_confidences,
    scores_from_confusion,
)

POS, NEG, NEU = "positive", "negative", "neutral"


def test_hand_computed_three_class_matrix_with_an_unparsed_answer():
    gold = [POS, POS, POS, NEG, NEG, NEU, NEU, NEU, NEU, NEU]
    pred = [POS, POS, NEU, NEG, POS, NEU, NEU, NEU, NEG, None]
    m = classification_metrics(gold, pred)
    # rows gold positive/negative/neutral; columns predicted positive/negative/neutral/no_answer
    assert m.confusion == [[2, 0, 1, 0], [1, 1, 0, 0], [0, 1, 3, 1]]
    assert m.accuracy == pytest.approx(6 / 10)
    assert (m.per_label[POS].precision, m.per_label[POS].recall, m.per_label[POS].f1) == pytest.approx((2 / 3,) * 3)
    assert (m.per_label[NEG].precision, m.per_label[NEG].recall, m.per_label[NEG].f1) == pytest.approx((0.5,) * 3)
    assert m.per_label[NEU].precision == pytest.approx(3 / 4)
    assert m.per_label[NEU].recall == pytest.approx(3 / 5)  # the unparsed answer is a miss for its gold label
    assert m.per_label[NEU].f1 == pytest.approx(2 / 3)
    assert [m.per_label[label].support for label in (POS, NEG, NEU)] == [3, 2, 5]
    assert m.macro_f1 == pytest.approx((2 / 3 + 1 / 2 + 2 / 3) / 3)
    assert m.weighted_f1 == pytest.approx((3 * 2 / 3 + 2 * 1 / 2 + 5 * 2 / 3) / 10)


def test_a_label_that_never_occurs_is_left_out_of_the_averages():
    m = classification_metrics([POS, POS, NEU, NEU], [POS, NEU, NEU, NEU])
    assert m.per_label[NEG].support == 0
    assert m.per_label[NEG].f1 is None and m.per_label[NEG].precision is None
    assert m.confusion[1] == [0, 0, 0, 0]
    # positive: P 1, R 1/2, F1 2/3; neutral: P 2/3, R 1, F1 4/5
    assert m.macro_f1 == pytest.approx((2 / 3 + 4 / 5) / 2)
    assert m.weighted_f1 == pytest.approx((2 * 2 / 3 + 2 * 4 / 5) / 4)


def test_a_label_predicted_but_never_gold_counts_as_zero():
    m = classification_metrics([POS, POS, NEU], [NEG, POS, NEU])
    assert (m.per_label[NEG].precision, m.per_label[NEG].recall, m.per_label[NEG].f1) == (0.0, 0.0, 0.0)
    assert m.per_label[NEG].support == 0
    assert m.macro_f1 == pytest.approx((0 + 2 / 3 + 1) / 3)
    assert m.weighted_f1 == pytest.approx((2 * 2 / 3 + 1 * 1) / 3)  # support 0: weight 0


def test_an_all_wrong_model_scores_zero():
    m = classification_metrics([POS, NEG, NEU, NEU], [NEG, NEU, POS, None])
    assert m.confusion == [[0, 1, 0, 0], [0, 0, 1, 0], [1, 0, 0, 1]]
    assert (m.accuracy, m.macro_f1, m.weighted_f1) == (0.0, 0.0, 0.0)
    assert all(scores.f1 == 0.0 for scores in m.per_label.values())


def test_no_answer_at_all_is_wrong_not_an_error():
    m = classification_metrics([POS, NEG], [None, "mixed"])
    assert m.accuracy == 0.0 and m.confusion == [[0, 0, 0, 1], [0, 0, 0, 1], [0, 0, 0, 0]]
    assert NO_ANSWER == "no_answer"


def test_bad_inputs_are_refused():
    with pytest.raises(ValueError, match="as many predictions"):
        classification_metrics([POS, NEG], [POS])
    with pytest.raises(ValueError, match=r"\['bullish'\]"):
        classification_metrics(["bullish"], [POS])


def test_bootstrap_is_seeded_and_reproducible():
    rng = np.random.default_rng(0)
    gold = rng.choice([POS, NEG, NEU], size=200).tolist()
    pred = [g if rng.random() < 0.7 else rng.choice([POS, NEG, NEU, None]) for g in gold]
    first = bootstrap_intervals(gold, pred, n_resamples=300, seed=7)
    assert first == bootstrap_intervals(gold, pred, n_resamples=300, seed=7)
    assert first != bootstrap_intervals(gold, pred, n_resamples=300, seed=8)
    point = classification_metrics(gold, pred)
    for name, value in (("accuracy", point.accuracy), ("macro_f1", point.macro_f1)):
        low, high = first[name]
        assert 0 <= low < value < high <= 1
    narrow = bootstrap_intervals(gold, pred, n_resamples=300, confidence=0.5, seed=7)
    assert narrow["accuracy"][0] >= first["accuracy"][0] and narrow["accuracy"][1] <= first["accuracy"][1]


def test_bootstrap_of_a_perfect_model_is_a_point():
    gold = [POS, NEG, NEU] * 5
    assert bootstrap_intervals(gold, gold, n_resamples=50, seed=0) == {"accuracy": (1.0, 1.0), "macro_f1": (1.0, 1.0)}


@pytest.mark.parametrize("seed", range(5))
def test_vectorised_scores_equal_sklearn_on_the_whole_sample(seed):
    """The bootstrap's numpy scores must be the same statistic as the sklearn point estimate."""
    rng = np.random.default_rng(seed)
    labels = [POS, NEG, NEU]
    gold_labels = labels[: 2 + seed % 2]  # some draws never see neutral in gold
    gold = rng.choice(gold_labels, size=40).tolist()
    pred = rng.choice([*labels[:2], None], size=40).tolist()
    codes = {label: i for i, label in enumerate([*labels, NO_ANSWER])}
    gold_codes = np.array([[codes[g] for g in gold]])
    pred_codes = np.array([[codes[p if p else NO_ANSWER] for p in pred]])
    scores = scores_from_confusion(resampled_confusion(gold_codes, pred_codes, len(codes)))
    point = classification_metrics(gold, pred)
    assert scores["accuracy"][0] == pytest.approx(point.accuracy)
    assert scores["macro_f1"][0] == pytest.approx(point.macro_f1)


def test_calibration_metrics_match_a_hand_computation():
    gold = ["positive", "negative", "neutral", "positive"]
    predicted = ["positive", "positive", "neutral", None]
    probabilities = [
        {"positive": 0.9, "negative": 0.05, "neutral": 0.05},  # right, 0.9 sure
        {"positive": 0.6, "negative": 0.3, "neutral": 0.1},  # wrong, 0.6 sure
        {"positive": 0.25, "negative": 0.25, "neutral": 0.5},  # right, 0.5 sure
        None,  # no answer, no probabilities: uniform, confidence 0
    ]
    rows = row_confidences(gold, predicted, probabilities, LABELS)
    assert rows.confidence.tolist() == [0.9, 0.6, 0.5, 0.0]
    assert rows.is_correct.tolist() == [True, False, True, False]
    found = calibration_metrics(rows, n_bins=10)
    # Bins: 0.0 (wrong, 0.0), 0.5 (right, 0.5), 0.6 (wrong, 0.6), 0.9 (right, 0.9); ECE = sum |acc - conf| / n.
    assert found.ece == pytest.approx((0 + 0.5 + 0.6 + 0.1) / 4)
    brier = [
        0.1**2 + 0.05**2 + 0.05**2,
        0.6**2 + 0.7**2 + 0.1**2,
        0.25**2 + 0.25**2 + 0.5**2,
        (2 / 3) ** 2 + 2 * (1 / 3) ** 2,
    ]
    assert found.brier == pytest.approx(sum(brier) / 4)
    assert [b.count for b in found.bins] == [1, 0, 0, 0, 0, 1, 1, 0, 0, 1]
    assert found.bins[6].mean_confidence == pytest.approx(0.6) and found.bins[6].accuracy == 0.0
    # Surest first: 0.9 right, 0.6 wrong, 0.5 right, 0.0 wrong; 90% of 4 rows answers ceil(3.6) = 4.
    assert dict(found.coverage)[0.25] == 1.0 and dict(found.coverage)[0.5] == 0.5
    assert dict(found.coverage)[0.75] == pytest.approx(2 / 3) and found.accuracy_at_90_coverage == 0.5


def test_a_perfectly_calibrated_confidence_has_zero_ece_and_intervals_contain_the_estimate():
    # Confidence 0.8, and exactly 8 of every 10 such rows right.
    gold = ["positive"] * 100
    predicted = ["positive"] * 80 + ["negative"] * 20
    probabilities = [{"positive": 0.8, "negative": 0.1, "neutral": 0.1}] * 80 + [
        {"positive": 0.1, "negative": 0.8, "neutral": 0.1}
    ] * 20
    rows = row_confidences(gold, predicted, probabilities, LABELS)
    found = calibration_metrics(rows)
    assert found.ece == pytest.approx(0.0, abs=1e-12)
    intervals = calibration_intervals(rows, n_resamples=300, seed=1)
    assert intervals["ece"][0] <= found.ece <= intervals["ece"][1]
    assert (
        intervals["brier"][0] <= found.brier <= intervals["brier"][1] and intervals["brier"][0] < intervals["brier"][1]
    )
    assert intervals == calibration_intervals(rows, n_resamples=300, seed=1)  # seeded
