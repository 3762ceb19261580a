"""Benchmark learning, not just running: a tiny Qwen3 trained on CPU for a few minutes, measured by the eval stage.

Runs the real stages on ``recipes/tiny-cpu-learn.yaml``: ``build_dataset`` on PhraseBank AllAgree (lexicon teacher,
~300 held-out test sentences), ``train_sft`` (a random 2-layer, 128-wide Qwen3 with the real Qwen3 tokenizer, full
fine-tuning), ``train_grpo`` for a few steps from the SFT model, then ``evaluate_model`` on the held-out test split
(majority baseline, SFT model, GRPO model). The GRPO correctness reward is read from the plateau evidence: the mean of
its first window against its last.
Reference: a bare PyTorch training loop over the same model size and tokenizer, batch 8, 4 minutes (170 steps) on 2
CPU cores, reached format 1.00 and accuracy 0.747 against a majority rate of 0.643 on 300 held-out AllAgree sentences.
Goals: format >= 0.95 and accuracy >= majority + 5 points. Timings are noisy on a shared machine.

Usage: python benchmarks/bench_learning.py [--output-dir DIR] [key.path=value ...]  (recipe overrides)
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

import torch
import transformers
import trl

from finsent.config import load_config
from finsent.data import build_dataset
from finsent.eval import evaluate_model
from finsent.grpo import train_grpo
from finsent.sft import train_sft

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("FINSENT_SHARED_DATA", REPO_ROOT.parent / "shared" / "data"))
ALLAGREE = SHARED_DATA / "financial_phrasebank" / "FinancialPhraseBank-v1.0" / "Sentences_AllAgree.txt"
RECIPE = REPO_ROOT / "recipes" / "tiny-cpu-learn.yaml"
# A bare PyTorch training loop: same model size and tokenizer, batch 8, on 2 CPU cores.
REFERENCE = {"steps": 170, "minutes": 4.0, "format": 1.0, "accuracy": 0.747, "majority": 0.643}
CORRECTNESS_KEY = "rewards/correctness_reward/mean"


def last_step(metrics_jsonl: Path) -> int:
    """Return the last step a stage logged to its ``metrics.jsonl``."""
    return max(json.loads(line)["step"] for line in metrics_jsonl.read_text().splitlines() if line.strip())


def window_means(points: list[list[float]], window_steps: int) -> tuple[float, float]:
    """Return the mean of the first and of the last ``window_steps`` logged values of a ``(step, value)`` series."""
    values = [value for _, value in sorted(points)]
    first, last = values[:window_steps], values[-window_steps:]
    return sum(first) / len(first), sum(last) / len(last)


def parse_recipe_args(description: str, name: str) -> tuple[argparse.Namespace, list[str]]:
    """Parse ``--output-dir``, ``--recipe`` and recipe overrides; return them with the overrides that point the
    recipe at the output dir and at PhraseBank AllAgree (which must exist)."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument(
        "--output-dir", type=Path, default=REPO_ROOT / "runs" / f"bench-{name}-{time.strftime('%Y%m%d-%H%M%S')}"
    )
    parser.add_argument("--recipe", type=Path, default=RECIPE)
    parser.add_argument("overrides", nargs="*", help="recipe overrides, e.g. sft.trainer.max_steps=100")
    args = parser.parse_args()
    if not ALLAGREE.is_file():
        raise SystemExit(
            f"PhraseBank AllAgree not found at {ALLAGREE}: set FINSENT_SHARED_DATA to the shared/data folder"
        )
    args.output_dir = args.output_dir.resolve()
    source = f"{{name: financial_phrasebank, path: '{ALLAGREE}'}}"
    return args, [f"output_dir={args.output_dir}", f"data.sources=[{source}]"]


def main() -> None:
    args, run_overrides = parse_recipe_args(__doc__.splitlines()[0], "learning")
    out = args.output_dir
    cfg = load_config(args.recipe, [*run_overrides, *args.overrides])

    print(
        f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__} "
        f"({torch.get_num_threads()} threads), transformers {transformers.__version__}, trl {trl.__version__}"
    )
    print(f"recipe {args.recipe} -> {out}; overrides: {args.overrides or 'none'}", flush=True)

    started = time.perf_counter()
    data = build_dataset(cfg)
    data_s = time.perf_counter() - started
    print(f"data: {data.counts} in {data_s:.0f} s", flush=True)

    started = time.perf_counter()
    sft = train_sft(cfg)
    sft_min = (time.perf_counter() - started) / 60
    sft_steps = last_step(Path(sft.output_dir) / "metrics.jsonl")
    print(
        f"sft: {sft_steps} steps in {sft_min:.1f} min, train_loss {sft.metrics.get('train_loss', float('nan')):.3f}",
        flush=True,
    )

    started = time.perf_counter()
    grpo = train_grpo(cfg)
    grpo_min = (time.perf_counter() - started) / 60
    evidence = json.loads((Path(grpo.output_dir) / "plateau.json").read_text())
    window = cfg.grpo.plateau.window_steps
    first, last = window_means(evidence["trajectories"][CORRECTNESS_KEY], window)
    print(f"grpo: {evidence['last_step']} steps in {grpo_min:.1f} min", flush=True)

    started = time.perf_counter()
    report = evaluate_model(cfg)
    eval_min = (time.perf_counter() - started) / 60
    rows = {row["model"]: row for row in report.rows}
    majority = rows["majority"]["accuracy"]

    ref = REFERENCE
    ref_margin = 100 * (ref["accuracy"] - ref["majority"])
    print()
    print(f"held-out test: {rows['majority']['n']} PhraseBank AllAgree sentences; eval took {eval_min:.1f} min")
    print(f"{'':<22} {'steps':>6} {'minutes':>8} {'format':>7} {'accuracy':>9} {'majority':>9} {'margin pts':>11}")
    print(
        f"{'bare loop (reference)':<22} {ref['steps']:>6} {ref['minutes']:>8.1f} {ref['format']:>7.3f} "
        f"{ref['accuracy']:>9.3f} {ref['majority']:>9.3f} {ref_margin:>11.1f}"
    )
    for name, steps, minutes in (
        ("sft", sft_steps, sft_min),
        ("sft + grpo", evidence["last_step"], sft_min + grpo_min),
    ):
        row = rows[name.split(" + ")[-1]]
        margin = 100 * (row["accuracy"] - majority)
        print(
            f"{'finsent ' + name:<22} {steps:>6} {minutes:>8.1f} {row['format_compliance']:>7.3f} "
            f"{row['accuracy']:>9.3f} {majority:>9.3f} {margin:>11.1f}"
        )
    sft_row = rows["sft"]
    sft_margin = 100 * (sft_row["accuracy"] - majority)
    print(
        f"ratios (finsent sft / reference): margin {sft_margin / ref_margin:.2f}x, "
        f"minutes {sft_min / ref['minutes']:.2f}x, accuracy {sft_row['accuracy'] / ref['accuracy']:.3f}x"
    )
    print(
        f"goals: format >= 0.95 ({'met' if sft_row['format_compliance'] >= 0.95 else 'NOT met'}), "
        f"margin >= 5 points ({'met' if sft_margin >= 5 else 'NOT met'})"
    )
    print(
        f"GRPO correctness reward, mean of the first vs the last {window} steps: {first:.3f} -> {last:.3f} "
        f"({'rose' if last > first else 'did not rise'})"
    )
    print(f"evidence plot: {Path(grpo.output_dir) / 'plateau.png'}; eval report: {report.output_dir}")


if __name__ == "__main__":
    main()
