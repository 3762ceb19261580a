"""The evaluation stage: models and baselines on test sets, side by side, with intervals and a report.

Usage: ``finsent eval --config recipes/x.yaml`` or ``evaluate_model(load_config("x"))``.
Steps: check names -> read test sets and cut them by protocol -> contamination against the train sets ->
baselines -> models (predictions resume) -> metrics, bootstrap intervals, confusion PNGs -> reports, metrics.json.
Labels, prompts and scores follow the recipe's task: classification tasks (sentiment, transactions) score labels
against the task's label set; ``instruct`` scores free-form answers per task type (``finsent.eval.instruct``).
"""

from __future__ import annotations

import gc
import logging
import random
import time
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from finsent.completion import LABELS, PromptConfig
from finsent.config import DedupConfig, EvalConfig, EvalSetConfig, ModelConfig, RecipeConfig, SourceConfig, dump_config
from finsent.data.sources import Example, RowErrors, load_source
from finsent.errors import ConfigError
from finsent.eval.baselines import BASELINES
from finsent.eval.metrics import Metrics, bootstrap_intervals, classification_metrics
from finsent.eval.plots import plot_confusion
from finsent.eval.protocols import PROTOCOLS, EvalSplit, apply_protocol, check_protocol
from finsent.eval.report import build_blocks, write_reports
from finsent.io import atomic_write_json, atomic_write_jsonl, atomic_write_text
from finsent.serve.predict import Prediction, PredictResult, predict_rows, predictions_path, safe_name
from finsent.tasks import TASKS, MetricKind, Task

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class EvalReport:
    """Where the evaluation wrote its outputs, and one metrics row per model or baseline and test set."""

    output_dir: str
    paths: dict[str, str]
    rows: list[dict[str, Any]]
    metric: MetricKind = "classification"  # instruct rows are per task type (see finsent.eval.instruct)


@dataclass(frozen=True)
class Run:
    """The predictions of one model or baseline on one test set."""

    model: str
    kind: str  # "model" or "baseline"
    backend: str | None
    split: EvalSplit
    predictions: list[Prediction]


def evaluate_model(cfg: RecipeConfig) -> EvalReport:
    """Run the eval stage of ``cfg`` and return where its outputs are."""
    ev = cfg.eval
    out = Path(ev.output_dir)
    task = TASKS.get(cfg.task)
    test_sets = ev.test_sets or [default_test_set(cfg)]
    check_eval_config(ev, test_sets, cfg.source_path, task.name)
    atomic_write_text(out / "config.yaml", dump_config(cfg))
    errors = RowErrors(ev.on_error)
    if task.labels is None:
        from finsent.eval.instruct import evaluate_instructions

        rows, paths = evaluate_instructions(cfg, test_sets, errors)
        keys = ("model", "test_set", "task_type", "metric", "value")
        atomic_write_json(
            out / "result.json", {"stage": "eval", "paths": paths, "rows": [{k: r[k] for k in keys} for r in rows]}
        )
        return EvalReport(str(out), paths, rows, "instruct")

    splits = []
    for ts in test_sets:
        examples = read_test_set(ts, errors)
        if cfg.data.anonymize:
            from finsent.data.anonymize import anonymize_examples

            examples = anonymize_examples(examples)
        check_test_labels(examples, task, ts, cfg.source_path)
        splits.append(apply_protocol(ts, examples))
    train = load_source(ev.train, errors) if ev.train else []
    reference = [ex.text for source in ev.reference for ex in load_source(source, errors)]
    dedup = DedupConfig(use_near=True, threshold=ev.near_threshold)

    runs: list[Run] = []
    contamination: dict[str, dict[str, int]] = {}
    for ts, split in zip(test_sets, splits, strict=True):
        train_rows = split.rest if ev.train is None or same_source(ev.train, ts) else train
        contamination[split.name] = count_contamination(
            split.test, [*(ex.text for ex in train_rows), *reference], dedup, ev.seed
        )
        for name in ev.baselines:
            runs.append(run_baseline(name, train_rows, split, ev.seed))
    for model in ev.models:
        runs.extend(run_model(model, splits, cfg.prompt, out / "predictions", task.labels))

    rows = []
    for run in runs:
        gold, predicted = [ex.label for ex in run.split.test], [p.label for p in run.predictions]
        metrics = classification_metrics(gold, predicted, task.labels)
        row = metrics_row(run, metrics, ev, contamination[run.split.name])
        row["confusion_png"] = f"confusion_{safe_name(run.model)}_{safe_name(run.split.name)}.png"
        plot_confusion(metrics, out / row["confusion_png"], f"{run.model} on {run.split.name}")
        rows.append(row)
    samples = draw_samples(runs, ev.num_samples, ev.seed)

    paths = {"config": str(out / "config.yaml")}
    paths["samples"] = str(atomic_write_jsonl(out / "samples.jsonl", samples))
    intro = (
        f"{len({r['model'] for r in rows})} models and baselines on {len(splits)} test sets. Intervals: "
        f"{ev.confidence:.0%} percentile bootstrap, {ev.bootstrap_resamples} resamples, seed {ev.seed}. "
        f"Trained baselines learn from {describe_source(ev.train) if ev.train else 'the test set files'}; from a "
        "test set's own file, only the rows its protocol leaves out."
        + (f" Skipped input rows: {dict(errors.counts)}." if errors.counts else "")
    )
    blocks = build_blocks(rows, splits, contamination, samples, intro)
    paths.update(write_reports(out, "finsent evaluation", blocks))
    paths["metrics"] = str(atomic_write_json(out / "metrics.json", rows))
    atomic_write_json(
        out / "result.json",
        {
            "stage": "eval",
            "paths": paths,
            "rows": [
                {k: row[k] for k in ("model", "test_set", "accuracy", "macro_f1", "weighted_f1")} for row in rows
            ],
        },
    )
    return EvalReport(str(out), paths, rows)


