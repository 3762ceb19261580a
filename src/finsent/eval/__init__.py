"""The evaluation stage: models and baselines on test sets, side by side, with intervals and a report.

Usage: ``finsent eval --config recipes/x.yaml`` or ``evaluate_model(load_config("x"))``.
Steps: check names -> read test sets and cut them by protocol -> contamination against the train sets ->
baselines -> models (predictions resume) -> temperatures fitted on the calibration split (saved beside each model)
-> metrics, calibration, bootstrap intervals, confusion, reliability and coverage PNGs -> reports, metrics.json.
Labels, prompts and scores follow the recipe's task: classification tasks (sentiment, transactions) score labels
against the task's label set; ``instruct`` scores free-form answers per task type (``finsent.eval.instruct``).
"""

from __future__ import annotations

import logging
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from finsent.calibration import Calibration, calibration_file, save_calibration
from finsent.checks import validate_recipe
from finsent.config import DedupConfig, ModelConfig, RecipeConfig, SourceConfig, data_split_set, dump_config
from finsent.data.dedup import find_overlap
from finsent.data.readers import Example, RowErrors, anonymize_examples
from finsent.data.sources import load_source
from finsent.errors import ConfigError, FinsentError
from finsent.eval.instruct import evaluate_instructions
from finsent.eval.metrics import classification_metrics
from finsent.eval.plots import plot_confusion, plot_coverage, plot_reliability
from finsent.eval.protocols import EvalSplit, apply_protocol
from finsent.eval.report import build_blocks, write_reports
from finsent.eval.runs import Run, metrics_row, read_test_set, run_baseline, run_model
from finsent.io import atomic_write_json, atomic_write_jsonl, atomic_write_text
from finsent.serve.predict import safe_name
from finsent.tasks import MetricKind, Task

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class EvalReport:
    """Where the evaluation wrote its outputs, and one metrics row per model or baseline and test set."""

    output_dir: str
    paths: dict[str, str]
    rows: list[dict[str, Any]]
    metric: MetricKind = "classification"  # instruct rows are per task type (see finsent.eval.instruct)


def evaluate_model(cfg: RecipeConfig) -> EvalReport:
    """Run the eval stage of ``cfg`` and return where its outputs are."""
    validate_recipe(cfg, ["eval"])
    ev, task = cfg.eval, cfg.get_task()
    out = Path(ev.output_dir)
    test_sets = ev.test_sets
    atomic_write_text(out / "config.yaml", dump_config(cfg))
    errors = RowErrors(ev.on_error)
    if task.labels is None:
        rows, paths = evaluate_instructions(cfg, test_sets, errors)
        keys = ("model", "test_set", "task_type", "metric", "value")
        atomic_write_json(
            out / "result.json", {"stage": "eval", "paths": paths, "rows": [{k: r[k] for k in keys} for r in rows]}
        )
        return EvalReport(str(out), paths, rows, "instruct")

    splits = []
    for ts in test_sets:
        examples = read_test_set(ts, errors)
        if task.use_anonymizer:
            examples = anonymize_examples(examples)
        check_test_labels(examples, task, ts.display_name, cfg.source_path)
        splits.append(apply_protocol(ts, examples))
    calibration_split = read_calibration_split(cfg, task, errors)
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
            runs.append(run_baseline(name, train_rows, split, task.labels, ev.seed, calibration_split))
    paths = {"config": str(out / "config.yaml")}
    for model in ev.models:
        model_runs = run_model(model, splits, task, out / "predictions", calibration_split)
        if model_runs and model_runs[0].calibration:
            paths[f"calibration_{model.name}"] = str(save_model_calibration(model, model_runs[0].calibration, out))
        runs.extend(model_runs)

    rows = []
    for run in runs:
        gold, predicted = [ex.label for ex in run.split.test], [p.label for p in run.predictions]
        metrics = classification_metrics(gold, predicted, task.labels)
        row = metrics_row(run, metrics, ev, contamination[run.split.name])
        stem = f"{safe_name(run.model)}_{safe_name(run.split.name)}"
        row["confusion_png"] = f"confusion_{stem}.png"
        plot_confusion(metrics, out / row["confusion_png"], f"{run.model} on {run.split.name}")
        if row["calibration"]:
            row["reliability_png"] = f"reliability_{stem}.png"
            plot_reliability(row["calibration"], out / row["reliability_png"], f"{run.model} on {run.split.name}")
        rows.append(row)
    coverage_pngs = {}
    for split in splits:
        scored = [row for row in rows if row["test_set"] == split.name and row["calibration"]]
        if scored:
            coverage_pngs[split.name] = f"coverage_{safe_name(split.name)}.png"
            plot_coverage(scored, out / coverage_pngs[split.name], split.name)
    samples = draw_samples(runs, ev.num_samples, ev.seed)

    paths["samples"] = str(atomic_write_jsonl(out / "samples.jsonl", samples))
    intro = (
        f"{len({r['model'] for r in rows})} models and baselines on {len(splits)} test sets. Intervals: "
        f"{ev.confidence:.0%} percentile bootstrap, {ev.bootstrap_resamples} resamples, seed {ev.seed}. "
        f"Trained baselines learn from {describe_source(ev.train) if ev.train else 'the test set files'}; from a "
        "test set's own file, only the rows its protocol leaves out."
        + (f" Skipped input rows: {dict(errors.counts)}." if errors.counts else "")
    )
    blocks = build_blocks(rows, splits, contamination, samples, intro, coverage_pngs)
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


