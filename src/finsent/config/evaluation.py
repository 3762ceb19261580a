"""The eval stage's sections: models (also served and predicted from), test sets and baselines."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from finsent.config.base import check_at_least, check_unique
from finsent.config.data import SourceConfig
from finsent.errors import ConfigError

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
    calibration: str | None = field(
        default=None,
        metadata={"help": "calibration.json to apply (default: the one eval saved beside the model, if any)."},
    )

    def __post_init__(self) -> None:
        if not self.name:
            self.name = Path(self.path.rstrip("/")).name or self.path
        check_at_least(self, ("max_new_tokens", "batch_size", "n_ctx"), 1)
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
    use_temperature_scaling: bool = field(
        default=True,
        metadata={"help": "Fit a temperature per model and baseline on calibration_set; saved beside the model."},
    )
    calibration_set: SourceConfig | None = field(
        default=None,
        metadata={"help": "Rows the temperature is fitted on (default: the data stage's validation.jsonl, if any)."},
    )
    calibration_bins: int = field(
        default=10, metadata={"help": "Equal-width confidence bins of the calibration error and reliability diagram."}
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
        check_at_least(self, ("bootstrap_resamples", "calibration_bins"), 1)
        if not 0 < self.confidence < 1:
            raise ConfigError("", field="confidence", expected="a float in (0, 1)", got=self.confidence)
        if not 0 < self.near_threshold <= 1:
            raise ConfigError("", field="near_threshold", expected="a float in (0, 1]", got=self.near_threshold)
        check_unique([m.name for m in self.models], "models", "name", "a unique model name")
        check_unique(self.baselines, "baselines", None, "each baseline once")
        check_unique([t.display_name for t in self.test_sets], "test_sets", "display_name", "a unique test set name")
        clash = sorted(set(self.baselines) & {m.name for m in self.models})
        if clash:
            raise ConfigError(
                "a model and a baseline share a name", field="models", expected="distinct names", got=clash
            )
