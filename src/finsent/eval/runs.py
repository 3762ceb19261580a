"""What a model or baseline did on a test set: reading test sets, predicting them (resumable), and the metrics row
of each run. Shared by the classification and instruction evals and by the export's comparison.
"""

from __future__ import annotations

import gc
import logging
import time
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from finsent.calibration import Calibration, apply_temperature, fit_temperature
from finsent.config import EvalConfig, EvalSetConfig, ModelConfig
from finsent.data.readers import Example, RowErrors
from finsent.data.sources import load_source
from finsent.errors import ConfigError
from finsent.eval.baselines import BASELINES
from finsent.eval.metrics import (
    Metrics,
    bootstrap_intervals,
    calibration_intervals,
    calibration_metrics,
    row_confidences,
)
from finsent.eval.protocols import EvalSplit
from finsent.serve.backends import load_backend
from finsent.serve.predict import Prediction, PredictResult, predict_rows, predictions_path
from finsent.tasks import Task

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Run:
    """The predictions of one model or baseline on one test set."""

    model: str
    kind: str  # "model" or "baseline"
    backend: str | None
    split: EvalSplit
    predictions: list[Prediction]
    calibration: Calibration | None = None  # the temperature fitted on the calibration split; None: not fitted


def read_test_set(ts: EvalSetConfig, errors: RowErrors) -> list[Example]:
    """Return the rows of ``path`` then of each of ``extra_paths`` (FiQA-SA: headlines then posts), in file order."""
    return [ex for path in [ts.path, *ts.extra_paths] for ex in load_source(replace(ts, path=path), errors)]


def run_baseline(
    name: str,
    train: list[Example],
    split: EvalSplit,
    labels: tuple[str, ...],
    seed: int,
    calibration_split: EvalSplit | None = None,
) -> Run:
    """Fit baseline ``name`` on ``train``, label the test rows, and fit its temperature on ``calibration_split``."""
    baseline = BASELINES.get(name)(seed)
    if baseline.uses_train:
        if not train:  # only when eval.train names the test set's own file under a protocol that uses it whole
            raise ConfigError(
                f"baseline {name} has no rows to learn from for {split.name}: the train source is the test set itself",
                field="eval.train",
                expected="another source, or protocol holdout",
            )
        baseline.fit([ex.text for ex in train], [ex.label for ex in train])

    def predict(examples: list[Example]) -> list[Prediction]:
        start = time.perf_counter()
        guesses = baseline.predict([ex.text for ex in examples], labels)
        wall_ms = (time.perf_counter() - start) * 1000 / len(examples)
        return [
            Prediction(
                ex.id,
                ex.text,
                guess.label,
                guess.reasoning,
                "",
                "ok",
                None,
                wall_ms,
                0,
                wall_ms,
                guess.probabilities,
                guess.probabilities.get(guess.label, 0.0),
                guess.label,
            )
            for ex, guess in zip(examples, guesses, strict=True)
        ]

    predictions = predict(split.test)
    logger.info("%s on %s: fitted on %d rows", name, split.name, len(train))
    calibration = None
    if calibration_split is not None:
        calibration = fit_calibration(name, predict(calibration_split.test), calibration_split, labels)
    return Run(name, "baseline", None, split, predictions, calibration)


def fit_calibration(
    name: str, predictions: list[Prediction], split: EvalSplit, labels: tuple[str, ...]
) -> Calibration | None:
    """Return the temperature of ``name`` fitted on ``split``'s predictions, or None when none has label
    probabilities (no answer tag, or a server without logprobs)."""
    scored = [(p.probabilities, ex.label) for p, ex in zip(predictions, split.test, strict=True) if p.probabilities]
    if not scored:
        logger.warning("%s: no label probabilities on %s, so no temperature fitted", name, split.name)
        return None
    matrix = np.array([[probabilities.get(label, 0.0) for label in labels] for probabilities, _ in scored])
    gold = np.array([labels.index(label) for _, label in scored])
    return fit_temperature(matrix, gold, split.name)


def run_model(
    model: ModelConfig,
    splits: list[EvalSplit],
    task: Task,
    predictions_dir: Path,
    calibration_split: EvalSplit | None = None,
) -> list[Run]:
    """Load ``model`` once and predict every test set (prompted and parsed as ``task`` says) and the calibration
    split, whose predictions fit the model's temperature; predictions resume."""
    extra = [calibration_split] if calibration_split else []
    results = predict_splits(model, [*splits, *extra], task, predictions_dir)
    calibration = None
    if calibration_split is not None and task.labels:
        calibration = fit_calibration(str(model.name), results.pop().predictions, calibration_split, task.labels)
    return [
        Run(model.name, "model", model.backend, split, result.predictions, calibration)
        for split, result in zip(splits, results, strict=True)
    ]


def predict_splits(
    model: ModelConfig,
    splits: list[EvalSplit],
    task: Task,
    predictions_dir: Path,
    *,
    systems: Callable[[EvalSplit], Mapping[str, str]] | None = None,
) -> list[PredictResult]:
    """Load ``model`` once, predict each split into its resumable file, and free the weights before returning.

    Args:
        systems: a split -> its rows' own system prompts (row id -> prompt), for rows that carry one.
    """
    backend = load_backend(model)
    results = [
        predict_rows(
            backend,
            [(ex.id, ex.text) for ex in split.test],
            predictions_path(predictions_dir, model, task.prompt, split.name),
            task,
            batch_size=model.batch_size,
            desc=f"{model.name} on {split.name}",
            systems=systems(split) if systems else None,
        )
        for split in splits
    ]
    del backend
    gc.collect()  # free the weights (and GPU memory) before the next model loads
    return results


