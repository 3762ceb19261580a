"""The GRPO stage: TRL's ``GRPOTrainer`` with the ``REWARDS`` registry and honest early stopping.

Usage: ``finsent grpo --config recipes/tiny-cpu.yaml [--resume]`` or ``train_grpo(load_config("tiny-cpu"))``.
It trains on from the SFT adapter (or puts a new LoRA on a model; ``lora: null`` trains every weight), prompting
with the same system prompt and user template as data, eval and serve; generation runs in transformers or, with
``trainer.use_vllm``, in vLLM (``vllm_mode: colocate`` or ``server``).

``RewardPlateauCallback`` stops when the smoothed total reward stops rising (and, optionally, when validation
accuracy does), reading only reward means from ``TrainerState.log_history``: never ``*_std`` keys or
``frac_reward_zero_std``. Its decision is a pure function of the log history, so a resumed run decides as one
left alone. On the way out it writes its evidence: ``plateau.json``, ``plateau.png`` and ``zero_std_share.png``.
"""

from __future__ import annotations

import logging
import random
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from transformers import TrainerCallback, TrainerControl, TrainerState, TrainingArguments

from finsent.completion import LABELS, PromptConfig, build_messages
from finsent.config import PlateauConfig, RecipeConfig, locate_key
from finsent.errors import ConfigError
from finsent.figures import new_figure, save_figure
from finsent.io import atomic_write_json
from finsent.rewards import REWARDS
from finsent.serve.backends import Completion
from finsent.tasks import TASKS
from finsent.tracking import start_trainer_tracking
from finsent.training import (
    TrackerCallback,
    TrainResult,
    check_model_source,
    check_quantization,
    last_checkpoint,
    load_stage_model,
    new_lora_config,
    read_jsonl,
    tiny_shape,
    tracking_defaults,
    train_and_save,
    trainer_config,
)

logger = logging.getLogger(__name__)

TOTAL_KEY = "reward"  # GRPOTrainer's weighted sum of the rewards, averaged over the logged step's completions
ZERO_STD_KEY = "frac_reward_zero_std"  # share of groups whose completions all scored the same: no signal
ACCURACY_KEY = "validation_accuracy"  # written into the log history by this callback
_REWARD_MEAN = re.compile(r"^rewards/(?P<name>.+)/mean$")

AccuracyFn = Callable[[Any, Any], float]
# Qwen3's thinking stays off, as in SFT, eval and serve.
CHAT_TEMPLATE_KWARGS = {"enable_thinking": False}


def train_grpo(cfg: RecipeConfig) -> TrainResult:
    """Run the GRPO stage of ``cfg`` and return where the adapter and the best checkpoint went."""
    from datasets import Dataset
    from trl import GRPOConfig, GRPOTrainer

    started = time.perf_counter()
    stage = cfg.grpo
    out = Path(stage.output_dir)
    # First: QLoRA without CUDA must fail here, not deep inside bitsandbytes or on the bf16 check.
    check_quantization(stage.quantization, "grpo", cfg)
    defaults = {"logging_steps": 1, "chat_template_kwargs": CHAT_TEMPLATE_KWARGS, **tracking_defaults(cfg.tracking)}
    args = trainer_config(GRPOConfig, stage.trainer, defaults, cfg, "grpo.trainer")
    args.output_dir = str(out)
    sft_outputs = ("adapter_config.json", "config.json")  # a LoRA adapter, or a model with sft.lora: null
    if stage.model == cfg.sft.output_dir and not any((Path(stage.model) / name).is_file() for name in sft_outputs):
        raise ConfigError(
            f"no SFT output in {stage.model}: run `finsent sft` first, or set grpo.model to a model or adapter",
            field="grpo.model",
        )
    check_model_source(stage.model, "grpo", cfg)
    labels = TASKS.get(cfg.task).labels
    if labels is None:
        path, line = locate_key(cfg, "task")
        raise ConfigError("GRPO rewards check labels; task instruct has free-form answers", path=path, line=line)
    if cfg.task != "sentiment" and "consistency" in stage.rewards:
        path, line = locate_key(cfg, "grpo.rewards")
        raise ConfigError(
            "reward consistency compares sentiment polarities",
            path=path,
            line=line,
            field="grpo.rewards",
            expected=f"rewards without consistency for task {cfg.task}",
            got=stage.rewards,
        )
    peft_config = new_lora_config(stage.model, stage.lora, cfg, "grpo.lora")
    shape = tiny_shape(stage.tiny, cfg, "grpo.tiny")
    reward_funcs = [REWARDS.get(name) for name in stage.rewards]
    train_rows = read_jsonl(stage.train_file)
    needs_eval = args.eval_strategy != "no" or stage.plateau.accuracy_every_steps > 0
    eval_rows = read_jsonl(stage.eval_file) if needs_eval else []
    resume_from = last_checkpoint(out, stage.resume)

    state, tokenizer, model = load_stage_model(cfg, stage, args.seed, shape, padding_side="left")

    local, opened = start_trainer_tracking(cfg.tracking, out, state.is_main_process)
    accuracy_fn = None
    if stage.plateau.accuracy_every_steps:
        held_out = random.Random(args.seed).sample(eval_rows, min(stage.plateau.accuracy_examples, len(eval_rows)))
        accuracy_fn = validation_accuracy(held_out, cfg.prompt, args.max_completion_length or 256, labels)
    plateau = RewardPlateauCallback(stage.plateau, out, accuracy_fn, local)
    trainer = GRPOTrainer(
        model=model,
        reward_funcs=reward_funcs,
        args=args,
        train_dataset=Dataset.from_list(grpo_rows(train_rows, cfg.prompt, cfg.task)),
        eval_dataset=(
            Dataset.from_list(grpo_rows(eval_rows, cfg.prompt, cfg.task)) if args.eval_strategy != "no" else None
        ),
        processing_class=tokenizer,
        peft_config=peft_config,
        callbacks=[TrackerCallback(local), plateau],
    )
    return train_and_save(trainer, resume_from, (local, opened), started)


