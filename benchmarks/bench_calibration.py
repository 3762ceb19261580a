"""Benchmark how sure the answers are: calibration of the tiny learning recipe against TF-IDF, on held-out PhraseBank.

Runs the real stages on ``recipes/tiny-cpu-learn.yaml``: ``build_dataset`` on PhraseBank AllAgree (lexicon teacher;
~300 held-out test sentences, ~110 validation sentences), ``train_sft`` (a random 2-layer, 128-wide Qwen3 with the
real Qwen3 tokenizer, full fine-tuning, 400 steps), then ``evaluate_model`` with the SFT model and the majority,
lexicon and TF-IDF baselines. Eval scores every label after ``<answer>``, fits one temperature per model and baseline
on the validation split and reports, per row: ECE (10 bins) and the Brier score with 95% bootstrap intervals, and
accuracy on the surest 90% of the test sentences, as given and after temperature scaling.
Reference: the TF-IDF + logistic-regression baseline on the same rows (scikit-learn's probabilities); the ratios are
ours / reference (below 1 is better for ECE and Brier, above 1 for accuracy at 90% coverage).

Usage: python benchmarks/bench_calibration.py [--output-dir DIR] [key.path=value ...]  (recipe overrides)
"""

from __future__ import annotations

import os
import platform
import time
from typing import Any

import torch
import transformers

from bench_learning import parse_recipe_args
from finsent.config import load_config
from finsent.data import build_dataset
from finsent.eval import evaluate_model
from finsent.sft import train_sft

REFERENCE = "tfidf"


def interval(scores: dict[str, Any], key: str) -> str:
    low, high = scores[f"{key}_ci"]
    return f"{scores[key]:.3f} [{low:.3f}, {high:.3f}]"


def main() -> None:
    args, run_overrides = parse_recipe_args(__doc__.splitlines()[0], "calibration")
    out = args.output_dir
    model = f"{{path: '{out / 'sft'}', name: sft, max_new_tokens: 96, batch_size: 32}}"
    overrides = [
        *run_overrides,
        f"eval.models=[{model}]",
        "eval.baselines=[majority, lexicon, tfidf]",
        *args.overrides,
    ]
    cfg = load_config(args.recipe, overrides)
    print(
        f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__} "
        f"({torch.get_num_threads()} threads), transformers {transformers.__version__}"
    )
    print(f"recipe {args.recipe.name} -> {out}; overrides: {args.overrides or 'none'}", flush=True)

    started = time.perf_counter()
    data = build_dataset(cfg)
    print(f"data: {data.counts} in {time.perf_counter() - started:.0f} s", flush=True)
    started = time.perf_counter()
    sft = train_sft(cfg)
    print(f"sft: {sft.output_dir} in {(time.perf_counter() - started) / 60:.1f} min", flush=True)
    started = time.perf_counter()
    report = evaluate_model(cfg)
    eval_min = (time.perf_counter() - started) / 60

    rows = {row["model"]: row for row in report.rows}
    first = rows["sft"]
    fitted = first["calibration"]["fitted_on"]
    print()
    print(
        f"held-out test: {first['n']} PhraseBank AllAgree sentences; temperatures fitted on {fitted['num_rows']} "
        f"validation sentences; eval took {eval_min:.1f} min; 95% bootstrap intervals, "
        f"{cfg.eval.bootstrap_resamples} resamples"
    )
    header = (
        f"{'model':<9} {'accuracy':>8} {'T':>6} {'ECE as given':>22} {'ECE scaled':>22} "
        f"{'Brier scaled':>22} {'acc@90% scaled':>14}"
    )
    print(header)
    for name, row in rows.items():
        calibration = row["calibration"]
        raw, scaled = calibration["raw"], calibration["scaled"]
        print(
            f"{name:<9} {row['accuracy']:>8.3f} {calibration['temperature']:>6.2f} {interval(raw, 'ece'):>22} "
            f"{interval(scaled, 'ece'):>22} {interval(scaled, 'brier'):>22} "
            f"{scaled['accuracy_at_90_coverage']:>14.3f}"
        )
    reference = rows[REFERENCE]["calibration"]["scaled"]
    ours = first["calibration"]["scaled"]
    print(
        f"ratios (finsent sft / {REFERENCE}, both temperature-scaled): ECE {ours['ece'] / reference['ece']:.2f}x, "
        f"Brier {ours['brier'] / reference['brier']:.2f}x, accuracy at 90% coverage "
        f"{ours['accuracy_at_90_coverage'] / reference['accuracy_at_90_coverage']:.3f}x; "
        f"sft accuracy {first['accuracy']:.3f} at 100% -> {ours['accuracy_at_90_coverage']:.3f} at 90%"
    )
    print(f"report with the reliability diagrams and coverage curves: {report.paths['report_html']}")


if __name__ == "__main__":
    main()
