"""Experiment tracking: one ``TRACKERS`` registry, ``local`` files by default, cloud trackers by name.

``local`` needs no account: it appends ``metrics.jsonl`` and draws one PNG per metric under ``plots/`` in the run
directory. ``wandb``, ``mlflow``, ``trackio`` and ``tensorboard`` import their package when chosen; a missing one is
a ``ConfigError`` naming the extra to install. Training stages hand the cloud trackers to the Trainer through
``report_to`` (see ``trainer_report_to``) and forward the Trainer's logs to ``local`` themselves.

>>> import tempfile
>>> from finsent.config import TrackingConfig
>>> tracker = start_tracking(TrackingConfig(), tempfile.mkdtemp())
>>> tracker.log({"data/valid_rate": 0.97}, step=0)
>>> tracker.finish()
"""

from __future__ import annotations

import importlib
import json
import logging
import math
import re
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol

from finsent.config import TrackingConfig
from finsent.errors import ConfigError
from finsent.figures import new_figure, save_figure
from finsent.io import writing
from finsent.registry import Registry

logger = logging.getLogger(__name__)


class Tracker(Protocol):
    """Receives scalar metrics by step; ``finish`` flushes and closes (and draws plots, for ``local``)."""

    def log(self, metrics: Mapping[str, float], step: int) -> None: ...

    def finish(self) -> None: ...


TrackerFactory = Callable[["TrackingConfig", Path], Tracker]
TRACKERS: Registry[TrackerFactory] = Registry("tracker")


def start_tracking(cfg: TrackingConfig, output_dir: str | Path, backends: Sequence[str] | None = None) -> Tracker:
    """Return one tracker that fans out to ``backends`` (default: all of ``cfg.backends``), writing under
    ``output_dir``."""
    names = list(cfg.backends if backends is None else backends)
    return MultiTracker([TRACKERS.get(name)(cfg, Path(output_dir)) for name in names])


def start_trainer_tracking(
    cfg: TrackingConfig, output_dir: str | Path, is_main_process: bool = True
) -> tuple[Tracker, Tracker]:
    """Return ``(local, opened)`` for a training stage: ``local`` receives the Trainer's logs (through a callback);
    ``opened`` holds the wandb and mlflow runs, opened first (on the main process) so that the Trainer's
    ``report_to`` integrations log into them under the recipe's project and run name. trackio and tensorboard take
    theirs from TrainingArguments."""
    local = start_tracking(cfg, output_dir, [name for name in cfg.backends if name == "local"])
    cloud = [name for name in cfg.backends if name in ("wandb", "mlflow") and is_main_process]
    return local, start_tracking(cfg, output_dir, cloud)


def trainer_report_to(cfg: TrackingConfig) -> list[str]:
    """Return the transformers ``report_to`` integrations for ``cfg``: its cloud trackers (``local`` is ours)."""
    # Each cloud tracker's registry name is also its transformers integration name.
    names = [name for name in cfg.backends if name != "local"]
    return names or ["none"]


def numeric_metrics(logs: Mapping[str, Any]) -> dict[str, float]:
    """Return the finite numbers of ``logs`` (Trainer logs also hold strings and lists), as floats."""
    out = {}
    for key, value in logs.items():
        if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value):
            out[key] = float(value)
    return out


class MultiTracker:
    """Sends every call to each of ``trackers``."""

    def __init__(self, trackers: Sequence[Tracker]) -> None:
        self.trackers = list(trackers)

    def log(self, metrics: Mapping[str, float], step: int) -> None:
        for tracker in self.trackers:
            tracker.log(metrics, step)

    def finish(self) -> None:
        for tracker in self.trackers:
            tracker.finish()


@TRACKERS.register("local")
class LocalTracker:
    """Metrics JSONL and one PNG per metric in the run directory; no account, no server."""

    def __init__(self, cfg: TrackingConfig, output_dir: Path) -> None:
        self.path = output_dir / "metrics.jsonl"
        self.plots_dir = output_dir / "plots"

    def log(self, metrics: Mapping[str, float], step: int) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # Appended and flushed line by line, so a killed run keeps what it logged; a resumed one appends.
        with writing(self.path), open(self.path, "a", encoding="utf-8") as handle:
            handle.write(json.dumps({"step": step, **numeric_metrics(metrics)}) + "\n")

    def finish(self) -> None:
        if self.path.exists():
            plot_metrics(read_metrics(self.path), self.plots_dir)