def default_test_set(cfg: RecipeConfig) -> EvalSetConfig:
    """The data stage's test.jsonl: what a recipe evaluates when it names no test set (read by the task's reader)."""
    path = str(Path(cfg.data.output_dir) / "test.jsonl")
    if cfg.task == "instruct":
        return EvalSetConfig(name="instruct", path=path, display_name="data_test")
    if cfg.task == "transactions":
        return EvalSetConfig(
            name="transactions", path=path, text_column="text", label_column="label", display_name="data_test"
        )
    return EvalSetConfig(name="jsonl", path=path, display_name="data_test")


def check_test_labels(examples: list[Example], task: Task, ts: EvalSetConfig, recipe: str | None) -> None:
    """Fail when a test set's gold labels are not the task's (a sentiment file under task transactions)."""
    unknown = sorted({ex.label for ex in examples} - set(task.labels or ()))
    if unknown:
        raise ConfigError(
            f"test set {ts.display_name} has labels outside task {task.name}",
            path=recipe,
            field="eval.test_sets",
            expected="|".join(task.labels or ()),
            got=unknown,
        )


def check_eval_config(
    ev: EvalConfig, test_sets: list[EvalSetConfig], recipe: str | None = None, task: str = "sentiment"
) -> None:
    """Fail on names and combinations the stage would only reject after loading data or models."""
    from finsent.data.sources import SOURCES
    from finsent.serve.backends import BACKENDS

    if not ev.models and not ev.baselines:
        raise ConfigError(
            "nothing to evaluate", path=recipe, field="eval.models", expected="models or baselines", got=[]
        )
    if TASKS.get(task).labels is None and ev.baselines:
        raise ConfigError(
            "baselines answer a label set; task instruct has free-form answers",
            path=recipe,
            field="eval.baselines",
            expected="[] with task: instruct",
            got=ev.baselines,
        )
    for i, ts in enumerate(test_sets):
        try:
            check_protocol(ts, f"eval.test_sets.{i}")
        except ConfigError as err:
            raise ConfigError(err.message, path=recipe, field=err.field, expected=err.expected, got=err.got) from err
    for source in [*test_sets, *([ev.train] if ev.train else []), *ev.reference]:
        if not source.name.startswith("hub:") and source.name not in SOURCES:
            raise ConfigError(SOURCES.unknown_message(source.name), path=recipe, field="eval: source name")
    for i, model in enumerate(ev.models):
        if model.backend not in BACKENDS:
            raise ConfigError(BACKENDS.unknown_message(model.backend), path=recipe, field=f"eval.models.{i}.backend")
    for i, name in enumerate(ev.baselines):
        if name not in BASELINES:
            raise ConfigError(BASELINES.unknown_message(name), path=recipe, field=f"eval.baselines.{i}")
        answers = BASELINES.get(name).task
        if answers is not None and answers != task:
            raise ConfigError(
                f"baseline {name} answers task {answers} only", path=recipe, field=f"eval.baselines.{i}", got=task
            )
        unsplit = [ts.display_name for ts in test_sets if not splits_rows(ts)]
        if BASELINES.get(name).uses_train and ev.train is None and unsplit:
            raise ConfigError(
                f"baseline {name} learns from a train source, and the protocol of {unsplit[0]} leaves no rows over",
                path=recipe,
                field="eval.train",
                expected="a source such as {name: twitter_financial_news, path: sent_train.csv}",
                got=None,
            )


def splits_rows(ts: EvalSetConfig) -> bool:
    """Whether the test set's protocol leaves rows of its file over (for baselines to train on)."""
    return ts.protocol == "holdout" or PROTOCOLS.get(ts.protocol).test_size is not None


