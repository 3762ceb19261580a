"""Early stopping for GRPO on a reward plateau, and the evidence it leaves.

``RewardPlateauCallback`` stops when the smoothed total reward stops rising (and, optionally, when validation
accuracy does), reading only reward means from ``TrainerState.log_history``: never ``*_std`` keys or
``frac_reward_zero_std``. Its decision is a pure function of the log history, so a resumed run decides as one
left alone. On the way out it writes its evidence: ``plateau.json``, ``plateau.png`` and ``zero_std_share.png``.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from transformers import TrainerCallback, TrainerControl, TrainerState, TrainingArguments

from finsent.config import PlateauConfig
from finsent.figures import new_figure, save_figure
from finsent.io import atomic_write_json

logger = logging.getLogger(__name__)

TOTAL_KEY = "reward"  # GRPOTrainer's weighted sum of the rewards, averaged over the logged step's completions
ZERO_STD_KEY = "frac_reward_zero_std"  # share of groups whose completions all scored the same: no signal
ACCURACY_KEY = "validation_accuracy"  # written into the log history by the callback
_REWARD_MEAN = re.compile(r"^rewards/(?P<name>.+)/mean$")

AccuracyFn = Callable[[Any, Any], float]


@dataclass(frozen=True)
class Window:
    """One evaluation window: the mean of the total reward logged at steps ``start < step <= end``."""

    start: int
    end: int
    value: float
    num_logs: int


@dataclass(frozen=True)
class PlateauDecision:
    """What the log history says: the windows, the best one, and whether and why to stop."""

    windows: list[Window]
    accuracy: list[tuple[int, float]]
    should_stop: bool
    reason: str
    stop_step: int | None = None
    best_step: int | None = None
    best_value: float | None = None
    compared: dict[str, Any] = field(default_factory=dict)


def reward_series(history: Sequence[dict[str, Any]]) -> dict[str, list[tuple[int, float]]]:
    """Return the reward means by step: the total (``reward``) and each ``rewards/<name>/mean``; std keys ignored."""
    series: dict[str, list[tuple[int, float]]] = {}
    for entry in history:
        if "step" not in entry:
            continue
        for key, value in entry.items():
            if key == TOTAL_KEY or _REWARD_MEAN.match(key):
                series.setdefault(key, []).append((int(entry["step"]), float(value)))
    return series


def metric_series(history: Sequence[dict[str, Any]], key: str) -> list[tuple[int, float]]:
    """Return ``(step, value)`` for each log history entry holding ``key``."""
    return [(int(e["step"]), float(e[key])) for e in history if key in e and "step" in e]


def reward_windows(points: Sequence[tuple[int, float]], window_steps: int) -> list[Window]:
    """Group ``(step, total reward)`` points into closed windows of ``window_steps`` steps and average each."""
    if not points:
        return []
    last_step = max(step for step, _ in points)
    grouped: dict[int, list[float]] = {}
    for step, value in points:
        grouped.setdefault((step - 1) // window_steps, []).append(value)
    windows = []
    for index in sorted(grouped):
        start, end = index * window_steps, (index + 1) * window_steps
        if end <= last_step:  # a window still filling would compare a partial mean
            values = grouped[index]
            windows.append(Window(start, end, sum(values) / len(values), len(values)))
    return windows


def decide_plateau(history: Sequence[dict[str, Any]], cfg: PlateauConfig) -> PlateauDecision:
    """Return the plateau decision for a ``TrainerState.log_history``.

    Windows ending after ``warmup_steps`` count. The first sets the reference; a later window resets it when its
    mean exceeds the reference by more than ``min_delta``, else it is stale. ``patience`` stale windows in a row
    stop training. Validation accuracy checks (when logged) follow the same rule with ``accuracy_patience``.
    """
    windows = reward_windows(reward_series(history).get(TOTAL_KEY, []), cfg.window_steps)
    accuracy = metric_series(history, ACCURACY_KEY)
    reward_stop = _first_plateau([(w.end, w.value) for w in windows], cfg.warmup_steps, cfg.min_delta, cfg.patience)
    accuracy_stop = _first_plateau(accuracy, cfg.warmup_steps, cfg.min_delta, cfg.accuracy_patience)
    chosen = [(w.end, w.value) for w in windows] if cfg.metric == "reward" else accuracy
    counted = [(step, value) for step, value in chosen if step > cfg.warmup_steps]
    best_step, best_value = max(counted, key=lambda p: (p[1], -p[0])) if counted else (None, None)

    stops = [s for s in (("reward", reward_stop), ("accuracy", accuracy_stop)) if s[1] is not None]
    if not stops:
        return PlateauDecision(windows, accuracy, False, "no plateau: ran to the end", None, best_step, best_value)
    kind, compared = min(stops, key=lambda s: s[1]["step"])
    if kind == "reward":
        reason = (
            f"reward plateau: the smoothed total reward stayed within {cfg.min_delta} of "
            f"{compared['reference_value']:.4f} (set at step {compared['reference_step']}) for {cfg.patience} "
            f"windows of {cfg.window_steps} steps"
        )
    else:
        reason = (
            f"validation accuracy stopped improving: not above {compared['reference_value']:.4f} + {cfg.min_delta} "
            f"(step {compared['reference_step']}) for {cfg.accuracy_patience} checks"
        )
    compared = {"metric": kind, **compared}
    return PlateauDecision(windows, accuracy, True, reason, compared["step"], best_step, best_value, compared)


def _first_plateau(
    points: Sequence[tuple[int, float]], warmup_steps: int, min_delta: float, patience: int
) -> dict[str, Any] | None:
    reference: tuple[int, float] | None = None
    stale = 0
    for step, value in points:
        if step <= warmup_steps:
            continue
        if reference is None or value > reference[1] + min_delta:
            reference, stale = (step, value), 0
            continue
        stale += 1
        if stale >= patience:
            return {
                "step": step,
                "value": value,
                "reference_step": reference[0],
                "reference_value": reference[1],
                "stale": stale,
                "min_delta": min_delta,
            }
    return None


class RewardPlateauCallback(TrainerCallback):
    """Stops GRPO on a reward (or validation accuracy) plateau, keeps the best checkpoint, writes the evidence.

    Args:
        accuracy_fn: ``(model, tokenizer) -> accuracy`` on a small held-out set, run every
            ``cfg.accuracy_every_steps`` steps on every process (generation may need all of them).
        tracker: receives ``validation_accuracy`` (the Trainer does not see it).
    """

    def __init__(
        self,
        cfg: PlateauConfig,
        output_dir: str | Path,
        accuracy_fn: AccuracyFn | None = None,
        tracker: Any | None = None,
    ) -> None:
        self.cfg = cfg
        self.output_dir = Path(output_dir)
        self.accuracy_fn = accuracy_fn
        self.tracker = tracker
        self.decision: PlateauDecision | None = None

    def on_step_end(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any
    ) -> TrainerControl:
        every = self.cfg.accuracy_every_steps
        if self.accuracy_fn is None or not every or state.global_step % every:
            return control
        model = kwargs["model"]
        was_training = model.training
        model.eval()
        try:
            accuracy = float(self.accuracy_fn(model, kwargs.get("processing_class")))
        finally:
            model.train(was_training)
        # In the log history, so checkpoints carry it and a resumed run decides on the same numbers.
        state.log_history.append({ACCURACY_KEY: accuracy, "step": state.global_step})
        if self.tracker is not None and state.is_world_process_zero:
            self.tracker.log({ACCURACY_KEY: accuracy}, state.global_step)
        return self._decide(state, control)

    def on_log(
        self,
        args: TrainingArguments,
        state: TrainerState,
        control: TrainerControl,
        logs: dict[str, float] | None = None,
        **kwargs: Any,
    ) -> TrainerControl:
        if logs and TOTAL_KEY in logs:
            return self._decide(state, control)
        return control

    def on_save(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any
    ) -> TrainerControl:
        # The Trainer's checkpoint rotation spares state.best_model_checkpoint, so the best one is kept.
        decision = decide_plateau(state.log_history, self.cfg)
        latest = _latest(decision, self.cfg)
        if latest is not None and latest[0] > self.cfg.warmup_steps:
            if state.best_metric is None or latest[1] > state.best_metric:
                state.best_metric = latest[1]
                state.best_global_step = state.global_step
                state.best_model_checkpoint = str(Path(args.output_dir) / f"checkpoint-{state.global_step}")
        return control

    def on_train_end(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any
    ) -> TrainerControl:
        if state.is_world_process_zero:
            self.decision = decide_plateau(state.log_history, self.cfg)
            write_plateau_evidence(self.decision, state, self.cfg, self.output_dir)
        return control

    def _decide(self, state: TrainerState, control: TrainerControl) -> TrainerControl:
        self.decision = decide_plateau(state.log_history, self.cfg)
        if self.decision.should_stop and self.cfg.use_early_stopping and not control.should_training_stop:
            logger.info("early stopping at step %d: %s", state.global_step, self.decision.reason)
            control.should_training_stop = True
        return control


def _latest(decision: PlateauDecision, cfg: PlateauConfig) -> tuple[int, float] | None:
    if cfg.metric == "reward":
        return (decision.windows[-1].end, decision.windows[-1].value) if decision.windows else None
    return decision.accuracy[-1] if decision.accuracy else None


def write_plateau_evidence(
    decision: PlateauDecision, state: TrainerState, cfg: PlateauConfig, output_dir: str | Path
) -> dict[str, Any]:
    """Write ``plateau.json`` (trajectories, windows, the window compared, the best step, the reason) and plots."""
    output_dir = Path(output_dir)
    series = reward_series(state.log_history)
    zero_std = metric_series(state.log_history, ZERO_STD_KEY)
    stopped_early = decision.should_stop and cfg.use_early_stopping
    evidence = {
        "stopped_early": stopped_early,
        "reason": decision.reason if decision.should_stop else "no plateau: ran to the end",
        "stop_step": decision.stop_step if stopped_early else None,
        "last_step": state.global_step,
        "metric": cfg.metric,
        "best_step": decision.best_step,
        "best_value": decision.best_value,
        "best_checkpoint": state.best_model_checkpoint,
        "window_compared": decision.compared or None,
        "windows": [asdict(w) for w in decision.windows],
        "trajectories": {key: [list(p) for p in points] for key, points in series.items()},
        "validation_accuracy": [list(p) for p in decision.accuracy],
        ZERO_STD_KEY: [list(p) for p in zero_std],
        "config": asdict(cfg),
    }
    atomic_write_json(output_dir / "plateau.json", evidence)
    plot_plateau(evidence, output_dir / "plateau.png", cfg)
    plot_zero_std_share(zero_std, output_dir / "zero_std_share.png")
    return evidence


def plot_plateau(evidence: dict[str, Any], path: Path, cfg: PlateauConfig) -> Path:
    """Plot each reward's trajectory, the window means, the warmup, the best step and the stop."""
    fig = new_figure(9, 5)
    ax = fig.add_subplot()
    for key, points in evidence["trajectories"].items():
        if points:
            steps, values = zip(*points, strict=True)
            is_total = key == TOTAL_KEY
            ax.plot(
                steps,
                values,
                lw=1.2 if is_total else 0.9,
                alpha=0.5 if is_total else 0.8,
                label="total reward" if is_total else key.removeprefix("rewards/").removesuffix("/mean"),
            )
    windows = evidence["windows"]
    if windows:
        ax.hlines(
            [w["value"] for w in windows],
            [w["start"] for w in windows],
            [w["end"] for w in windows],
            color="black",
            lw=2,
            label=f"window mean ({cfg.window_steps} steps)",
        )
    if cfg.warmup_steps:
        ax.axvspan(0, cfg.warmup_steps, color="grey", alpha=0.12, label="warmup")
    if evidence["best_step"] is not None and evidence["metric"] == "reward":
        ax.plot(
            [evidence["best_step"]],
            [evidence["best_value"]],
            "*",
            ms=14,
            color="gold",
            mec="black",
            label=f"best (step {evidence['best_step']})",
        )
    compared = evidence["window_compared"]
    if compared and compared["metric"] == "reward":
        level = compared["reference_value"] + compared["min_delta"]
        ax.hlines(level, compared["reference_step"], compared["step"], color="red", ls=":", label="to beat")
    if evidence["stop_step"] is not None:
        ax.axvline(evidence["stop_step"], color="red", ls="--", label=f"stop (step {evidence['stop_step']})")
    if evidence["validation_accuracy"]:
        twin = ax.twinx()
        steps, values = zip(*evidence["validation_accuracy"], strict=True)
        twin.plot(steps, values, "o-", color="purple", label="validation accuracy")
        twin.set_ylabel("validation accuracy")
        twin.legend(loc="lower right", fontsize=8)
    ax.set(xlabel="step", ylabel="reward", title="GRPO rewards and early stopping")
    ax.grid(alpha=0.3)
    ax.legend(loc="upper left", fontsize=8)
    return save_figure(fig, path)


def plot_zero_std_share(points: Sequence[tuple[int, float]], path: Path) -> Path:
    """Plot the share of groups whose completions all got the same reward (they carry no gradient)."""
    fig = new_figure(7, 3.5)
    ax = fig.add_subplot()
    if points:
        steps, values = zip(*points, strict=True)
        ax.plot(steps, values, color="tab:orange")
    ax.set(xlabel="step", ylabel="share of groups", title="Zero-variance groups (no learning signal)", ylim=(0, 1.05))
    ax.grid(alpha=0.3)
    return save_figure(fig, path)
