"""Size against quality: the merged model and each GGUF on the same held-out rows, scored by the eval stage.

Each artifact is loaded through its predict backend (timed), predicts the rows, and is scored with the eval
stage's ``metrics_row``, so accuracy, macro-F1 and format compliance mean here what they mean in ``finsent eval``.
"""

from __future__ import annotations

import gc
import logging
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from finsent.config import EvalConfig, ModelConfig
from finsent.eval.metrics import classification_metrics
from finsent.eval.protocols import EvalSplit
from finsent.eval.runs import Run, metrics_row
from finsent.figures import new_figure, save_figure
from finsent.io import atomic_write_json, atomic_write_text
from finsent.serve.backends import load_backend
from finsent.serve.predict import Confidence, predict_rows
from finsent.tasks import Task

logger = logging.getLogger(__name__)

_NO_CONTAMINATION = {"exact": 0, "near": 0, "reference_texts": 0}
COLUMNS = (
    ("artifact", "artifact"),
    ("backend", "backend"),
    ("size", "file size"),
    ("load_s", "load s"),
    ("tokens_per_s", "tokens/s"),
    ("accuracy", "accuracy"),
    ("macro_f1", "macro-F1"),
    ("format_compliance", "format"),
)


@dataclass(frozen=True)
class Artifact:
    """One exported model to compare: a name for the table, how to load it and its size on disk."""

    name: str
    model: ModelConfig
    size_bytes: int


def compare_artifacts(
    artifacts: list[Artifact], split: EvalSplit, task: Task, ev: EvalConfig, out_dir: str | Path
) -> list[dict[str, Any]]:
    """Return one comparison row per artifact: size, load time, tokens/s and the eval stage's quality metrics."""
    rows = []
    gold = [ex.label for ex in split.test]
    for artifact in artifacts:
        start = time.perf_counter()
        backend = load_backend(artifact.model)
        load_s = time.perf_counter() - start
        # Artifacts are rebuilt on every export, so earlier predictions under the same name are stale.
        path = Path(out_dir) / "predictions" / f"{artifact.name}.jsonl"
        path.unlink(missing_ok=True)
        result = predict_rows(
            backend,
            [(ex.id, ex.text) for ex in split.test],
            path,
            task,
            batch_size=artifact.model.batch_size,
            desc=f"compare {artifact.name}",
            # The comparison is of labels, size and speed: scoring label probabilities would only slow it.
            confidence=Confidence(use_probabilities=False),
        )
        del backend
        gc.collect()
        run = Run(artifact.name, "model", artifact.model.backend, split, result.predictions)
        metrics = classification_metrics(gold, [p.label for p in result.predictions], task.labels)
        row = metrics_row(run, metrics, ev, _NO_CONTAMINATION)
        rows.append(
            {
                "artifact": artifact.name,
                "backend": artifact.model.backend,
                "path": artifact.model.path,
                "size_bytes": artifact.size_bytes,
                "load_s": round(load_s, 3),
                **{
                    key: row[key]
                    for key in (
                        "tokens_per_s",
                        "accuracy",
                        "macro_f1",
                        "macro_f1_ci",
                        "format_compliance",
                        "latency_ms_p50",
                        "n",
                        "test_set",
                    )
                },
            }
        )
        logger.info("%s: macro-F1 %.3f, format %.0f%%", artifact.name, row["macro_f1"], row["format_compliance"] * 100)
    return rows


def comparison_markdown(rows: list[dict[str, Any]]) -> str:
    """Return the comparison as a Markdown table, with the rows it was measured on."""
    lines = [
        "| " + " | ".join(title for _, title in COLUMNS) + " |",
        "|" + "|".join(":---" if key in ("artifact", "backend") else "---:" for key, _ in COLUMNS) + "|",
    ]
    for row in rows:
        cells = {
            "artifact": row["artifact"],
            "backend": row["backend"],
            "size": format_size(row["size_bytes"]),
            "load_s": f"{row['load_s']:.2f}",
            "tokens_per_s": "–" if row["tokens_per_s"] is None else f"{row['tokens_per_s']:.1f}",
            "accuracy": f"{row['accuracy']:.3f}",
            "macro_f1": f"{row['macro_f1']:.3f}",
            "format_compliance": f"{row['format_compliance']:.1%}",
        }
        lines.append("| " + " | ".join(cells[key] for key, _ in COLUMNS) + " |")
    if rows:
        lines.append("")
        lines.append(
            f"{rows[0]['n']} rows of {rows[0]['test_set']}, greedy. tokens/s: generated tokens over generation time, "
            "transformers in batches, llama.cpp one prompt at a time."
        )
    return "\n".join(lines) + "\n"


def write_comparison(rows: list[dict[str, Any]], out_dir: str | Path) -> dict[str, str]:
    """Write comparison.json, comparison.md and comparison.png (size against quality); return their paths."""
    out_dir = Path(out_dir)
    paths = {
        "comparison_json": str(atomic_write_json(out_dir / "comparison.json", rows)),
        "comparison_md": str(atomic_write_text(out_dir / "comparison.md", comparison_markdown(rows))),
    }
    paths["comparison_png"] = str(plot_size_quality(rows, out_dir / "comparison.png"))
    return paths


def plot_size_quality(rows: list[dict[str, Any]], path: str | Path) -> Path:
    """Save file size (log scale) against macro-F1 and format compliance as a PNG."""
    fig = new_figure(6.4, 4.2)
    ax = fig.add_subplot()
    sizes = [row["size_bytes"] / 2**20 for row in rows]
    for key, label, marker in (("macro_f1", "macro-F1", "o"), ("format_compliance", "format compliance", "s")):
        ax.plot(sizes, [row[key] for row in rows], marker, label=label, alpha=0.8)
    for size, row in zip(sizes, rows, strict=True):
        ax.annotate(row["artifact"], (size, row["macro_f1"]), textcoords="offset points", xytext=(4, 4), fontsize=8)
    ax.set_xscale("log")
    ax.set_ylim(-0.05, 1.05)
    ax.set_xlabel("file size (MiB, log scale)")
    ax.set_ylabel("score")
    ax.set_title(f"size against quality, {rows[0]['n'] if rows else 0} held-out rows", fontsize=10)
    ax.legend(loc="lower right", fontsize=8)
    ax.grid(alpha=0.3)
    return save_figure(fig, path)


def format_size(size_bytes: int) -> str:
    """Return a size such as ``4.9 MiB``."""
    power = min(int(math.log(max(size_bytes, 1), 1024)), 3)
    return f"{size_bytes / 1024**power:.1f} {('B', 'KiB', 'MiB', 'GiB')[power]}"