def read_metrics(path: str | Path) -> dict[str, list[tuple[int, float]]]:
    """Return each metric's ``(step, value)`` series from a ``metrics.jsonl``; a step logged again (after a
    resume) keeps its last value."""
    series: dict[str, dict[int, float]] = {}
    with open(path, encoding="utf-8") as handle:
        for line in handle:
            if not line.strip():
                continue
            row = json.loads(line)
            step = int(row.pop("step"))
            for key, value in row.items():
                series.setdefault(key, {})[step] = value
    return {key: sorted(points.items()) for key, points in series.items()}


def plot_metrics(series: Mapping[str, Sequence[tuple[int, float]]], plots_dir: str | Path) -> list[Path]:
    """Draw one PNG per metric logged at two steps or more (x: step) into ``plots_dir``; return the paths."""
    plots_dir = Path(plots_dir)
    written = []
    for key, points in series.items():
        if len(points) < 2:  # a one-off summary value (runtime, final loss) is no curve
            continue
        fig = new_figure(6, 3.5)
        ax = fig.add_subplot()
        steps, values = zip(*points, strict=True)
        ax.plot(steps, values, marker="." if len(points) < 50 else None)
        ax.set(xlabel="step", ylabel=key, title=key)
        ax.grid(alpha=0.3)
        written.append(save_figure(fig, plots_dir / f"{plot_name(key)}.png"))
    return written


def plot_name(key: str) -> str:
    """Return a file name for metric ``key``: ``rewards/format_reward/mean`` -> ``rewards-format_reward-mean``."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", key).strip("-") or "metric"


def _import(module: str, tracker: str, extra: str) -> Any:
    try:
        return importlib.import_module(module)
    except ImportError as err:
        raise ConfigError(
            f"tracker {tracker!r} needs the {extra} package: pip install 'finsent[{extra}]'", field="tracking.backends"
        ) from err


@TRACKERS.register("wandb")
class WandbTracker:
    """Weights & Biases (extra: wandb); the run is the one the Trainer's wandb integration then reuses."""

    def __init__(self, cfg: TrackingConfig, output_dir: Path) -> None:
        self.wandb = _import("wandb", "wandb", "wandb")
        output_dir.mkdir(parents=True, exist_ok=True)
        self.run = self.wandb.run or self.wandb.init(project=cfg.project, name=cfg.run_name, dir=str(output_dir))

    def log(self, metrics: Mapping[str, float], step: int) -> None:
        self.run.log(dict(metrics), step=step)

    def finish(self) -> None:
        self.run.finish()


@TRACKERS.register("mlflow")
class MlflowTracker:
    """MLflow (extra: mlflow): ``project`` is the experiment; set MLFLOW_TRACKING_URI for a server."""

    def __init__(self, cfg: TrackingConfig, output_dir: Path) -> None:
        self.mlflow = _import("mlflow", "mlflow", "mlflow")
        self.mlflow.set_experiment(cfg.project)
        self.run = self.mlflow.active_run() or self.mlflow.start_run(run_name=cfg.run_name)

    def log(self, metrics: Mapping[str, float], step: int) -> None:
        self.mlflow.log_metrics(dict(metrics), step=step)

    def finish(self) -> None:
        self.mlflow.end_run()


@TRACKERS.register("trackio")
class TrackioTracker:
    """Trackio (extra: trackio): a local-first dashboard with a wandb-like API."""

    def __init__(self, cfg: TrackingConfig, output_dir: Path) -> None:
        self.trackio = _import("trackio", "trackio", "trackio")
        self.trackio.init(project=cfg.project, name=cfg.run_name)

    def log(self, metrics: Mapping[str, float], step: int) -> None:
        self.trackio.log(dict(metrics), step=step)

    def finish(self) -> None:
        self.trackio.finish()


@TRACKERS.register("tensorboard")
class TensorboardTracker:
    """TensorBoard event files under ``<output_dir>/tensorboard`` (extra: tensorboard)."""

    def __init__(self, cfg: TrackingConfig, output_dir: Path) -> None:
        _import("tensorboard", "tensorboard", "tensorboard")
        writer_module = _import("torch.utils.tensorboard", "tensorboard", "tensorboard")
        self.writer = writer_module.SummaryWriter(log_dir=str(output_dir / "tensorboard"))

    def log(self, metrics: Mapping[str, float], step: int) -> None:
        for key, value in metrics.items():
            self.writer.add_scalar(key, value, step)

    def finish(self) -> None:
        self.writer.close()
