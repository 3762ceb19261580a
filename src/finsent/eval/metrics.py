"""Classification and calibration metrics (scikit-learn, numpy) and seeded bootstrap intervals.

Averages run over the labels that occur in the gold labels or the predictions, as scikit-learn does by default
and as the published FinGPT and FinBERT numbers were computed; a label that occurs in neither is reported with
support 0 and no scores. An unparsable answer (``None``) counts as wrong and as a miss for its gold label.

Calibration scores the probability of the answer given: a row's confidence is the probability of its predicted
label (0 without a label), and a row whose backend gave no probabilities counts as uniform over the labels.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from sklearn.metrics import accuracy_score, confusion_matrix, f1_score, precision_recall_fscore_support

from finsent.completion import LABELS

NO_ANSWER = "no_answer"
_CHUNK = 100  # bootstrap resamples per vectorised step: bounds memory at 100 x n indices
COVERAGE_POINTS = tuple(round(0.05 * i, 2) for i in range(1, 21))  # 5%, 10%, ..., 100% of the rows answered


@dataclass(frozen=True)
class LabelScores:
    """Precision, recall and F1 of one label; ``None`` when the label occurs neither in gold nor in predictions."""

    precision: float | None
    recall: float | None
    f1: float | None
    support: int


@dataclass(frozen=True)
class Metrics:
    """Scores of one model on one test set; ``confusion`` rows are gold labels, columns predictions + no_answer."""

    n: int
    accuracy: float
    macro_f1: float
    weighted_f1: float
    per_label: dict[str, LabelScores]
    labels: tuple[str, ...]
    confusion: list[list[int]]


def classification_metrics(
    y_true: Sequence[str], y_pred: Sequence[str | None], labels: Sequence[str] = LABELS
) -> Metrics:
    """Return accuracy, macro/weighted F1, per-label scores and the confusion matrix."""
    gold, pred = _check(y_true, y_pred, labels)
    present = [label for label in labels if label in set(gold) | set(pred)]
    precision, recall, f1, support = precision_recall_fscore_support(gold, pred, labels=present, zero_division=0.0)
    per_label = {label: LabelScores(None, None, None, 0) for label in labels}
    for i, label in enumerate(present):
        per_label[label] = LabelScores(float(precision[i]), float(recall[i]), float(f1[i]), int(support[i]))
    matrix = confusion_matrix(gold, pred, labels=[*labels, NO_ANSWER])[: len(labels)]
    return Metrics(
        n=len(gold),
        accuracy=float(accuracy_score(gold, pred)),
        macro_f1=float(f1_score(gold, pred, labels=present, average="macro", zero_division=0.0)),
        weighted_f1=float(f1_score(gold, pred, labels=present, average="weighted", zero_division=0.0)),
        per_label=per_label,
        labels=tuple(labels),
        confusion=matrix.tolist(),
    )


def bootstrap_intervals(
    y_true: Sequence[str],
    y_pred: Sequence[str | None],
    labels: Sequence[str] = LABELS,
    *,
    n_resamples: int = 1000,
    confidence: float = 0.95,
    seed: int = 0,
) -> dict[str, tuple[float, float]]:
    """Return percentile bootstrap intervals of accuracy and macro-F1 (``np.random.default_rng(seed)``)."""
    gold, pred = _check(y_true, y_pred, labels)
    index = {label: i for i, label in enumerate([*labels, NO_ANSWER])}
    gold_codes = np.array([index[g] for g in gold])
    pred_codes = np.array([index[p] for p in pred])
    rng = np.random.default_rng(seed)
    accuracy, macro_f1 = [], []
    for start in range(0, n_resamples, _CHUNK):
        rows = rng.integers(0, len(gold), size=(min(_CHUNK, n_resamples - start), len(gold)))
        counts = resampled_confusion(gold_codes[rows], pred_codes[rows], len(index))
        scores = scores_from_confusion(counts)
        accuracy.append(scores["accuracy"])
        macro_f1.append(scores["macro_f1"])
    tail = (1 - confidence) / 2
    return {
        name: tuple(float(q) for q in np.quantile(np.concatenate(values), [tail, 1 - tail]))
        for name, values in (("accuracy", accuracy), ("macro_f1", macro_f1))
    }


def resampled_confusion(gold_codes: np.ndarray, pred_codes: np.ndarray, k: int) -> np.ndarray:
    """Return (resamples x k x k) confusion counts for (resamples x n) arrays of label codes."""
    offsets = np.arange(len(gold_codes))[:, None] * k * k
    flat = (gold_codes * k + pred_codes + offsets).ravel()
    return np.bincount(flat, minlength=len(gold_codes) * k * k).reshape(-1, k, k)


def scores_from_confusion(counts: np.ndarray) -> dict[str, np.ndarray]:
    """Return accuracy and macro-F1 per confusion matrix; the last column (no_answer) is never a label."""
    tp = np.diagonal(counts, axis1=1, axis2=2)[:, :-1]
    gold = counts[:, :-1, :].sum(axis=2)
    pred = counts[:, :, :-1].sum(axis=1)
    present = (gold + pred) > 0
    f1 = np.divide(2 * tp, gold + pred, out=np.zeros(tp.shape), where=present)
    n = counts.sum(axis=(1, 2))
    return {"accuracy": tp.sum(axis=1) / n, "macro_f1": f1.sum(axis=1) / present.sum(axis=1)}


def _check(y_true: Sequence[str], y_pred: Sequence[str | None], labels: Sequence[str]) -> tuple[list[str], list[str]]:
    if len(y_true) != len(y_pred) or not y_true:
        raise ValueError(f"need as many predictions as gold labels, at least one: got {len(y_true)} and {len(y_pred)}")
    unknown = sorted(set(y_true) - set(labels))
    if unknown:
        raise ValueError(f"gold labels {unknown} are not in {list(labels)}")
    pred = [p if p in labels else NO_ANSWER for p in y_pred]
    return list(y_true), pred


@dataclass(frozen=True)
class ReliabilityBin:
    """Rows whose confidence falls in ``[lower, upper)`` (the last bin includes 1): how sure, how often right."""

    lower: float
    upper: float
    count: int
    mean_confidence: float | None
    accuracy: float | None


@dataclass(frozen=True)
class CalibrationMetrics:
    """How well the probabilities of one model on one test set match how often it is right."""

    ece: float  # expected calibration error over equal-width confidence bins
    brier: float  # multi-class Brier score: mean over rows of the squared error summed over labels
    bins: list[ReliabilityBin]
    coverage: list[tuple[float, float]]  # (share of rows answered, accuracy on them), surest rows first
    accuracy_at_90_coverage: float


@dataclass(frozen=True)
class Confidences:
    """Per row: the probability of the predicted label, whether it is right, its Brier score, and the label
    probabilities (rows x labels) and one-hot gold labels they came from."""

    confidence: np.ndarray
    is_correct: np.ndarray
    brier: np.ndarray
    probabilities: np.ndarray
    gold: np.ndarray


def row_confidences(
    y_true: Sequence[str],
    y_pred: Sequence[str | None],
    probabilities: Sequence[dict[str, float] | None],
    labels: Sequence[str],
) -> Confidences:
    """Return each row's confidence, correctness and Brier score; rows without probabilities are uniform."""
    gold, pred = _check(y_true, y_pred, labels)
    if len(probabilities) != len(gold):
        raise ValueError(f"need one probability row per gold label: got {len(probabilities)} and {len(gold)}")
    uniform = 1 / len(labels)
    matrix = np.array([[row.get(label, 0.0) if row else uniform for label in labels] for row in probabilities])
    index = {label: i for i, label in enumerate(labels)}
    onehot = np.zeros_like(matrix)
    onehot[np.arange(len(gold)), [index[g] for g in gold]] = 1
    confidence = np.array([matrix[i, index[p]] if p in index else 0.0 for i, p in enumerate(pred)])
    is_correct = np.array([g == p for g, p in zip(gold, pred, strict=True)])
    return Confidences(confidence, is_correct, ((matrix - onehot) ** 2).sum(axis=1), matrix, onehot)


