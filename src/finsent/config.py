"""Typed recipe configuration: YAML with line numbers, dotted overrides, checks against the annotations.

A recipe is one YAML file with one section per stage. ``load_config("tiny-cpu", ["data.seed=3"])`` resolves a
bundled recipe name or a path, applies overrides, checks every key and type, and names file, line and key in
every error.
"""

from __future__ import annotations

import dataclasses
import hashlib
import re
import types
import typing
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, Literal

import yaml

from finsent.completion import DEFAULT_SYSTEM_PROMPT, DEFAULT_USER_TEMPLATE, PromptConfig
from finsent.errors import ConfigError
from finsent.tasks import TASKS

KeyPath = tuple[str | int, ...]
STAGES = ("data", "sft", "grpo", "export", "eval")
Location = tuple[str, int | None]


# --- data ---------------------------------------------------------------------------------------------------------


@dataclass
class SourceConfig:
    """One input source: a registered reader name (``finsent ls sources``) or ``hub:<dataset id>``."""

    name: str = field(metadata={"help": "Source name (finsent ls sources) or hub:<dataset id>."})
    path: str | None = field(default=None, metadata={"help": "Local file; hub sources take a dataset id here."})
    subset: str | None = field(default=None, metadata={"help": "Hub dataset config name (e.g. sentences_allagree)."})
    split: str = field(default="train", metadata={"help": "Hub dataset split to read."})
    text_column: str | None = field(
        default=None, metadata={"help": "Column holding the text (csv/jsonl/parquet/hub)."}
    )
    label_column: str | None = field(
        default=None, metadata={"help": "Column holding the label (csv/jsonl/parquet/hub)."}
    )
    label_map: dict[str, str] | None = field(
        default=None, metadata={"help": "Raw label -> positive|negative|neutral; unmapped labels are errors."}
    )
    neutral_band: float = field(
        default=0.1, metadata={"help": "FiQA: scores in [-band, band) are neutral (the published protocol uses 0.1)."}
    )
    max_rows: int | None = field(default=None, metadata={"help": "Read at most this many rows (seeded sample)."})
    num_examples: int = field(
        default=600, metadata={"help": "demo, synthetic_transactions: how many synthetic rows to write."}
    )
    seed: int = field(default=0, metadata={"help": "demo, synthetic_transactions: seed of the generator."})

    def __post_init__(self) -> None:
        if not 0 <= self.neutral_band < 1:
            raise ConfigError("", field="neutral_band", expected="a float in [0, 1)", got=self.neutral_band)
        if self.max_rows is not None and self.max_rows < 1:
            raise ConfigError("", field="max_rows", expected="an int >= 1 or null", got=self.max_rows)


@dataclass
class TeacherConfig:
    """Who writes the chain of thought; fields beyond ``name`` and ``mode`` apply to the model teachers."""

    name: str = field(
        default="lexicon", metadata={"help": "Teacher name: lexicon, openai or vllm (finsent ls teachers)."}
    )
    mode: Literal["guided", "blind"] = field(
        default="guided",
        metadata={"help": "guided: told the gold label, it explains; blind: it answers, kept if right."},
    )
    model: str | None = field(default=None, metadata={"help": "Model name (openai) or hub id/path (vllm)."})
    lexicon: Literal["finsent", "loughran_mcdonald"] = field(
        default="finsent",
        metadata={"help": "lexicon teacher: the cue-word lists (loughran_mcdonald: finsent[lexicon])."},
    )
    base_urls: list[str] = field(
        default_factory=lambda: ["http://127.0.0.1:8000/v1"],
        metadata={"help": "OpenAI-compatible endpoints; requests are spread over all of them."},
    )
    api_key_env: str = field(default="OPENAI_API_KEY", metadata={"help": "Environment variable holding the API key."})
    max_concurrency: int = field(
        default=16, metadata={"help": "Requests in flight at once, over all base URLs (vllm: prompts per batch)."}
    )
    timeout_s: float = field(
        default=120.0, metadata={"help": "HTTP timeout in seconds: to connect, and for each wait on the server."}
    )
    max_retries: int = field(
        default=5,
        metadata={"help": "HTTP retries on 408/409/429/5xx, timeouts, dropped connections, unreadable replies."},
    )
    attempts_per_example: int = field(
        default=3, metadata={"help": "Tries per example when a reply fails validation; temperature rises each try."}
    )
    temperature: float = field(default=0.6, metadata={"help": "Sampling temperature of the first try."})
    temperature_step: float = field(default=0.2, metadata={"help": "Added to the temperature on each further try."})
    top_p: float = field(default=0.95, metadata={"help": "Nucleus sampling."})
    max_tokens: int = field(default=512, metadata={"help": "Longest reply in tokens."})
    guided_hint: str = field(
        default="The correct label is {label}. Explain briefly why, then answer with that label.",
        metadata={"help": "guided mode: appended to the user message; {label} is the gold label."},
    )
    few_shot: list[dict[str, str]] = field(
        default_factory=list, metadata={"help": "Examples [{text, label, reasoning}] shown to the teacher first."}
    )
    tensor_parallel_size: int = field(default=1, metadata={"help": "vllm: GPUs per model replica."})
    gpu_memory_utilization: float = field(default=0.9, metadata={"help": "vllm: share of GPU memory to use."})
    seed: int = field(default=0, metadata={"help": "Sampling seed where the teacher supports one."})

    def __post_init__(self) -> None:
        for name in ("max_concurrency", "attempts_per_example", "max_tokens", "tensor_parallel_size"):
            if getattr(self, name) < 1:
                raise ConfigError("", field=name, expected="an int >= 1", got=getattr(self, name))
        if self.max_retries < 0:
            raise ConfigError("", field="max_retries", expected="an int >= 0", got=self.max_retries)
        if self.timeout_s <= 0:
            raise ConfigError("", field="timeout_s", expected="a number > 0", got=self.timeout_s)
        if not self.base_urls:
            raise ConfigError("", field="base_urls", expected="at least one URL", got=self.base_urls)
        for i, shot in enumerate(self.few_shot):
            missing = {"text", "label", "reasoning"} - set(shot)
            if missing:
                raise ConfigError("", field=f"few_shot.{i}", expected="keys text, label, reasoning", got=shot)


