"""Confusion-matrix pictures (PNG, matplotlib's Agg backend)."""

from __future__ import annotations

from pathlib import Path

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
