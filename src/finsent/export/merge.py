"""Merge a LoRA adapter into its base with PEFT, save it, and gate the merge on a reload.

The gate reloads the saved model from disk and compares it with the adapter model on held-out prompts: the logits
must agree within a tolerance and so must format compliance. A merge that silently did nothing, or a saved model
that lost its tied embeddings, fails here instead of shipping.
"""

from __future__ import annotations

import gc
import logging
import os
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from transformers import AutoConfig

from finsent.config import ModelConfig
from finsent.errors import ConfigError, FinsentError
from finsent.modeling import Dtype, adapter_base, load_model, load_tokenizer
from finsent.serve.backends import Messages, TransformersBackend, load_transformers
from finsent.tasks import Task

logger = logging.getLogger(__name__)


class ReloadGateError(FinsentError):
    """The merged model, reloaded from disk, does not behave like the adapter model it came from."""


@dataclass(frozen=True)
class GateReport:
    """How closely the reloaded merged model follows the adapter model on the gate prompts."""

    num_prompts: int
    max_abs_diff: float  # largest |merged - adapter| logit over every prompt position
    tolerance: float  # atol + rtol * largest |adapter logit|
    adapter_effect: float  # largest |adapter - base| logit: how far the adapter moves the model
    adapter_compliance: float
    merged_compliance: float
    is_passed: bool


def merge_adapter(
    adapter_dir: str | Path, output_dir: str | Path, *, dtype: Dtype = "auto", device: str = "cpu"
) -> Path:
    """Merge the LoRA adapter in ``adapter_dir`` into its base (in float32) and save safetensors, tokenizer and
    chat template to ``output_dir`` in ``dtype`` (auto: the base model's); a model dir that is no adapter is
    saved as it is."""
    output_dir = Path(output_dir)
    base = adapter_base(str(adapter_dir))
    save_dtype = (
        getattr(torch, dtype)
        if dtype != "auto"
        else AutoConfig.from_pretrained(base or adapter_dir).dtype or torch.float32
    )
    model = load_model(str(adapter_dir), dtype="float32", device=device)
    is_adapter = base is not None
    if is_adapter:
        # safe_merge checks the merged weights for NaNs before they replace the base's.
        model = model.merge_and_unload(safe_merge=True)
    tokenizer = load_tokenizer(str(adapter_dir))
    if not tokenizer.chat_template:
        raise ConfigError("the tokenizer has no chat template", path=adapter_dir, field="chat_template")
    tmp = output_dir.with_name(output_dir.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    model.to(save_dtype).save_pretrained(tmp)
    tokenizer.save_pretrained(tmp)
    shutil.rmtree(output_dir, ignore_errors=True)
    os.replace(tmp, output_dir)
    del model
    gc.collect()
    logger.info("%s: %s saved in %s", output_dir, "merged" if is_adapter else "model", save_dtype)
    return output_dir


def check_merge(
    adapter_dir: str | Path,
    merged_dir: str | Path,
    prompts: Sequence[Messages],
    task: Task,
    *,
    atol: float,
    rtol: float,
    max_new_tokens: int,
    device: str = "auto",
) -> GateReport:
    """Reload ``merged_dir`` and compare it with the adapter model on ``prompts``; raise ReloadGateError when the
    logits differ by more than ``atol + rtol * max|adapter logit|`` or fewer answers follow the task's format."""

    def backend(path: str | Path) -> TransformersBackend:
        # float32 for both, so the comparison sees only the merge and the saved dtype's rounding.
        cfg = ModelConfig(
            path=str(path), dtype="float32", device=device, max_new_tokens=max_new_tokens, batch_size=len(prompts)
        )
        return load_transformers(cfg)

    adapter = backend(adapter_dir)
    adapter_logits = prompt_logits(adapter, prompts)
    with adapter.model.disable_adapter():
        base_logits = prompt_logits(adapter, prompts)
    adapter_ok = _compliance(adapter, prompts, task)
    del adapter
    gc.collect()
    merged = backend(merged_dir)
    merged_logits = prompt_logits(merged, prompts)
    merged_ok = _compliance(merged, prompts, task)
    del merged
    gc.collect()

    def largest(values: list[torch.Tensor]) -> float:
        return max(float(v.abs().max()) for v in values)

    diff = largest([m - a for m, a in zip(merged_logits, adapter_logits, strict=True)])
    effect = largest([a - b for a, b in zip(adapter_logits, base_logits, strict=True)])
    tolerance = atol + rtol * largest(adapter_logits)
    report = GateReport(len(prompts), diff, tolerance, effect, adapter_ok, merged_ok, diff <= tolerance)
    if not report.is_passed:
        raise ReloadGateError(
            f"{merged_dir}: reload gate: the merged model's logits differ from the adapter model's by {diff:.4g} "
            f"(tolerance {tolerance:.4g}; the adapter moves them {effect:.4g} from the base) on {len(prompts)} "
            "held-out prompts: the merge did not take, or weights such as tied embeddings were lost on saving"
        )
    if merged_ok != adapter_ok:
        raise ReloadGateError(
            f"{merged_dir}: reload gate: format compliance {merged_ok:.0%} after the merge, {adapter_ok:.0%} with the "
            f"adapter, on {len(prompts)} held-out prompts"
        )
    logger.info(
        "reload gate passed: max logit diff %.3g <= %.3g (adapter effect %.3g), format %.0f%%",
        diff,
        tolerance,
        effect,
        merged_ok * 100,
    )
    return report


def prompt_logits(backend: TransformersBackend, prompts: Sequence[Messages]) -> list[torch.Tensor]:
    """Return the float32 logits at every position of each chat-templated prompt, one prompt at a time (no padding)."""
    logits = []
    with torch.inference_mode():
        for prompt in prompts:
            ids = backend.tokenizer(backend.render(prompt), return_tensors="pt", add_special_tokens=False)
            logits.append(backend.model(**ids.to(backend.model.device)).logits[0].float().cpu())
    return logits


def format_compliance(
    model_dir: str | Path, prompts: Sequence[Messages], task: Task, *, max_new_tokens: int, device: str = "auto"
) -> float:
    """Return the share of ``prompts`` the model in ``model_dir`` answers in the task's format (greedy)."""
    cfg = ModelConfig(path=str(model_dir), device=device, max_new_tokens=max_new_tokens, batch_size=len(prompts))
    return _compliance(load_transformers(cfg), prompts, task)


def _compliance(backend: TransformersBackend, prompts: Sequence[Messages], task: Task) -> float:
    completions = backend.complete(prompts)
    return sum(task.parse(c.text).is_format_ok for c in completions) / len(prompts)