@dataclass
class ValidationConfig:
    """Strict checks on inputs and teacher replies; each rejection is counted by reason."""

    min_text_chars: int = field(
        default=12, metadata={"help": "Inputs shorter than this are rejected (text_too_short)."}
    )
    min_reasoning_words: int = field(default=5, metadata={"help": "Shortest accepted reasoning, in words."})
    max_reasoning_words: int = field(default=200, metadata={"help": "Longest accepted reasoning, in words."})
    max_copy_ratio: float = field(
        default=0.9,
        metadata={"help": "Reject reasoning whose words lie this much inside 3-word runs copied from the input."},
    )
    max_repeated_ngram_ratio: float = field(
        default=0.3, metadata={"help": "Reject reasoning whose 3-grams repeat more than this share (degenerate)."}
    )

    def __post_init__(self) -> None:
        if self.min_reasoning_words > self.max_reasoning_words:
            raise ConfigError(
                "min_reasoning_words must not exceed max_reasoning_words",
                field="min_reasoning_words",
                expected=f"<= {self.max_reasoning_words}",
                got=self.min_reasoning_words,
            )


@dataclass
class DedupConfig:
    """Exact and near-duplicate removal on input text, before the split."""

    use_near: bool = field(default=True, metadata={"help": "Also remove near duplicates (MinHash LSH)."})
    threshold: float = field(
        default=0.85, metadata={"help": "Jaccard similarity of word 3-grams counted as near-dup."}
    )
    num_perm: int = field(default=128, metadata={"help": "MinHash permutations (more: slower, more exact)."})
    decontaminate: list[SourceConfig] = field(
        default_factory=list,
        metadata={"help": "Evaluation sets whose texts (exact or near) are removed from the data."},
    )

    def __post_init__(self) -> None:
        if not 0 < self.threshold <= 1:
            raise ConfigError("", field="threshold", expected="a float in (0, 1]", got=self.threshold)
        if self.num_perm < 16:
            raise ConfigError("", field="num_perm", expected="an int >= 16", got=self.num_perm)


@dataclass
class BalanceConfig:
    """Balance by gold label before the teacher runs, so no generation is spent on rows dropped later."""

    strategy: Literal["none", "downsample", "targets", "ratios"] = field(
        default="none",
        metadata={"help": "none; downsample (to the rarest label); targets (counts); ratios (shares of the total)."},
    )
    targets: dict[str, int] = field(default_factory=dict, metadata={"help": "targets: label -> count."})
    ratios: dict[str, float] = field(default_factory=dict, metadata={"help": "ratios: label -> share (sums to 1)."})
    upsample_train: bool = field(
        default=False, metadata={"help": "Repeat rare-label rows in train only (never across splits) to the targets."}
    )

    def __post_init__(self) -> None:
        if self.strategy == "targets" and not self.targets:
            raise ConfigError("strategy 'targets' needs targets", field="targets", expected="label -> count", got={})
        if self.strategy == "ratios":
            total = sum(self.ratios.values())
            if not self.ratios or abs(total - 1) > 1e-6:
                raise ConfigError("", field="ratios", expected="label -> share, summing to 1", got=self.ratios)


@dataclass
class SplitConfig:
    """Stratified, seeded split into train, validation and test."""

    validation: float = field(default=0.1, metadata={"help": "Share of examples in validation.jsonl."})
    test: float = field(default=0.1, metadata={"help": "Share of examples in test.jsonl."})

    def __post_init__(self) -> None:
        for name in ("validation", "test"):
            if not 0 <= getattr(self, name) < 1:
                raise ConfigError("", field=name, expected="a share in [0, 1)", got=getattr(self, name))
        if self.validation + self.test >= 1:
            raise ConfigError("", field="test", expected="validation + test < 1", got=self.validation + self.test)


@dataclass
class MixtureConfig:
    """Instruction mixtures: a seeded sample of rows per task type, in proportion to the weights; without a total,
    the largest sample whose shares all fit in the rows there are."""

    weights: dict[str, float] = field(
        default_factory=dict,
        metadata={"help": "task_type -> weight (normalised to shares); task types not named are left out."},
    )
    total: int | None = field(
        default=None,
        metadata={"help": "Rows in all (e.g. 50000); a task type short of its share keeps what it has."},
    )

    def __post_init__(self) -> None:
        if not self.weights or any(w < 0 for w in self.weights.values()) or sum(self.weights.values()) <= 0:
            raise ConfigError("", field="weights", expected="task_type -> weight >= 0, some > 0", got=self.weights)
        if self.total is not None and self.total < 1:
            raise ConfigError("", field="total", expected="an int >= 1 or null", got=self.total)


