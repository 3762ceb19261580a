"""Confusion matrices, reliability diagrams and coverage curves (PNG, matplotlib's Agg backend)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from finsent.eval.metrics import NO_ANSWER, Metrics
from finsent.figures import new_figure, save_figure


def plot_confusion(metrics: Metrics, path: str | Path, title: str) -> Path:
    """Save the confusion matrix as a PNG: counts in the cells, colour by share of the gold row."""
    counts = np.array(metrics.confusion)
    shares = counts / np.maximum(counts.sum(axis=1, keepdims=True), 1)
    columns = [*metrics.labels, NO_ANSWER.replace("_", " ")]
    # Three labels fit the original 5.2 x 4.2 inches; twelve transaction categories need room for their names.
    size = max(1.0, len(columns) / 4)
    fig = new_figure(5.2 * size, 4.2 * size)
    ax = fig.add_subplot()
    image = ax.imshow(shares, cmap="Blues", vmin=0, vmax=1)
    for (i, j), count in np.ndenumerate(counts):
        ax.text(j, i, f"{count}", ha="center", va="center", color="white" if shares[i, j] > 0.6 else "black")
    ax.set_xticks(
        range(len(columns)),
        columns,
        rotation=45 if len(columns) > 5 else 0,
        ha="right" if len(columns) > 5 else "center",
    )
    ax.set_yticks(range(len(metrics.labels)), metrics.labels)
    ax.set_xlabel("predicted")
    ax.set_ylabel("gold")
    ax.set_title(
        f"{title}\naccuracy {metrics.accuracy:.3f}, macro-F1 {metrics.macro_f1:.3f}, n={metrics.n}", fontsize=9
    )
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04, label="share of gold row")
    return save_figure(fig, path)


def plot_reliability(calibration: dict[str, Any], path: str | Path, title: str) -> Path:
    """Save the reliability diagram: accuracy against confidence per bin, as given and after temperature scaling,
    with the diagonal a calibrated model follows and the rows per bin below."""
    fig = new_figure(5.2, 5.6)
    top, bottom = fig.subplots(2, 1, sharex=True, gridspec_kw={"height_ratios": [3, 1]})
    top.plot([0, 1], [0, 1], color="#999", linestyle="--", linewidth=1, label="calibrated")
    curves = [("raw", "as given", "#b00020")]
    if calibration["scaled"]:
        curves.append(("scaled", f"temperature {calibration['temperature']:.2f}", "#177245"))
    width = 1 / calibration["bins"]
    for offset, (key, name, color) in enumerate(curves):
        bins = [b for b in calibration[key]["reliability"] if b["count"]]
        ece = calibration[key]["ece"]
        top.plot(
            [b["mean_confidence"] for b in bins],
            [b["accuracy"] for b in bins],
            marker="o",
            color=color,
            label=f"{name} (ECE {ece:.3f})",
            clip_on=False,  # a bin at confidence 1 stays visible on the frame
        )
        shift = (offset - (len(curves) - 1) / 2) * width / len(curves)
        bottom.bar(
            [(b["lower"] + b["upper"]) / 2 + shift for b in bins],
            [b["count"] for b in bins],
            width=width / len(curves),
            color=color,
            alpha=0.6,
        )
    top.set_xlim(0, 1.02)
    top.set_ylim(0, 1.02)
    top.set_ylabel("accuracy")
    top.set_title(f"{title}\nreliability", fontsize=9)
    top.legend(fontsize=8, loc="lower right")
    bottom.set_xlabel("confidence (probability of the answer given)")
    bottom.set_ylabel("rows")
    return save_figure(fig, path)


def plot_coverage(rows: list[dict[str, Any]], path: str | Path, test_set: str) -> Path:
    """Save accuracy against coverage for every model and baseline on one test set: answering only the surest
    share of rows (temperature-scaled probabilities where fitted), how often each is right."""
    fig = new_figure(6.0, 4.2)
    ax = fig.add_subplot()
    for row in rows:
        scores = row["calibration"]["scaled"] or row["calibration"]["raw"]
        shares, accuracy = zip(*scores["coverage"], strict=True)
        ax.plot(shares, accuracy, marker=".", label=f"{row['model']} ({scores['accuracy_at_90_coverage']:.3f} at 90%)")
    ax.axvline(0.9, color="#999", linestyle="--", linewidth=1)
    ax.set_xlim(0, 1.02)
    ax.set_xlabel("coverage (share of rows answered, surest first)")
    ax.set_ylabel("accuracy on the rows answered")
    ax.set_title(f"{test_set}: accuracy against coverage", fontsize=9)
    ax.legend(fontsize=8, loc="lower left")
    return save_figure(fig, path)
