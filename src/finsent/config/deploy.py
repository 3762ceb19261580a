"""The export and serve sections."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Literal

from finsent.config.base import check_at_least, check_unique
from finsent.config.evaluation import ModelConfig
from finsent.errors import ConfigError

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
        check_at_least(self, ("gate_prompts", "max_new_tokens"), 1)
        if self.compare_examples < 0:
            raise ConfigError("", field="compare_examples", expected="an int >= 0", got=self.compare_examples)
        for name in ("gate_atol", "gate_rtol"):
            if getattr(self, name) < 0:
                raise ConfigError("", field=name, expected="a number >= 0", got=getattr(self, name))
        if not 0 <= self.gguf_max_compliance_drop <= 1:
            raise ConfigError(
                "", field="gguf_max_compliance_drop", expected="a share in [0, 1]", got=self.gguf_max_compliance_drop
            )
        check_unique(list(self.quantizations), "quantizations", None, "each quantization once")
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
    max_tokens: int = field(
        default=256, metadata={"help": "Chat completions: longest reply in tokens; a caller's max_tokens is clamped."}
    )
    max_temperature: float = field(
        default=0.0, metadata={"help": "Chat completions: highest temperature a caller gets (0: always greedy)."}
    )
    use_caller_system_prompt: bool = field(
        default=False,
        metadata={"help": "Chat completions: a caller's system message replaces the trained one (else dropped)."},
    )
    min_confidence: float = field(
        default=0.0,
        metadata={
            "help": "/v1/sentiment answers abstain where the model's label is less likely than this (0: never)."
        },
    )

    def __post_init__(self) -> None:
        if not 0 <= self.port <= 65535:
            raise ConfigError("", field="port", expected="a port in [0, 65535]", got=self.port)
        check_at_least(
            self,
            (
                "max_body_bytes",
                "max_batch_size",
                "max_text_chars",
                "max_concurrency",
                "micro_batch_size",
                "max_tokens",
            ),
            1,
        )
        for name in ("micro_batch_wait_ms", "max_temperature"):
            if getattr(self, name) < 0:
                raise ConfigError("", field=name, expected="a number >= 0", got=getattr(self, name))
        if not 0 <= self.min_confidence <= 1:
            raise ConfigError("", field="min_confidence", expected="a probability in [0, 1]", got=self.min_confidence)
        if self.request_timeout_s <= 0:
            raise ConfigError("", field="request_timeout_s", expected="a number > 0", got=self.request_timeout_s)