@dataclass
class DataConfig:
    """The data stage: sources -> labels -> dedup -> balance -> teacher -> validation -> split -> ChatML."""

    sources: list[SourceConfig] = field(
        default_factory=lambda: [SourceConfig(name="demo")], metadata={"help": "Inputs, read in order."}
    )
    teacher: TeacherConfig = field(default_factory=TeacherConfig, metadata={"help": "Who writes the reasoning."})
    validation: ValidationConfig = field(default_factory=ValidationConfig, metadata={"help": "Strict checks."})
    dedup: DedupConfig = field(default_factory=DedupConfig, metadata={"help": "Duplicate removal."})
    balance: BalanceConfig = field(default_factory=BalanceConfig, metadata={"help": "Label balancing."})
    split: SplitConfig = field(default_factory=SplitConfig, metadata={"help": "Train/validation/test shares."})
    on_error: Literal["raise", "skip"] = field(
        default="raise",
        metadata={"help": "Bad input rows: raise (stop with file:line) or skip (counted in the report)."},
    )
    output_dir: str | None = field(default=None, metadata={"help": "Where outputs go (default: <output_dir>/data)."})
    seed: int = field(default=42, metadata={"help": "Seed for sampling, balancing and the split."})
    push_to_hub: str | None = field(default=None, metadata={"help": "Upload the dataset to this hub repo id."})
    anonymize: bool | None = field(
        default=None,
        metadata={"help": "Mask card/account numbers, IBANs, emails, phones, payee names (null: the task's default)."},
    )
    mixture: MixtureConfig | None = field(
        default=None, metadata={"help": "Task instruct: rows per task_type by weight, with a total."}
    )
    max_tokens: int = field(
        default=2048, metadata={"help": "Task instruct: conversations of this many tokens or more are dropped."}
    )
    tokenizer: str | None = field(
        default=None,
        metadata={"help": "Task instruct: tokenizer that counts max_tokens (null: estimate 4 characters a token)."},
    )

    def __post_init__(self) -> None:
        if self.max_tokens < 1:
            raise ConfigError("", field="max_tokens", expected="an int >= 1", got=self.max_tokens)
        if not self.sources:
            raise ConfigError("", field="sources", expected="at least one source", got=[])


# --- eval ---------------------------------------------------------------------------------------------------------


# In eval and export paths, the run's output_dir: "{output_dir}/grpo" follows an output_dir=... override.
RUN_DIR = "{output_dir}"


@dataclass
class ModelConfig:
    """One model to evaluate or serve predictions from, through a registered backend (``finsent ls backends``)."""

    path: str = field(
        metadata={"help": "Hub id or local dir (transformers), GGUF file (llamacpp), served model name (openai)."}
    )
    name: str | None = field(default=None, metadata={"help": "Name in reports (default: the last part of path)."})
    backend: str = field(default="transformers", metadata={"help": "transformers, llamacpp or openai."})
    adapter: str | None = field(default=None, metadata={"help": "transformers: LoRA adapter dir applied on top."})
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = field(
        default="auto", metadata={"help": "transformers: weights dtype; auto is bfloat16 on CUDA, float32 on CPU."}
    )
    device: str = field(default="auto", metadata={"help": "transformers: cpu, cuda, cuda:1, ...; auto picks CUDA."})
    trust_remote_code: bool = field(default=False, metadata={"help": "transformers: run the model repo's code."})
    max_new_tokens: int = field(default=256, metadata={"help": "Longest completion in tokens."})
    batch_size: int = field(
        default=8, metadata={"help": "Prompts per generate call (transformers) or requests in flight (openai)."}
    )
    base_url: str = field(default="http://127.0.0.1:8000/v1", metadata={"help": "openai: the server's /v1 URL."})
    api_key_env: str = field(default="OPENAI_API_KEY", metadata={"help": "openai: env variable with the API key."})
    timeout_s: float = field(default=120.0, metadata={"help": "openai: per-request timeout in seconds."})
    n_ctx: int = field(default=4096, metadata={"help": "llamacpp: context length in tokens."})
    n_gpu_layers: int = field(default=-1, metadata={"help": "llamacpp: layers offloaded to the GPU (-1: all)."})

    def __post_init__(self) -> None:
        if not self.name:
            self.name = Path(self.path.rstrip("/")).name or self.path
        for name in ("max_new_tokens", "batch_size", "n_ctx"):
            if getattr(self, name) < 1:
                raise ConfigError("", field=name, expected="an int >= 1", got=getattr(self, name))
        if self.timeout_s <= 0:
            raise ConfigError("", field="timeout_s", expected="a number > 0", got=self.timeout_s)
        if self.adapter is not None and self.backend != "transformers":
            raise ConfigError(
                "adapters are applied by the transformers backend only",
                field="adapter",
                expected="null with backend " + repr(self.backend),
                got=self.adapter,
            )


