"""The export stage: merge (reload gate) -> GGUF BF16 + quantizations (read back, run) -> Modelfile -> size/quality
comparison -> model card -> optional hub upload.

Usage: ``finsent export --config recipes/x.yaml [--push user/repo]`` or ``export_model(load_config("x"))``;
``finsent export --model runs/x/grpo`` exports an adapter dir (or a model dir) alone.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

from transformers import AutoConfig, GenerationConfig

from finsent.calibration import CALIBRATION_FILE, calibration_file
from finsent.checks import validate_recipe
from finsent.config import EvalSetConfig, ExportConfig, ModelConfig, RecipeConfig, dump_config
from finsent.data.readers import RowErrors
from finsent.errors import ConfigError
from finsent.eval import read_test_set
from finsent.eval.protocols import apply_protocol
from finsent.export.compare import Artifact, compare_artifacts, write_comparison
from finsent.export.gguf import check_gguf_tools, convert_to_gguf, quantize_gguf, verify_gguf
from finsent.export.hub import build_model_card, push_export
from finsent.export.merge import check_merge, format_compliance, merge_adapter
from finsent.export.ollama import build_modelfile
from finsent.io import atomic_write_json, atomic_write_text
from finsent.modeling import adapter_base, load_tokenizer, resolve_device
from finsent.serve.backends import Messages
from finsent.tasks import Task

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ExportResult:
    """Where the export wrote the merged model, GGUFs, Modelfile, comparison and card, and what the checks found."""

    output_dir: str
    merged_dir: str
    gguf: dict[str, str]  # kind (BF16, Q8_0, ...) -> path
    modelfile: str | None
    paths: dict[str, str]
    gate: dict[str, Any] | None  # the GateReport; None when a full model (no adapter) was exported
    comparison: list[dict[str, Any]]
    pushed_to: str | None


def export_model(cfg: RecipeConfig) -> ExportResult:
    """Run the export stage of ``cfg`` and return where its outputs are."""
    validate_recipe(cfg, ["export"])
    ex, task = cfg.export, cfg.get_task()
    out = Path(str(ex.output_dir))
    model_path = str(ex.model)
    if not Path(model_path).is_dir():
        raise ConfigError(
            "", path=cfg.source_path, field="export.model", expected="an adapter or model dir", got=model_path
        )
    if ex.use_gguf:
        check_gguf_tools()  # before any model loads: a missing tool fails in a second, not after the merge
    test_set = held_out_set(cfg)
    split = apply_protocol(test_set, read_test_set(test_set, RowErrors("raise")))
    atomic_write_text(out / "config.yaml", dump_config(cfg))
    device = resolve_device(ex.device)
    prompts = [task.messages(row.text) for row in split.test[: ex.gate_prompts]]

    base_model = adapter_base(model_path)
    merged_dir = merge_adapter(model_path, out / "merged", dtype=ex.dtype, device=device)
    paths = {"config": str(out / "config.yaml"), "merged": str(merged_dir)}
    gate = None
    if base_model is not None:
        report = check_merge(
            model_path,
            merged_dir,
            prompts,
            task,
            atol=ex.gate_atol,
            rtol=ex.gate_rtol,
            max_new_tokens=ex.max_new_tokens,
            device=device,
        )
        gate = asdict(report)
        paths["gate"] = str(atomic_write_json(out / "gate.json", gate))
        merged_compliance = report.merged_compliance
    else:
        merged_compliance = format_compliance(
            merged_dir, prompts, task, max_new_tokens=ex.max_new_tokens, device=device
        )

    n_ctx = _context_length(merged_dir)
    ggufs: list[dict[str, Any]] = []
    modelfile = None
    if ex.use_gguf:
        ggufs = write_ggufs(ex, merged_dir, out / "gguf", prompts, task, merged_compliance, n_ctx)
        modelfile = str(write_modelfile(cfg, merged_dir, out, ggufs))
        paths["modelfile"] = modelfile

    paths.update(carry_calibration(Path(model_path), merged_dir, [g["path"] for g in ggufs]))

    comparison: list[dict[str, Any]] = []
    if ex.compare_examples:
        rows = replace(split, test=split.test[: ex.compare_examples], rest=[])
        artifacts = _artifacts(ex, merged_dir, ggufs, device, n_ctx)
        comparison = compare_artifacts(artifacts, rows, task, cfg.eval, out)
        paths.update(write_comparison(comparison, out))

    card = build_model_card(cfg, base_model=base_model, gate=gate, ggufs=ggufs, comparison=comparison)
    paths["model_card"] = str(atomic_write_text(out / "README.md", card))
    pushed_to = None
    if ex.push_to_hub:
        pushed_to = push_export(out, merged_dir, ex.push_to_hub, [g["path"] for g in ggufs])
    result = ExportResult(
        output_dir=str(out),
        merged_dir=str(merged_dir),
        gguf={g["kind"]: g["path"] for g in ggufs},
        modelfile=modelfile,
        paths=paths,
        gate=gate,
        comparison=comparison,
        pushed_to=pushed_to,
    )
    atomic_write_json(out / "result.json", {"stage": "export", **asdict(result), "gguf_checks": ggufs})
    return result


def carry_calibration(model_dir: Path, merged_dir: Path, gguf_paths: list[str]) -> dict[str, str]:
    """Copy the temperature eval saved beside the exported model to the merged model and each GGUF: they answer as
    it does (the gate checked the merge), so predict and serve find it beside whichever they load."""
    source = model_dir / CALIBRATION_FILE
    if not source.is_file():
        return {}
    text = source.read_text(encoding="utf-8")
    targets = [ModelConfig(path=str(merged_dir)), *(ModelConfig(path=p, backend="llamacpp") for p in gguf_paths)]
    return {
        f"calibration_{Path(target.path).name}": str(atomic_write_text(calibration_file(target), text))
        for target in targets
    }


def held_out_set(cfg: RecipeConfig) -> EvalSetConfig:
    """The rows the gate and comparison use: export.eval_file, else the data stage's test.jsonl, else demo rows."""
    ex = cfg.export
    n = max(ex.compare_examples, ex.gate_prompts)
    path = Path(ex.eval_file or Path(str(cfg.data.output_dir)) / "test.jsonl")
    if path.is_file():
        return EvalSetConfig(name="jsonl", path=str(path), max_rows=n, display_name=f"held-out {path.name}")
    if ex.eval_file:
        raise ConfigError(
            "", path=cfg.source_path, field="export.eval_file", expected="a JSONL file", got=ex.eval_file
        )
    logger.warning(
        "%s not found: the gate and comparison use %d synthetic demo headlines (never report them)", path, n
    )
    return EvalSetConfig(name="demo", num_examples=n, display_name="demo (synthetic)")