def calibration_metrics(rows: Confidences, n_bins: int = 10) -> CalibrationMetrics:
    """Return ECE, Brier score, the reliability bins and the coverage-accuracy curve of ``rows``."""
    bin_of = confidence_bins(rows.confidence, n_bins)
    counts = np.bincount(bin_of, minlength=n_bins)
    confidence_sums = np.bincount(bin_of, weights=rows.confidence, minlength=n_bins)
    correct_sums = np.bincount(bin_of, weights=rows.is_correct, minlength=n_bins)
    bins = [
        ReliabilityBin(
            round(b / n_bins, 4),
            round((b + 1) / n_bins, 4),
            int(counts[b]),
            float(confidence_sums[b] / counts[b]) if counts[b] else None,
            float(correct_sums[b] / counts[b]) if counts[b] else None,
        )
        for b in range(n_bins)
    ]
    accuracy = coverage_accuracy(rows)
    coverage = [(share, float(accuracy[answered(share, len(accuracy)) - 1])) for share in COVERAGE_POINTS]
    return CalibrationMetrics(
        ece=float(np.abs(confidence_sums - correct_sums).sum() / len(bin_of)),
        brier=float(rows.brier.mean()),
        bins=bins,
        coverage=coverage,
        accuracy_at_90_coverage=float(accuracy[answered(0.9, len(accuracy)) - 1]),
    )


def confidence_bins(confidence: np.ndarray, n_bins: int) -> np.ndarray:
    """Return each confidence's equal-width bin; 1.0 falls in the last bin."""
    return np.minimum((confidence * n_bins).astype(int), n_bins - 1)


def coverage_accuracy(rows: Confidences) -> np.ndarray:
    """Return, for k = 1..n, the accuracy on the k surest rows (ties keep file order)."""
    order = np.argsort(-rows.confidence, kind="stable")
    return np.cumsum(rows.is_correct[order]) / np.arange(1, len(order) + 1)


def answered(share: float, n: int) -> int:
    """Return how many of ``n`` rows a coverage of ``share`` answers (at least one)."""
    return max(1, math.ceil(round(share * n, 9)))


def calibration_intervals(
    rows: Confidences, *, n_bins: int = 10, n_resamples: int = 1000, confidence: float = 0.95, seed: int = 0
) -> dict[str, tuple[float, float]]:
    """Return percentile bootstrap intervals of ECE and the Brier score (``np.random.default_rng(seed)``)."""
    n = len(rows.confidence)
    bin_of = confidence_bins(rows.confidence, n_bins)
    rng = np.random.default_rng(seed)
    ece, brier = [], []
    for start in range(0, n_resamples, _CHUNK):
        sample = rng.integers(0, n, size=(min(_CHUNK, n_resamples - start), n))
        flat = (bin_of[sample] + np.arange(len(sample))[:, None] * n_bins).ravel()
        gap = np.bincount(
            flat, weights=(rows.confidence[sample] - rows.is_correct[sample]).ravel(), minlength=len(sample) * n_bins
        )
        ece.append(np.abs(gap.reshape(-1, n_bins)).sum(axis=1) / n)
        brier.append(rows.brier[sample].mean(axis=1))
    tail = (1 - confidence) / 2
    return {
        name: tuple(float(q) for q in np.quantile(np.concatenate(values), [tail, 1 - tail]))
        for name, values in (("ece", ece), ("brier", brier))
    }