@dataclass
class EvalSetConfig(SourceConfig):
    """A test set: a source plus the protocol that picks its test rows (``finsent ls protocols``)."""

    protocol: str = field(
        default="whole", metadata={"help": "whole file, holdout (seeded split), or a published protocol."}
    )
    test_size: float | None = field(default=None, metadata={"help": "holdout: share of rows held out as test."})
    split_seed: int = field(default=42, metadata={"help": "holdout: seed of the split."})
    extra_paths: list[str] = field(
        default_factory=list, metadata={"help": "More files of this source, read after path and cut as one set."}
    )
    display_name: str | None = field(default=None, metadata={"help": "Name in reports (default: protocol or file)."})

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.protocol == "holdout" and self.test_size is None:
            raise ConfigError(
                "protocol holdout needs test_size", field="test_size", expected="a share in (0, 1)", got=None
            )
        if self.protocol != "holdout" and self.test_size is not None:
            raise ConfigError(
                f"protocol {self.protocol} fixes its own split",
                field="test_size",
                expected="null (or protocol: holdout)",
                got=self.test_size,
            )
        if self.test_size is not None and not 0 < self.test_size < 1:
            raise ConfigError("", field="test_size", expected="a share in (0, 1)", got=self.test_size)
        if not self.display_name:
            named = self.protocol not in ("whole", "holdout")
            self.display_name = self.protocol if named else f"{self.name}:{Path(self.path or self.name).stem}"


@dataclass
class EvalConfig:
    """Evaluation: models and baselines on test sets, with metrics, intervals, plots and a report."""

    models: list[ModelConfig] = field(default_factory=list, metadata={"help": "Models to evaluate."})
    baselines: list[str] = field(
        default_factory=list, metadata={"help": "Baselines to run (finsent ls baselines): majority, lexicon, tfidf."}
    )
    train: SourceConfig | None = field(
        default=None,
        metadata={"help": "What trained baselines learn from (default: the rows a test set's protocol leaves out)."},
    )
    test_sets: list[EvalSetConfig] = field(
        default_factory=list, metadata={"help": "Test sets (default: the data stage's test.jsonl)."}
    )
    reference: list[SourceConfig] = field(
        default_factory=list, metadata={"help": "More training sets to check test texts against (contamination)."}
    )
    near_threshold: float = field(
        default=0.85, metadata={"help": "Jaccard similarity of word 3-grams counted as a near duplicate."}
    )
    bootstrap_resamples: int = field(default=1000, metadata={"help": "Bootstrap resamples for the intervals."})
    confidence: float = field(default=0.95, metadata={"help": "Confidence level of the bootstrap intervals."})
    num_samples: int = field(
        default=5, metadata={"help": "Right and (as many) wrong answers per model and test set in samples.jsonl."}
    )
    on_error: Literal["raise", "skip"] = field(
        default="raise", metadata={"help": "Bad input rows: raise (stop with file:line) or skip (counted)."}
    )
    output_dir: str | None = field(default=None, metadata={"help": "Where outputs go (default: <output_dir>/eval)."})
    seed: int = field(default=42, metadata={"help": "Seed of the bootstrap and of the samples drawn."})

    def __post_init__(self) -> None:
        if self.bootstrap_resamples < 1:
            raise ConfigError("", field="bootstrap_resamples", expected="an int >= 1", got=self.bootstrap_resamples)
        if not 0 < self.confidence < 1:
            raise ConfigError("", field="confidence", expected="a float in (0, 1)", got=self.confidence)
        if not 0 < self.near_threshold <= 1:
            raise ConfigError("", field="near_threshold", expected="a float in (0, 1]", got=self.near_threshold)
        _check_unique([m.name for m in self.models], "models", "name", "a unique model name")
        _check_unique(self.baselines, "baselines", None, "each baseline once")
        _check_unique([t.display_name for t in self.test_sets], "test_sets", "display_name", "a unique test set name")
        clash = sorted(set(self.baselines) & {m.name for m in self.models})
        if clash:
            raise ConfigError(
                "a model and a baseline share a name", field="models", expected="distinct names", got=clash
            )


def _check_unique(names: list[str | None], list_field: str, item_field: str | None, expected: str) -> None:
    seen: set[str | None] = set()
    for i, name in enumerate(names):
        if name in seen:
            where = f"{list_field}.{i}" + (f".{item_field}" if item_field else "")
            raise ConfigError("duplicate", field=where, expected=expected, got=name)
        seen.add(name)


# --- training -----------------------------------------------------------------------------------------------------


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
        for name in ("patience", "window_steps", "accuracy_examples", "accuracy_patience"):
            if getattr(self, name) < 1:
                raise ConfigError("", field=name, expected="an int >= 1", got=getattr(self, name))
        for name in ("warmup_steps", "accuracy_every_steps"):
            if getattr(self, name) < 0:
                raise ConfigError("", field=name, expected="an int >= 0", got=getattr(self, name))
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
        from finsent.rewards import REWARDS

        for i, name in enumerate(self.rewards):
            if name not in REWARDS:
                raise ConfigError(REWARDS.unknown_message(name), field=f"rewards.{i}")
        _check_unique(list(self.rewards), "rewards", None, "each reward once")
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


# --- tracking -----------------------------------------------------------------------------------------------------


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
        from finsent.tracking import TRACKERS

        for i, name in enumerate(self.backends):
            if name not in TRACKERS:
                raise ConfigError(TRACKERS.unknown_message(name), field=f"backends.{i}")
        _check_unique(list(self.backends), "backends", None, "each tracker once")


# --- export and serve ---------------------------------------------------------------------------------------------

