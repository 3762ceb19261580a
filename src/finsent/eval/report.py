"""The evaluation report: ``report.md`` (pictures linked) and a self-contained ``report.html`` (pictures inlined).

Both are rendered from one list of blocks, so they always say the same thing.
"""

from __future__ import annotations

import base64
import html
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from finsent.eval.protocols import EvalSplit
from finsent.io import atomic_write_text


@dataclass(frozen=True)
class Heading:
    text: str


@dataclass(frozen=True)
class Paragraph:
    text: str


@dataclass(frozen=True)
class Table:
    headers: list[str]
    rows: list[list[str]]


@dataclass(frozen=True)
class Figures:
    """PNG files in the report dir, with captions."""

    items: list[tuple[str, str]]  # (caption, file name)


Block = Heading | Paragraph | Table | Figures

_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:2em auto;max-width:1150px;color:#222;
padding:0 1em}
h1{font-size:1.6em}h2{font-size:1.25em;margin-top:1.6em;border-bottom:1px solid #ddd;padding-bottom:.2em}
table{border-collapse:collapse;margin:.6em 0;font-size:.88em}
th,td{border:1px solid #ccc;padding:.3em .55em;text-align:left;vertical-align:top}
th{background:#f3f5f7}tr:nth-child(even) td{background:#fafbfc}
figure{display:inline-block;margin:.5em 1em .5em 0;text-align:center}
figure img{max-width:520px;border:1px solid #e3e3e3}figcaption{font-size:.85em;color:#555}
"""


def format_value(value: Any, digits: int = 3) -> str:
    """Return a table cell: floats rounded, ``None`` as a dash."""
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def format_interval(value: float, interval: Sequence[float] | None) -> str:
    """Return ``0.812 [0.790, 0.833]``."""
    if interval is None:
        return format_value(value)
    return f"{value:.3f} [{interval[0]:.3f}, {interval[1]:.3f}]"


def build_blocks(
    rows: list[dict[str, Any]],
    splits: list[EvalSplit],
    contamination: dict[str, dict[str, int]],
    samples: list[dict[str, Any]],
    intro: str,
    coverage_pngs: dict[str, str] | None = None,
) -> list[Block]:
    """Return the report's blocks: results, published numbers, per-label scores, calibration, test sets, figures,
    samples."""
    blocks: list[Block] = [Paragraph(intro), Heading("Results")]
    ci = f"{rows[0]['ci_level']:.0%} CI" if rows else "CI"
    blocks.append(
        Table(
            [
                "model",
                "test set",
                "n",
                f"accuracy [{ci}]",
                f"macro-F1 [{ci}]",
                "weighted-F1",
                "format compliance",
                "parse failures",
                "latency p50 / p95 ms",
                "tokens/s",
                "reasoning words",
            ],
            [
                [
                    row["model"],
                    row["test_set"],
                    str(row["n"]),
                    format_interval(row["accuracy"], row["accuracy_ci"]),
                    format_interval(row["macro_f1"], row["macro_f1_ci"]),
                    format_value(row["weighted_f1"]),
                    format_value(row["format_compliance"]),
                    format_value(row["parse_failures"]),
                    "–"
                    if row["latency_ms_p50"] is None
                    else f"{row['latency_ms_p50']:.0f} / {row['latency_ms_p95']:.0f}",
                    format_value(row["tokens_per_s"], 1),
                    format_value(row["mean_reasoning_words"], 1),
                ]
                for row in rows
            ],
        )
    )
    anchored = [split for split in splits if split.anchors]
    if anchored:
        blocks += [
            Heading("Published numbers"),
            Paragraph("Printed only where the test set follows the published protocol."),
        ]
        table = []
        for split in anchored:
            ours = sorted((row for row in rows if row["test_set"] == split.name), key=lambda r: -r["weighted_f1"])
            best = f"{ours[0]['model']}: {ours[0]['weighted_f1']:.3f}" if ours else "–"
            table += [[split.name, a.model, a.metric, f"{a.value:.3f}", best, a.source] for a in split.anchors]
        blocks.append(Table(["test set", "published model", "metric", "published", "our best", "source"], table))
    blocks += [
        Heading("Per-label scores"),
        Table(
            ["model", "test set", "label", "precision", "recall", "F1", "support"],
            [
                [
                    row["model"],
                    row["test_set"],
                    label,
                    format_value(s["precision"]),
                    format_value(s["recall"]),
                    format_value(s["f1"]),
                    str(s["support"]),
                ]
                for row in rows
                for label, s in row["per_label"].items()
            ],
        ),
    ]
    blocks += calibration_blocks(rows, coverage_pngs or {})
    blocks += [
        Heading("Test sets"),
        Paragraph(
            "Contamination: test texts that also occur in the training texts (the train source, or the rows the "
            "protocol left out, plus eval.reference), exactly after normalisation or as near duplicates."
        ),
        Table(
            ["test set", "protocol", "test rows", "in train: exact", "in train: near", "train texts", "note"],
            [
                [
                    split.name,
                    split.protocol,
                    str(len(split.test)),
                    str(contamination[split.name]["exact"]),
                    str(contamination[split.name]["near"]),
                    str(contamination[split.name]["reference_texts"]),
                    split.note or "–",
                ]
                for split in splits
            ],
        ),
    ]
    blocks += [
        Heading("Confusion matrices"),
        Figures([(f"{row['model']} on {row['test_set']}", row["confusion_png"]) for row in rows]),
    ]
    wrong = [s for s in samples if not s["is_correct"]]
    blocks += [
        Heading("Wrong answers (samples)"),
        Paragraph("More, right and wrong, in samples.jsonl."),
        Table(
            ["model", "test set", "gold", "predicted", "text", "reasoning"],
            [
                [
                    s["model"],
                    s["test_set"],
                    s["gold"],
                    s["predicted"] or "no answer",
                    _clip(s["text"]),
                    _clip(s["reasoning"]),
                ]
                for s in wrong
            ],
        ),
    ]
    return blocks


def calibration_blocks(rows: list[dict[str, Any]], coverage_pngs: dict[str, str]) -> list[Block]:
    """Return the calibration section: ECE, Brier and accuracy at 90% coverage, as given and after temperature
    scaling, then the coverage curves and reliability diagrams (nothing when no run has probabilities)."""
    scored = [row for row in rows if row.get("calibration")]
    if not scored:
        return []
    ci = f"{scored[0]['ci_level']:.0%} CI"

    def cells(scores: dict[str, Any] | None) -> list[str]:
        if scores is None:
            return ["–", "–", "–"]
        return [
            format_interval(scores["ece"], scores["ece_ci"]),
            format_interval(scores["brier"], scores["brier_ci"]),
            format_value(scores["accuracy_at_90_coverage"]),
        ]

    unscored = [f"{row['model']} on {row['test_set']}" for row in rows if not row.get("calibration")]
    return [
        Heading("Calibration"),
        Paragraph(
            "How far the probability of each answer is from how often such answers are right. ECE: expected "
            "calibration error over equal-width confidence bins; Brier: squared error of the label probabilities "
            "(lower is better for both); accuracy at 90% coverage: answering only the surest 90% of rows. "
            "Scaled: after the temperature fitted on the calibration split (what predict and serve apply). "
            "On few rows ECE is biased upward, and its bootstrap interval with it: compare models on one test set."
            + (f" No label probabilities: {', '.join(unscored)}." if unscored else "")
        ),
        Table(
            [
                "model",
                "test set",
                f"ECE [{ci}]",
                f"Brier [{ci}]",
                "accuracy at 90%",
                "temperature",
                f"scaled ECE [{ci}]",
                f"scaled Brier [{ci}]",
                "scaled accuracy at 90%",
            ],
            [
                [
                    row["model"],
                    row["test_set"],
                    *cells(row["calibration"]["raw"]),
                    format_value(row["calibration"]["temperature"]),
                    *cells(row["calibration"]["scaled"]),
                ]
                for row in scored
            ],
        ),
        Figures([(f"accuracy against coverage on {name}", png) for name, png in coverage_pngs.items()]),
        Figures([(f"{row['model']} on {row['test_set']}", row["reliability_png"]) for row in scored]),
    ]


def render_markdown(title: str, blocks: list[Block]) -> str:
    """Return the report as Markdown; figures are linked by file name."""
    lines = [f"# {title}", ""]
    for block in blocks:
        if isinstance(block, Heading):
            lines += [f"## {block.text}", ""]
        elif isinstance(block, Paragraph):
            lines += [block.text, ""]
        elif isinstance(block, Table):
            lines.append("| " + " | ".join(_md_cell(h) for h in block.headers) + " |")
            lines.append("|" + "|".join("---" for _ in block.headers) + "|")
            lines += ["| " + " | ".join(_md_cell(c) for c in row) + " |" for row in block.rows]
            lines.append("")
        else:
            lines += [f"![{caption}]({name})" for caption, name in block.items]
            lines.append("")
    return "\n".join(lines)


def render_html(title: str, blocks: list[Block], image_dir: Path) -> str:
    """Return the report as one HTML file with its PNG figures base64-inlined (no other file needed)."""
    parts = [
        f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>',
        f"<style>{_CSS}</style></head><body>",
        f"<h1>{html.escape(title)}</h1>",
    ]
    for block in blocks:
        if isinstance(block, Heading):
            parts.append(f"<h2>{html.escape(block.text)}</h2>")
        elif isinstance(block, Paragraph):
            parts.append(f"<p>{html.escape(block.text)}</p>")
        elif isinstance(block, Table):
            head = "".join(f"<th>{html.escape(h)}</th>" for h in block.headers)
            body = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>" for row in block.rows)
            parts.append(f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>")
        else:
            for caption, name in block.items:
                data = base64.b64encode((image_dir / name).read_bytes()).decode("ascii")
                parts.append(
                    f'<figure><img alt="{html.escape(caption)}" src="data:image/png;base64,{data}">'
                    f"<figcaption>{html.escape(caption)}</figcaption></figure>"
                )
    parts.append("</body></html>\n")
    return "\n".join(parts)


def write_reports(output_dir: Path, title: str, blocks: list[Block]) -> dict[str, str]:
    """Write ``report.md`` and ``report.html`` into ``output_dir``; return their paths."""
    return {
        "report_md": str(atomic_write_text(output_dir / "report.md", render_markdown(title, blocks))),
        "report_html": str(atomic_write_text(output_dir / "report.html", render_html(title, blocks, output_dir))),
    }


def _clip(text: str, limit: int = 220) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _md_cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")
