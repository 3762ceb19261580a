"""Figures for reports and plots: matplotlib's object API on the Agg canvas, so no pyplot state and no global
backend switch in the caller's process (a notebook keeps its own), and PNGs written atomically."""

from __future__ import annotations

from pathlib import Path

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from finsent.io import atomic_write


def new_figure(width: float, height: float) -> Figure:
    """Return an empty figure of ``width`` x ``height`` inches drawn on the Agg canvas."""
    fig = Figure(figsize=(width, height), dpi=100)
    FigureCanvasAgg(fig)
    return fig


def save_figure(fig: Figure, path: str | Path) -> Path:
    """Lay ``fig`` out and write it to ``path`` as a PNG, atomically (a crash never leaves half a picture)."""
    fig.tight_layout()
    return atomic_write(path, lambda tmp: fig.savefig(tmp, format="png", dpi=100))