QUANTIZATIONS: tuple[str, ...] = ("Q8_0", "Q5_K_M", "Q4_K_M")
# Modelfile PARAMETER names Ollama accepts (docs/modelfile.md); anything else is a typo.
OLLAMA_PARAMETERS = frozenset(
    {
        "mirostat",
        "mirostat_eta",
        "mirostat_tau",
        "num_ctx",
        "num_predict",
        "repeat_last_n",
        "repeat_penalty",
        "seed",
        "stop",
        "temperature",
        "top_k",
        "top_p",
        "min_p",
    }
)


@dataclass
class ExportConfig:
    """Export: merge the LoRA adapter (reload gate), GGUF files, an Ollama Modelfile and a size/quality table."""

    model: str | None = field(
        default=None, metadata={"help": "LoRA adapter dir (merged) or model dir (default: the GRPO output)."}
    )
    name: str = field(default="finsent", metadata={"help": "Stem of the GGUF files and the Ollama model name."})
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = field(
        default="auto", metadata={"help": "dtype of the merged safetensors; auto keeps the base model's."}
    )
    device: str = field(default="auto", metadata={"help": "Where the gate and the comparison run (auto: CUDA)."})
    gate_prompts: int = field(
        default=4, metadata={"help": "Held-out prompts on which merged and adapter logits and answers must agree."}
    )
    gate_atol: float = field(default=1e-3, metadata={"help": "Gate: absolute tolerance on the logits."})
    gate_rtol: float = field(
        default=1e-2, metadata={"help": "Gate: tolerance relative to the largest adapter logit (bf16 rounding)."}
    )
    use_gguf: bool = field(default=True, metadata={"help": "Write GGUF files (needs finsent[gguf])."})
    gguf_outtype: Literal["bf16", "f16"] = field(
        default="bf16", metadata={"help": "The unquantized GGUF the quantizations are made from."}
    )
    quantizations: list[Literal["Q8_0", "Q5_K_M", "Q4_K_M"]] = field(
        default_factory=lambda: list(QUANTIZATIONS), metadata={"help": "llama.cpp quantizations to make."}
    )
    gguf_max_compliance_drop: float = field(
        default=0.25,
        metadata={"help": "A GGUF may answer this share fewer gate prompts in format than the merged model."},
    )
    ollama_gguf: str = field(
        default="Q5_K_M", metadata={"help": "The GGUF the Modelfile uses: a quantization or the outtype (BF16)."}
    )
    ollama_parameters: dict[str, Any] = field(
        default_factory=lambda: {"temperature": 0.0, "num_ctx": 4096, "num_predict": 256},
        metadata={"help": "Modelfile PARAMETER lines (temperature, top_p, num_ctx, ...); stop tokens are added."},
    )
    eval_file: str | None = field(
        default=None,
        metadata={"help": "Held-out JSONL for the gate and comparison (default: <data>/test.jsonl, else demo rows)."},
    )
    compare_examples: int = field(
        default=200, metadata={"help": "Rows of eval_file in the size/quality comparison; 0 skips it."}
    )
    max_new_tokens: int = field(default=256, metadata={"help": "Longest answer in the gate and the comparison."})
    push_to_hub: str | None = field(
        default=None, metadata={"help": "Upload model, GGUFs and a model card to this hub repo id."}
    )
    output_dir: str | None = field(default=None, metadata={"help": "Where outputs go (default: <output_dir>/export)."})

    def __post_init__(self) -> None:
        for name in ("gate_prompts", "max_new_tokens"):
            if getattr(self, name) < 1:
                raise ConfigError("", field=name, expected="an int >= 1", got=getattr(self, name))
        if self.compare_examples < 0:
            raise ConfigError("", field="compare_examples", expected="an int >= 0", got=self.compare_examples)
        for name in ("gate_atol", "gate_rtol"):
            if getattr(self, name) < 0:
                raise ConfigError("", field=name, expected="a number >= 0", got=getattr(self, name))
        if not 0 <= self.gguf_max_compliance_drop <= 1:
            raise ConfigError(
                "", field="gguf_max_compliance_drop", expected="a share in [0, 1]", got=self.gguf_max_compliance_drop
            )
        _check_unique(list(self.quantizations), "quantizations", None, "each quantization once")
        choices = [self.gguf_outtype.upper(), *self.quantizations]
        if self.use_gguf and self.ollama_gguf not in choices:
            raise ConfigError("", field="ollama_gguf", expected="one of " + "|".join(choices), got=self.ollama_gguf)
        for key in self.ollama_parameters:
            if key not in OLLAMA_PARAMETERS:
                raise ConfigError(
                    f"unknown Ollama parameter; valid: {', '.join(sorted(OLLAMA_PARAMETERS))}",
                    field=f"ollama_parameters.{key}",
                )
        if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*", self.name):
            raise ConfigError("", field="name", expected="letters, digits, '.', '_' or '-'", got=self.name)


