"""The training sections: SFT and GRPO stages, plateau stopping and tracking."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from finsent.config.base import check_at_least, check_unique
from finsent.errors import ConfigError


@dataclass
class PlateauConfig:
    """GRPO early stopping on a reward plateau (and optionally on validation accuracy), counted in windows."""

    use_early_stopping: bool = field(
        default=True, metadata={"help": "Stop on a plateau; false still writes the evidence and keeps the best."}
    )
    patience: int = field(default=10, metadata={"help": "Windows without a rise above min_delta before stopping."})
    min_delta: float = field(default=0.01, metadata={"help": "Rise of the smoothed total reward that counts."})
    warmup_steps: int = field(default=200, metadata={"help": "Steps before windows count toward patience."})
    window_steps: int = field(
        default=10, metadata={"help": "Steps per window; the smoothed reward is the window's mean logged total."}
    )
    metric: Literal["reward", "accuracy"] = field(
        default="reward", metadata={"help": "Metric that picks the best checkpoint (accuracy needs accuracy checks)."}
    )
    accuracy_every_steps: int = field(
        default=0, metadata={"help": "Validation accuracy (greedy, eval's parser) every N steps; 0: off."}
    )
    accuracy_examples: int = field(default=64, metadata={"help": "Held-out validation rows per accuracy check."})
    accuracy_patience: int = field(default=5, metadata={"help": "Accuracy checks without a rise before stopping."})

    def __post_init__(self) -> None:
        check_at_least(self, ("patience", "window_steps", "accuracy_examples", "accuracy_patience"), 1)
        check_at_least(self, ("warmup_steps", "accuracy_every_steps"), 0)
        if self.min_delta < 0:
            raise ConfigError("", field="min_delta", expected="a number >= 0", got=self.min_delta)
        if self.metric == "accuracy" and self.accuracy_every_steps == 0:
            raise ConfigError(
                "metric accuracy needs accuracy checks",
                field="accuracy_every_steps",
                expected="an int >= 1 with metric: accuracy",
                got=0,
            )


@dataclass
class TrainStageConfig:
    """What the SFT and GRPO stages share: the model and tokenizer, TRL's settings, LoRA, quantization, checkpoints."""

    model: str | None = field(default=None, metadata={"help": "Hub id, local dir, or tiny:qwen3 (offline)."})
    tokenizer: str | None = field(
        default=None,
        metadata={"help": "Tokenizer id, dir or builtin:qwen3 (default: the model's; builtin:qwen3 for tiny:qwen3)."},
    )
    tiny: dict[str, Any] = field(
        default_factory=dict,
        metadata={"help": "tiny:qwen3 only: Qwen3Config overrides of its shape (hidden_size, ...)."},
    )
    trust_remote_code: bool = field(default=False, metadata={"help": "Run code shipped with the model repo."})
    train_file: str | None = field(default=None, metadata={"help": "ChatML JSONL (default: <data>/train.jsonl)."})
    eval_file: str | None = field(
        default=None,
        metadata={
            "help": "Held-out ChatML JSONL: SFT evaluates on it when trainer.eval_strategy is set, GRPO checks "
            "accuracy on it (default: <data>/validation.jsonl)."
        },
    )
    trainer: dict[str, Any] = field(
        default_factory=dict,
        metadata={"help": "Passed verbatim to trl.SFTConfig / trl.GRPOConfig (learning_rate, packing, ...)."},
    )
    lora: dict[str, Any] | None = field(
        default_factory=dict,
        metadata={"help": "Passed verbatim to peft.LoraConfig (r, lora_alpha, ...); null: full fine-tuning."},
    )
    quantization: Literal["none", "4bit"] = field(
        default="none", metadata={"help": "4bit: QLoRA (bitsandbytes NF4, double quant); needs CUDA."}
    )
    output_dir: str | None = field(
        default=None, metadata={"help": "Adapter and logs (default: <output_dir>/sft or <output_dir>/grpo)."}
    )
    resume: bool = field(default=False, metadata={"help": "Continue from the last checkpoint (also --resume)."})

    def __post_init__(self) -> None:
        _check_trainer_keys(self.trainer)
        _check_model_options(self.model, self.tiny, self.lora, self.quantization)


@dataclass
class SFTStageConfig(TrainStageConfig):
    """SFT warm-up: TRL's SFTTrainer, a LoRA adapter (QLoRA on CUDA), loss on the assistant tokens only."""

    model: str = field(
        default="Qwen/Qwen3-4B", metadata={"help": "Hub id, local dir, or tiny:qwen3 (a random tiny Qwen3, offline)."}
    )


@dataclass
class GRPOStageConfig(TrainStageConfig):
    """GRPO: TRL's GRPOTrainer from the SFT adapter or a base model, rewards by name, plateau early stopping."""

    model: str | None = field(
        default=None,
        metadata={"help": "Adapter dir (trained on), hub id, dir or tiny:qwen3 (default: the SFT output)."},
    )
    rewards: list[str] = field(
        default_factory=lambda: ["correctness", "format", "reasoning_quality", "consistency"],
        metadata={"help": "Reward names (finsent ls rewards); weights go in trainer.reward_weights (default equal)."},
    )
    plateau: PlateauConfig = field(default_factory=PlateauConfig, metadata={"help": "Early stopping."})

    def __post_init__(self) -> None:
        super().__post_init__()
        if not self.rewards:
            raise ConfigError("", field="rewards", expected="at least one reward name", got=[])
        check_unique(list(self.rewards), "rewards", None, "each reward once")
        weights = self.trainer.get("reward_weights")
        if weights is not None and (not isinstance(weights, list) or len(weights) != len(self.rewards)):
            raise ConfigError(
                "one weight per reward, in the order of grpo.rewards",
                field="trainer.reward_weights",
                expected=f"a list of {len(self.rewards)} numbers",
                got=weights,
            )


def _check_model_options(
    model: str | None, tiny: dict[str, Any], lora: dict[str, Any] | None, quantization: str
) -> None:
    if tiny and not (model or "").startswith("tiny:"):
        raise ConfigError(
            "tiny sets the shape of a tiny:qwen3 model only",
            field="tiny",
            expected=f"model tiny:qwen3, or no tiny section with model {model!r}",
            got=tiny,
        )
    if lora is None and quantization != "none":
        raise ConfigError(
            f"a {quantization} model trains through a LoRA adapter only",
            field="lora",
            expected="LoRA settings (null is full fine-tuning)",
            got=None,
        )


def _check_trainer_keys(trainer: dict[str, Any]) -> None:
    # finsent sets these from its own fields, so that a stage's outputs stay under its output_dir.
    for key, instead in (("output_dir", "output_dir"), ("resume_from_checkpoint", "resume")):
        if key in trainer:
            raise ConfigError(f"set the stage's {instead} instead", field=f"trainer.{key}")


@dataclass
class TrackingConfig:
    """Where metrics and plots go: ``local`` files by default, cloud trackers by name (``finsent ls trackers``)."""

    backends: list[str] = field(
        default_factory=lambda: ["local"],
        metadata={"help": "Trackers: local (JSONL + PNG in the run dir), wandb, mlflow, trackio, tensorboard."},
    )
    project: str = field(default="finsent", metadata={"help": "Project (wandb, trackio) or experiment (mlflow) name."})
    run_name: str | None = field(default=None, metadata={"help": "Run name in the trackers (default: their own)."})

    def __post_init__(self) -> None:
        check_unique(list(self.backends), "backends", None, "each tracker once")