def grpo_rows(rows: Sequence[dict[str, Any]], prompt: PromptConfig, task: str = "sentiment") -> list[dict[str, Any]]:
    """Return GRPO rows: the student prompt as chat messages, and the columns the rewards read (label, text, task)."""
    return [
        {
            "prompt": build_messages(row["text"], prompt),
            "label": row["label"],
            "text": row["text"],
            "id": row.get("id", str(i)),
            "task": task,
        }
        for i, row in enumerate(rows)
    ]


def validation_accuracy(
    rows: Sequence[dict[str, Any]], prompt: PromptConfig, max_new_tokens: int, labels: tuple[str, ...] = LABELS
) -> AccuracyFn:
    """Return ``(model, tokenizer) -> accuracy`` on ``rows``: greedy replies parsed and scored as the eval stage
    does (``serve.predict.predict_texts`` and ``eval.metrics.classification_metrics``)."""
    from finsent.eval.metrics import classification_metrics
    from finsent.serve.predict import predict_texts

    texts, gold = [row["text"] for row in rows], [row["label"] for row in rows]

    def accuracy(model: Any, tokenizer: Any) -> float:
        predictions = predict_texts(_LiveBackend(model, tokenizer, max_new_tokens), texts, prompt, labels)
        return classification_metrics(gold, [p.label for p in predictions], labels).accuracy

    return accuracy


class _LiveBackend:
    """The model being trained as an eval backend: batched greedy generation, Qwen3 thinking off."""

    def __init__(self, model: Any, tokenizer: Any, max_new_tokens: int, batch_size: int = 16) -> None:
        self.model, self.tokenizer = model, tokenizer
        self.max_new_tokens, self.batch_size = max_new_tokens, batch_size

    def complete(self, prompts: Sequence[list[dict[str, str]]]) -> list[Completion]:
        import torch

        completions = []
        side, self.tokenizer.padding_side = self.tokenizer.padding_side, "left"
        try:
            for i in range(0, len(prompts), self.batch_size):
                texts = [
                    self.tokenizer.apply_chat_template(
                        p, tokenize=False, add_generation_prompt=True, **CHAT_TEMPLATE_KWARGS
                    )
                    for p in prompts[i : i + self.batch_size]
                ]
                batch = self.tokenizer(texts, return_tensors="pt", padding=True, add_special_tokens=False)
                batch = batch.to(self.model.device)
                start = time.perf_counter()
                with torch.inference_mode():
                    output = self.model.generate(
                        **batch,
                        max_new_tokens=self.max_new_tokens,
                        do_sample=False,
                        temperature=None,
                        top_p=None,
                        top_k=None,
                        pad_token_id=self.tokenizer.pad_token_id,
                    )
                latency_ms = (time.perf_counter() - start) * 1000
                for row in output[:, batch["input_ids"].shape[1] :]:
                    text = self.tokenizer.decode(row, skip_special_tokens=True)
                    completions.append(Completion(text, latency_ms, int((row != self.tokenizer.pad_token_id).sum())))
        finally:
            self.tokenizer.padding_side = side
        return completions


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