@dataclass
class ServeConfig:
    """The HTTP service: limits, an optional API key, bounded concurrency and micro-batching."""

    model: ModelConfig | None = field(
        default=None, metadata={"help": "The model to serve (finsent serve --model sets or overrides it)."}
    )
    host: str = field(default="127.0.0.1", metadata={"help": "Interface to listen on (0.0.0.0: every interface)."})
    port: int = field(default=8000, metadata={"help": "TCP port (0: any free port)."})
    api_key_env: str | None = field(
        default=None, metadata={"help": "Environment variable holding the API key; null serves without a key."}
    )
    max_body_bytes: int = field(default=1_000_000, metadata={"help": "Larger request bodies get 413."})
    max_batch_size: int = field(default=32, metadata={"help": "Most texts in one /v1/sentiment request (422)."})
    max_text_chars: int = field(
        default=4000, metadata={"help": "Longest text, or chat message content, in characters (422)."}
    )
    max_concurrency: int = field(
        default=64, metadata={"help": "Requests admitted at once (waiting or running); more get 503."}
    )
    use_micro_batching: bool = field(
        default=True, metadata={"help": "Gather prompts of concurrent requests into one backend call."}
    )
    micro_batch_size: int = field(default=8, metadata={"help": "Most prompts per backend call."})
    micro_batch_wait_ms: float = field(
        default=5.0, metadata={"help": "How long the first prompt of a micro-batch waits for company."}
    )
    request_timeout_s: float = field(default=120.0, metadata={"help": "A request still waiting then gets 504."})

    def __post_init__(self) -> None:
        if not 0 <= self.port <= 65535:
            raise ConfigError("", field="port", expected="a port in [0, 65535]", got=self.port)
        for name in ("max_body_bytes", "max_batch_size", "max_text_chars", "max_concurrency", "micro_batch_size"):
            if getattr(self, name) < 1:
                raise ConfigError("", field=name, expected="an int >= 1", got=getattr(self, name))
        if self.micro_batch_wait_ms < 0:
            raise ConfigError("", field="micro_batch_wait_ms", expected="a number >= 0", got=self.micro_batch_wait_ms)
        if self.request_timeout_s <= 0:
            raise ConfigError("", field="request_timeout_s", expected="a number > 0", got=self.request_timeout_s)


# --- recipe -------------------------------------------------------------------------------------------------------


@dataclass
class RecipeConfig:
    """A whole recipe: the shared prompt, the run directory and one section per stage."""

    output_dir: str = field(default="runs/finsent", metadata={"help": "Run directory; stages default to subfolders."})
    stages: list[Literal["data", "sft", "grpo", "export", "eval"]] = field(
        default_factory=lambda: list(STAGES),
        metadata={"help": "What `finsent run` runs, in this order."},
    )
    task: str = field(
        default="sentiment", metadata={"help": "What to train for (finsent ls tasks): labels, prompt, scoring."}
    )
    prompt: PromptConfig = field(
        default_factory=PromptConfig,
        metadata={"help": "The student prompt (all stages); fields left unset take the task's defaults."},
    )
    data: DataConfig = field(default_factory=DataConfig, metadata={"help": "Data stage."})
    eval: EvalConfig = field(default_factory=EvalConfig, metadata={"help": "Evaluation stage."})
    sft: SFTStageConfig = field(default_factory=SFTStageConfig, metadata={"help": "SFT warm-up stage."})
    grpo: GRPOStageConfig = field(default_factory=GRPOStageConfig, metadata={"help": "GRPO stage."})
    tracking: TrackingConfig = field(default_factory=TrackingConfig, metadata={"help": "Metrics and plots."})
    export: ExportConfig = field(default_factory=ExportConfig, metadata={"help": "Export stage."})
    serve: ServeConfig = field(default_factory=ServeConfig, metadata={"help": "HTTP service."})
    source_path: str | None = field(default=None, metadata={"help": "The recipe file this came from (set by loader)."})

    def _expand_run_paths(self) -> None:
        """Replace ``{output_dir}`` in the paths of eval and export, so a recipe names what this run wrote."""

        def expand(path: str | None) -> str | None:
            return path.replace(RUN_DIR, str(self.output_dir)) if path else path

        for model in self.eval.models:
            model.path, model.adapter = expand(model.path), expand(model.adapter)
        for source in [*self.eval.test_sets, *self.eval.reference, *([self.eval.train] if self.eval.train else [])]:
            source.path = expand(source.path)
        self.export.model = expand(self.export.model)

    def __post_init__(self) -> None:
        if self.data.output_dir is None:
            self.data.output_dir = str(Path(self.output_dir) / "data")
        if self.eval.output_dir is None:
            self.eval.output_dir = str(Path(self.output_dir) / "eval")
        data_dir = Path(self.data.output_dir)
        for stage, name in ((self.sft, "sft"), (self.grpo, "grpo")):
            if stage.output_dir is None:
                stage.output_dir = str(Path(self.output_dir) / name)
            if stage.train_file is None:
                stage.train_file = str(data_dir / "train.jsonl")
            if stage.eval_file is None:
                stage.eval_file = str(data_dir / "validation.jsonl")
        if self.grpo.model is None:
            self.grpo.model = self.sft.output_dir
        if self.export.output_dir is None:
            self.export.output_dir = str(Path(self.output_dir) / "export")
        if self.export.model is None:
            self.export.model = self.grpo.output_dir
        self._expand_run_paths()
        if len(set(self.stages)) != len(self.stages):
            raise ConfigError("", field="stages", expected="each stage at most once", got=self.stages)
        if self.task not in TASKS:
            raise ConfigError(TASKS.unknown_message(self.task), field="task")
        task = TASKS.get(self.task)
        # PromptConfig's defaults are the sentiment prompt: a field left at it takes the task's own default.
        self.prompt = PromptConfig(
            system=task.prompt.system if self.prompt.system == DEFAULT_SYSTEM_PROMPT else self.prompt.system,
            user_template=(
                task.prompt.user_template
                if self.prompt.user_template == DEFAULT_USER_TEMPLATE
                else self.prompt.user_template
            ),
        )
        if self.data.anonymize is None:
            self.data.anonymize = task.use_anonymizer
        if self.data.mixture is not None and task.labels is not None:
            raise ConfigError(
                "mixtures sample instruction rows by task_type", field="data.mixture", expected="task: instruct"
            )
        if "{text}" not in self.prompt.user_template:
            raise ConfigError(
                "",
                field="prompt.user_template",
                expected="a template containing {text}",
                got=self.prompt.user_template,
            )


