"""The data stage's sections: sources, teacher, validation, dedup, balance, split and mixtures."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from finsent.config.base import check_at_least
from finsent.errors import ConfigError


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
        check_at_least(self, ("max_concurrency", "attempts_per_example", "max_tokens", "tensor_parallel_size"), 1)
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