def read_test_set(ts: EvalSetConfig, errors: RowErrors) -> list[Example]:
    """Return the rows of ``path`` then of each of ``extra_paths`` (FiQA-SA: headlines then posts), in file order."""
    return [ex for path in [ts.path, *ts.extra_paths] for ex in load_source(replace(ts, path=path), errors)]


def same_source(a: SourceConfig, b: SourceConfig) -> bool:
    """Whether two configs read the same rows (then a baseline trains on the rows the protocol left out)."""
    return (a.name, a.path, a.subset, a.split) == (b.name, b.path, b.subset, b.split)


def describe_source(source: SourceConfig) -> str:
    return f"{source.name} ({source.path})" if source.path else source.name


def count_contamination(test: list[Example], reference: list[str], dedup: DedupConfig, seed: int) -> dict[str, int]:
    """Return how many test texts occur in the reference (training) texts, exactly or as near duplicates."""
    if not reference:
        return {"exact": 0, "near": 0, "reference_texts": 0}
    from finsent.data.dedup import find_overlap

    overlap = find_overlap([ex.text for ex in test], reference, dedup, seed)
    return {"exact": len(overlap.exact), "near": len(overlap.near), "reference_texts": len(reference)}


def run_baseline(name: str, train: list[Example], split: EvalSplit, seed: int) -> Run:
    """Fit baseline ``name`` on ``train`` and label the test rows."""
    baseline = BASELINES.get(name)(seed)
    if baseline.uses_train:
        if not train:  # only when eval.train names the test set's own file under a protocol that uses it whole
            raise ConfigError(
                f"baseline {name} has no rows to learn from for {split.name}: the train source is the test set itself",
                field="eval.train",
                expected="another source, or protocol holdout",
            )
        baseline.fit([ex.text for ex in train], [ex.label for ex in train])
    start = time.perf_counter()
    guesses = baseline.predict([ex.text for ex in split.test])
    wall_ms = (time.perf_counter() - start) * 1000 / len(split.test)
    predictions = [
        Prediction(ex.id, ex.text, guess.label, guess.reasoning, "", "ok", None, wall_ms, 0, wall_ms)
        for ex, guess in zip(split.test, guesses, strict=True)
    ]
    logger.info("%s on %s: fitted on %d rows", name, split.name, len(train))
    return Run(name, "baseline", None, split, predictions)


def run_model(
    model: ModelConfig,
    splits: list[EvalSplit],
    prompt: PromptConfig,
    predictions_dir: Path,
    labels: tuple[str, ...] = LABELS,
) -> list[Run]:
    """Load ``model`` once and predict every test set (answers parsed against ``labels``); predictions resume."""
    results = predict_splits(model, splits, prompt, predictions_dir, labels=labels)
    return [
        Run(model.name, "model", model.backend, split, result.predictions)
        for split, result in zip(splits, results, strict=True)
    ]


def predict_splits(
    model: ModelConfig,
    splits: list[EvalSplit],
    prompt: PromptConfig,
    predictions_dir: Path,
    *,
    labels: tuple[str, ...] = LABELS,
    systems: Callable[[EvalSplit], Mapping[str, str]] | None = None,
) -> list[PredictResult]:
    """Load ``model`` once, predict each split into its resumable file, and free the weights before returning.

    Args:
        systems: a split -> its rows' own system prompts (row id -> prompt), for rows that carry one.
    """
    from finsent.serve.backends import load_backend

    backend = load_backend(model)
    results = [
        predict_rows(
            backend,
            [(ex.id, ex.text) for ex in split.test],
            predictions_path(predictions_dir, model, prompt, split.name),
            prompt,
            batch_size=model.batch_size,
            desc=f"{model.name} on {split.name}",
            labels=labels,
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


def draw_samples(runs: list[Run], num_samples: int, seed: int) -> list[dict[str, Any]]:
    """Return up to ``num_samples`` right and as many wrong answers per run, drawn with a seeded generator."""
    rng = random.Random(seed)
    samples = []
    for run in runs:
        right = [
            i for i, (ex, p) in enumerate(zip(run.split.test, run.predictions, strict=True)) if ex.label == p.label
        ]
        wrong = sorted(set(range(len(run.predictions))) - set(right))
        for is_correct, pool in ((True, right), (False, wrong)):
            for i in sorted(rng.sample(pool, min(num_samples, len(pool)))):
                ex, p = run.split.test[i], run.predictions[i]
                samples.append(
                    {
                        "model": run.model,
                        "test_set": run.split.name,
                        "id": ex.id,
                        "text": ex.text,
                        "gold": ex.label,
                        "predicted": p.label,
                        "is_correct": is_correct,
                        "reasoning": p.reasoning,
                        "raw": p.raw,
                        "status": p.status,
                    }
                )
    return samples


def _round(value: float | None, digits: int = 4) -> float | None:
    return None if value is None else round(value, digits)