# --- loading ------------------------------------------------------------------------------------------------------


def resolve_recipe(name_or_path: str | Path) -> Path:
    """Return the path of a recipe given as a file path or a bundled name such as ``tiny-cpu``."""
    path = Path(name_or_path)
    if path.suffix in (".yaml", ".yml") or path.exists():
        if not path.is_file():
            raise ConfigError("recipe not found", path=path, expected="an existing YAML file", got=str(path))
        return path
    bundled = resources.files("finsent") / "recipes" / f"{name_or_path}.yaml"
    if bundled.is_file():
        return Path(str(bundled))
    known = sorted(
        p.name.removesuffix(".yaml")
        for p in (resources.files("finsent") / "recipes").iterdir()
        if p.name.endswith(".yaml")
    )
    raise ConfigError(f"unknown recipe {str(name_or_path)!r}; bundled recipes: {', '.join(known)}")


def load_config(recipe: str | Path | None = None, overrides: list[str] | None = None) -> RecipeConfig:
    """Load a recipe (bundled name or path; None for the defaults), apply ``key.path=value`` overrides, check it."""
    tree: dict[str, Any] = {}
    locations: dict[KeyPath, Location] = {}
    source = "<defaults>"
    if recipe is not None:
        path = resolve_recipe(recipe)
        source = str(path)
        tree = _read_yaml(path, locations)
    for override in overrides or []:
        _apply_override(tree, override, locations)
    cfg = build_dataclass(RecipeConfig, tree, (), locations, source)
    cfg.source_path = None if recipe is None else source
    return cfg


def locate_key(cfg: RecipeConfig, dotted: str) -> tuple[str | None, int | None]:
    """Return the recipe file and line that set ``dotted`` (e.g. ``sft.trainer.learning_rate``), for errors found
    after loading, such as TRL's own validation; the nearest enclosing key's line when the key itself is not there."""
    if cfg.source_path is None:
        return None, None
    locations: dict[KeyPath, Location] = {}
    try:
        _read_yaml(Path(cfg.source_path), locations)
    except ConfigError:
        return cfg.source_path, None
    parts = tuple(int(p) if p.isdigit() else p for p in dotted.split("."))
    return _where(parts, locations, cfg.source_path)


def dump_config(cfg: Any) -> str:
    """Return the resolved config as YAML, as saved to ``config.yaml`` beside a stage's outputs."""
    return yaml.safe_dump(dataclasses.asdict(cfg), sort_keys=False, allow_unicode=True, width=119)


def config_hash(cfg: Any) -> str:
    """Return a short stable hash of a config section, used to tell whether a stage must run again."""
    return hashlib.sha256(dump_config(cfg).encode()).hexdigest()[:16]


def _read_yaml(path: Path, locations: dict[KeyPath, Location]) -> dict[str, Any]:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        raise ConfigError(f"cannot read recipe ({err})", path=path) from err
    loader = yaml.SafeLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return {}
        tree = _construct(loader, node, (), locations, str(path))
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        raise ConfigError(
            f"invalid YAML: {getattr(err, 'problem', err)}", path=path, line=mark.line + 1 if mark else None
        ) from err
    finally:
        loader.dispose()
    if not isinstance(tree, dict):
        raise ConfigError(
            "", path=path, line=node.start_mark.line + 1, expected="a mapping of sections", got=type(tree).__name__
        )
    return tree


def _construct(
    loader: yaml.SafeLoader, node: yaml.Node, key_path: KeyPath, locations: dict[KeyPath, Location], source: str
) -> Any:
    locations.setdefault(key_path, (source, node.start_mark.line + 1))
    if isinstance(node, yaml.MappingNode):
        result: dict[str, Any] = {}
        for key_node, value_node in node.value:
            key = loader.construct_object(key_node)
            line = key_node.start_mark.line + 1
            if not isinstance(key, str):
                raise ConfigError("", path=source, line=line, field=_dotted(key_path), expected="string keys", got=key)
            if key in result:
                raise ConfigError("duplicate key", path=source, line=line, field=_dotted((*key_path, key)))
            locations[(*key_path, key)] = (source, line)
            result[key] = _construct(loader, value_node, (*key_path, key), locations, source)
        return result
    if isinstance(node, yaml.SequenceNode):
        return [_construct(loader, item, (*key_path, i), locations, source) for i, item in enumerate(node.value)]
    return loader.construct_object(node, deep=True)