def write_ggufs(
    ex: ExportConfig,
    merged_dir: Path,
    gguf_dir: Path,
    prompts: list[Messages],
    task: Task,
    merged_compliance: float,
    n_ctx: int,
) -> list[dict[str, Any]]:
    """Convert the merged model to the unquantized GGUF, quantize it, and read back and run every file."""
    check = {
        "tokenizer": load_tokenizer(str(merged_dir)),
        "prompts": prompts,
        "task": task,
        "max_new_tokens": ex.max_new_tokens,
        "n_ctx": n_ctx,
        "min_compliance": max(0.0, merged_compliance - ex.gguf_max_compliance_drop),
    }
    base_kind = ex.gguf_outtype.upper()
    base = convert_to_gguf(merged_dir, gguf_dir / f"{ex.name}-{base_kind}.gguf", ex.gguf_outtype)
    files = [verify_gguf(base, base_kind, architecture=None, **check)]
    for kind in ex.quantizations:
        path = quantize_gguf(base, gguf_dir / f"{ex.name}-{kind}.gguf", kind)
        files.append(verify_gguf(path, kind, architecture=files[0].architecture, **check))
    return [asdict(f) for f in files]


def write_modelfile(cfg: RecipeConfig, merged_dir: Path, out: Path, ggufs: list[dict[str, Any]]) -> Path:
    """Write the Ollama Modelfile next to ``gguf/``, pointing at the ``export.ollama_gguf`` file."""
    tokenizer = load_tokenizer(str(merged_dir))
    try:
        eos = GenerationConfig.from_pretrained(merged_dir).eos_token_id
    except OSError:  # no generation_config.json: the tokenizer's eos token is the only stop
        eos = None
    eos_ids = [] if eos is None else [eos] if isinstance(eos, int) else list(eos)
    gguf = next(g for g in ggufs if g["kind"] == cfg.export.ollama_gguf)
    text = build_modelfile(
        cfg.export.name,
        f"./{Path(gguf['path']).relative_to(out).as_posix()}",
        tokenizer,
        cfg.prompt,
        cfg.export.ollama_parameters,
        eos_ids,
    )
    return atomic_write_text(out / "Modelfile", text)


def _artifacts(
    ex: ExportConfig, merged_dir: Path, ggufs: list[dict[str, Any]], device: str, n_ctx: int
) -> list[Artifact]:
    dtype = str(AutoConfig.from_pretrained(merged_dir).dtype).removeprefix("torch.")
    size = sum(p.stat().st_size for p in merged_dir.glob("*.safetensors"))
    merged = ModelConfig(path=str(merged_dir), device=device, max_new_tokens=ex.max_new_tokens)
    artifacts = [Artifact(f"merged-{dtype}", merged, size)]
    for g in ggufs:
        model = ModelConfig(path=g["path"], backend="llamacpp", max_new_tokens=ex.max_new_tokens, n_ctx=n_ctx)
        artifacts.append(Artifact(g["kind"], model, g["size_bytes"]))
    return artifacts


def _context_length(model_dir: Path) -> int:
    # llama.cpp sizes its KV cache by n_ctx: 4096 is plenty for a prompt and a short answer.
    return min(4096, getattr(AutoConfig.from_pretrained(model_dir), "max_position_embeddings", 4096))