def metrics_row(run: Run, metrics: Metrics, ev: EvalConfig, contamination: dict[str, int]) -> dict[str, Any]:
    """Return the metrics.json row of one run."""
    gold = [ex.label for ex in run.split.test]
    pred = [p.label for p in run.predictions]
    intervals = bootstrap_intervals(
        gold, pred, metrics.labels, n_resamples=ev.bootstrap_resamples, confidence=ev.confidence, seed=ev.seed
    )
    row: dict[str, Any] = {
        "model": run.model,
        "kind": run.kind,
        "backend": run.backend,
        "test_set": run.split.name,
        "protocol": run.split.protocol,
        "n": metrics.n,
        "accuracy": _round(metrics.accuracy),
        "accuracy_ci": [_round(v) for v in intervals["accuracy"]],
        "macro_f1": _round(metrics.macro_f1),
        "macro_f1_ci": [_round(v) for v in intervals["macro_f1"]],
        "weighted_f1": _round(metrics.weighted_f1),
        "ci_level": ev.confidence,
        "per_label": {
            label: {k: _round(v) if isinstance(v, float) else v for k, v in asdict(scores).items()}
            for label, scores in metrics.per_label.items()
        },
        "confusion": {
            "gold": list(metrics.labels),
            "predicted": [*metrics.labels, "no_answer"],
            "counts": metrics.confusion,
        },
        "format_compliance": None,
        "parse_failures": None,
        "parse_status": None,
        "parse_issues": None,
        "latency_ms_p50": None,
        "latency_ms_p95": None,
        "tokens_per_s": None,
        "mean_reasoning_words": None,
        "contamination": contamination,
        "anchors": [asdict(anchor) for anchor in run.split.anchors],
        "note": run.split.note,
        "calibration": calibration_report(run, metrics.labels, ev),
    }
    if run.kind == "model":
        status = Counter(p.status for p in run.predictions)
        latencies = [p.latency_ms for p in run.predictions]
        wall_s = sum(p.wall_ms for p in run.predictions) / 1000
        tokens = sum(p.completion_tokens for p in run.predictions)
        row.update(
            {
                # A fallback parse can still be right, but it is never counted as following the format.
                "format_compliance": _round(status["ok"] / len(run.predictions)),
                "parse_failures": len(run.predictions) - status["ok"],
                "parse_status": {s: status[s] for s in ("ok", "fallback", "missing")},
                "parse_issues": dict(Counter(p.issue for p in run.predictions if p.issue).most_common()),
                "latency_ms_p50": _round(float(np.percentile(latencies, 50)), 1),
                "latency_ms_p95": _round(float(np.percentile(latencies, 95)), 1),
                "tokens_per_s": _round(tokens / wall_s, 1) if wall_s > 0 else None,
                "mean_reasoning_words": _round(float(np.mean([len(p.reasoning.split()) for p in run.predictions])), 1),
            }
        )
    return row


def calibration_report(run: Run, labels: tuple[str, ...], ev: EvalConfig) -> dict[str, Any] | None:
    """Return how well the run's label probabilities are calibrated, as given (``raw``) and after the fitted
    temperature (``scaled``): ECE and Brier score with bootstrap intervals, accuracy at 90% coverage, the
    reliability bins and the coverage curve. None when the backend gave no probabilities."""
    probabilities = [p.probabilities for p in run.predictions]
    missing = sum(p is None for p in probabilities)
    if missing == len(probabilities):
        return None
    gold, predicted = [ex.label for ex in run.split.test], [p.model_label or p.label for p in run.predictions]

    def scores(rows: list[dict[str, float] | None]) -> dict[str, Any]:
        confidences = row_confidences(gold, predicted, rows, labels)
        found = calibration_metrics(confidences, ev.calibration_bins)
        intervals = calibration_intervals(
            confidences,
            n_bins=ev.calibration_bins,
            n_resamples=ev.bootstrap_resamples,
            confidence=ev.confidence,
            seed=ev.seed,
        )
        return {
            "ece": _round(found.ece),
            "ece_ci": [_round(v) for v in intervals["ece"]],
            "brier": _round(found.brier),
            "brier_ci": [_round(v) for v in intervals["brier"]],
            "accuracy_at_90_coverage": _round(found.accuracy_at_90_coverage),
            "reliability": [
                {k: _round(v) if isinstance(v, float) else v for k, v in asdict(b).items()} for b in found.bins
            ],
            "coverage": [[share, _round(accuracy)] for share, accuracy in found.coverage],
            # Calibration in the large: the mean probability of each label against its share of the gold labels.
            "per_label": {
                label: {
                    "mean_probability": _round(float(confidences.probabilities[:, i].mean())),
                    "gold_share": _round(float(confidences.gold[:, i].mean())),
                }
                for i, label in enumerate(labels)
            },
        }

    temperature = run.calibration.temperature if run.calibration else None
    scaled = (
        scores([apply_temperature(p, temperature) if p else None for p in probabilities])
        if temperature is not None
        else None
    )
    return {
        "rows_without_probabilities": missing,
        "bins": ev.calibration_bins,
        "temperature": temperature,
        "fitted_on": asdict(run.calibration) if run.calibration else None,
        "raw": scores(probabilities),
        "scaled": scaled,
    }


def _round(value: float | None, digits: int = 4) -> float | None:
    return None if value is None else round(value, digits)