def _apply_override(tree: dict[str, Any], override: str, locations: dict[KeyPath, Location]) -> None:
    key, sep, raw = override.partition("=")
    if not sep or not key.strip():
        raise ConfigError("", path="<command line>", field=override, expected="an override like data.seed=3")
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError as err:
        raise ConfigError(f"invalid value {raw!r}", path="<command line>", field=key) from err
    parts: list[str | int] = [int(p) if p.isdigit() else p for p in key.strip().split(".")]
    node: Any = tree
    for i, part in enumerate(parts[:-1]):
        child = (
            node[part]
            if isinstance(node, list) and isinstance(part, int) and part < len(node)
            else (node.get(part) if isinstance(node, dict) else None)
        )
        if child is None:
            if isinstance(node, list):
                raise ConfigError("", path="<command line>", field=key, expected=f"an index < {len(node)}", got=part)
            if isinstance(parts[i + 1], int):
                raise ConfigError(
                    "the recipe sets no list here to index; give the whole list, e.g. "
                    f"{_dotted(tuple(parts[: i + 1]))}='[...]'",
                    path="<command line>",
                    field=key,
                )
            child = node[part] = {}
        node = child
    last = parts[-1]
    if isinstance(node, list):
        if not isinstance(last, int) or last >= len(node):
            raise ConfigError("", path="<command line>", field=key, expected=f"an index < {len(node)}", got=last)
        node[last] = value
    else:
        node[last] = value
    for path in [p for p in locations if p[: len(parts)] == tuple(parts)]:
        del locations[path]
    for i in range(1, len(parts) + 1):
        locations.setdefault(tuple(parts[:i]), ("<command line>", None))


def _dotted(key_path: KeyPath) -> str:
    return ".".join(str(p) for p in key_path)


def _where(key_path: KeyPath, locations: dict[KeyPath, Location], default_source: str) -> Location:
    for i in range(len(key_path), -1, -1):
        if key_path[:i] in locations:
            return locations[key_path[:i]]
    return default_source, None


def build_dataclass(
    cls: type, data: Any, key_path: KeyPath, locations: dict[KeyPath, Location], source: str = "<defaults>"
) -> Any:
    """Build dataclass ``cls`` from ``data``, checking keys and types; errors carry file, line and key."""
    path, line = _where(key_path, locations, source)
    if not isinstance(data, dict):
        raise ConfigError(
            "",
            path=path,
            line=line,
            field=_dotted(key_path) or "<top>",
            expected=f"a mapping ({cls.__name__})",
            got=data,
        )
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    kwargs: dict[str, Any] = {}
    for key, value in data.items():
        if key not in fields:
            key_loc = _where((*key_path, key), locations, source)
            raise ConfigError(
                f"unknown key; valid keys: {', '.join(fields)}",
                path=key_loc[0],
                line=key_loc[1],
                field=_dotted((*key_path, key)),
            )
        kwargs[key] = _check(value, hints[key], (*key_path, key), locations, source)
    missing = [
        n
        for n, f in fields.items()
        if n not in kwargs and f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
    ]
    if missing:
        raise ConfigError("missing required key", path=path, line=line, field=_dotted((*key_path, missing[0])))
    try:
        return cls(**kwargs)
    except ConfigError as err:
        if err.path is not None:
            raise
        sub = tuple(err.field.split(".")) if err.field else ()
        sub_path = (*key_path, *(int(p) if p.isdigit() else p for p in sub))
        err_path, err_line = _where(sub_path, locations, source)
        raise ConfigError(
            err.message, path=err_path, line=err_line, field=_dotted(sub_path), expected=err.expected, got=err.got
        ) from err


def _check(value: Any, hint: Any, key_path: KeyPath, locations: dict[KeyPath, Location], source: str) -> Any:
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)

    def fail(expected: str) -> ConfigError:
        path, line = _where(key_path, locations, source)
        return ConfigError("", path=path, line=line, field=_dotted(key_path), expected=expected, got=value)

    if hint is Any:
        return value
    if origin in (types.UnionType, typing.Union):
        if value is None and type(None) in args:
            return None
        options = [a for a in args if a is not type(None)]
        errors = []
        for option in options:
            try:
                return _check(value, option, key_path, locations, source)
            except ConfigError as err:
                errors.append(err)
        if len(options) == 1:
            raise errors[0]
        raise fail(" or ".join(_type_name(o) for o in options))
    if origin is Literal:
        if value not in args:
            raise fail("one of " + "|".join(str(a) for a in args))
        return value
    if dataclasses.is_dataclass(hint):
        return build_dataclass(hint, value, key_path, locations, source)
    if origin is list:
        if not isinstance(value, list):
            raise fail(f"a list of {_type_name(args[0])}")
        return [_check(v, args[0], (*key_path, i), locations, source) for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, dict):
            raise fail(f"a mapping of {_type_name(args[0])} to {_type_name(args[1])}")
        return {
            _check(k, args[0], key_path, locations, source): _check(v, args[1], (*key_path, k), locations, source)
            for k, v in value.items()
        }
    if hint is bool:
        if not isinstance(value, bool):
            raise fail("true or false")
        return value
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise fail("an int")
        return value
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise fail("a number")
        return float(value)
    if hint is str:
        if not isinstance(value, str):
            raise fail("a string")
        return value
    raise TypeError(f"unsupported config annotation {hint!r} at {_dotted(key_path)}")


def _type_name(hint: Any) -> str:
    if typing.get_origin(hint) is Literal:
        return "|".join(str(a) for a in typing.get_args(hint))
    return getattr(hint, "__name__", str(hint))