def read_calibration_split(cfg: RecipeConfig, task: Task, errors: RowErrors) -> EvalSplit | None:
    """Return the rows temperatures are fitted on: ``eval.calibration_set``, else the data stage's validation.jsonl
    when it exists (None: temperature scaling is off, or there is nothing to fit on)."""
    ev = cfg.eval
    if not ev.use_temperature_scaling:
        return None
    source = ev.calibration_set
    if source is None:
        path = Path(str(cfg.data.output_dir)) / "validation.jsonl"
        if not path.is_file():
            logger.warning("no eval.calibration_set and no %s: probabilities stay uncalibrated", path)
            return None
        source = data_split_set(cfg.task, path, "data_validation")
    examples = load_source(source, errors)
    if task.use_anonymizer:
        examples = anonymize_examples(examples)
    name = getattr(source, "display_name", None) or f"{source.name}:{Path(source.path or source.name).stem}"
    check_test_labels(examples, task, name, cfg.source_path, "eval.calibration_set")
    return EvalSplit(name, "whole", examples, [], (), "")


def save_model_calibration(model: ModelConfig, calibration: Calibration, out: Path) -> Path:
    """Save the fitted temperature in the eval dir and beside the model, where predict and serve look for it (not
    over a file the recipe names in ``calibration``); a model dir that cannot be written keeps the eval copy only."""
    copy = save_calibration(calibration, out / "calibration" / f"{safe_name(str(model.name))}.json")
    beside = None if model.calibration else calibration_file(model)
    if beside is None:
        return copy
    try:
        return save_calibration(calibration, beside)
    except FinsentError as err:
        logger.warning("%s; predict and serve can name %s in the model's calibration field", err, copy)
        return copy


def check_test_labels(
    examples: list[Example], task: Task, name: str | None, recipe: str | None, key: str = "eval.test_sets"
) -> None:
    """Fail when a test set's gold labels are not the task's (a sentiment file under task transactions)."""
    unknown = sorted({ex.label for ex in examples} - set(task.labels or ()))
    if unknown:
        raise ConfigError(
            f"test set {name} has labels outside task {task.name}",
            path=recipe,
            field=key,
            expected="|".join(task.labels or ()),
            got=unknown,
        )


def same_source(a: SourceConfig, b: SourceConfig) -> bool:
    """Whether two configs read the same rows (then a baseline trains on the rows the protocol left out)."""
    return (a.name, a.path, a.subset, a.split) == (b.name, b.path, b.subset, b.split)


def describe_source(source: SourceConfig) -> str:
    return f"{source.name} ({source.path})" if source.path else source.name


def count_contamination(test: list[Example], reference: list[str], dedup: DedupConfig, seed: int) -> dict[str, int]:
    """Return how many test texts occur in the reference (training) texts, exactly or as near duplicates."""
    if not reference:
        return {"exact": 0, "near": 0, "reference_texts": 0}
    overlap = find_overlap([ex.text for ex in test], reference, dedup, seed)
    return {"exact": len(overlap.exact), "near": len(overlap.near), "reference_texts": len(reference)}


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
                        "probabilities": p.probabilities,
                        "confidence": p.confidence,
                    }
                )
    return samples
