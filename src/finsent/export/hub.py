"""The model card (data, training, gate, comparison, usage) and the upload of an export to the Hugging Face Hub."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from huggingface_hub import CommitOperationAdd, HfApi
from huggingface_hub.errors import HfHubHTTPError

from finsent.completion import PromptConfig
from finsent.config import RecipeConfig
from finsent.errors import FinsentError
from finsent.export.compare import comparison_markdown, format_size

logger = logging.getLogger(__name__)


def build_model_card(
    cfg: RecipeConfig,
    *,
    base_model: str | None,
    gate: dict[str, Any] | None,
    ggufs: list[dict[str, Any]],
    comparison: list[dict[str, Any]],
) -> str:
    """Return README.md for the export: what the model does, its data, training, gate, comparison and usage."""
    name = cfg.export.name
    front = ["---", "library_name: transformers", "pipeline_tag: text-generation"]
    if base_model:
        front.append(f"base_model: {json.dumps(base_model)}")
    front += ["tags: [finsent, financial-sentiment, gguf, ollama, lora]", "---", ""]
    lines = [
        *front,
        f"# {name}",
        "",
        "A small LLM that labels the sentiment of financial text for an investor and explains itself, answering "
        "`<reasoning>...</reasoning><answer>positive|negative|neutral</answer>`. Built with finsent "
        "(data -> SFT -> GRPO -> export).",
        "",
        *_data_section(Path(cfg.data.output_dir)),
        *_training_section(cfg),
        "## Reload gate",
        "",
    ]
    if gate:
        lines.append(
            f"The merged model, reloaded from disk, matched the adapter model on {gate['num_prompts']} held-out "
            f"prompts: largest logit difference {gate['max_abs_diff']:.3g} (tolerance {gate['tolerance']:.3g}; the "
            f"adapter moves logits by {gate['adapter_effect']:.3g}), format compliance "
            f"{gate['merged_compliance']:.0%} both ways."
        )
    else:
        lines.append("The export started from a full model, not an adapter: nothing was merged.")
    lines += ["", "## Size against quality", ""]
    if comparison:
        lines += [comparison_markdown(comparison), "![size against quality](comparison.png)", ""]
    else:
        lines += ["Not measured (export.compare_examples: 0).", ""]
    if ggufs:
        lines += ["## Files", "", "| file | type | size |", "|:---|:---|---:|"]
        lines += [f"| `gguf/{Path(g['path']).name}` | {g['kind']} | {format_size(g['size_bytes'])} |" for g in ggufs]
        lines.append("")
    recommended = next((Path(g["path"]).name for g in ggufs if g["kind"] == cfg.export.ollama_gguf), None)
    lines += _usage_section(name, cfg.prompt, recommended)
    return "\n".join(lines)


def push_export(out_dir: str | Path, merged_dir: str | Path, repo_id: str, gguf_paths: list[str]) -> str:
    """Upload the merged model (at the repo root), GGUFs, Modelfile, card and comparison in one commit; return the
    repo URL. The token comes from ``HF_TOKEN`` or ``huggingface-cli login``."""
    out_dir, merged_dir = Path(out_dir), Path(merged_dir)
    files = {path.name: path for path in sorted(merged_dir.iterdir()) if path.is_file()}
    files.update({f"gguf/{Path(p).name}": Path(p) for p in gguf_paths})
    for name in ("README.md", "Modelfile", "comparison.md", "comparison.json", "comparison.png", "gate.json"):
        if (out_dir / name).is_file():
            files[name] = out_dir / name
    api = HfApi()
    try:
        url = api.create_repo(repo_id, repo_type="model", exist_ok=True)
        api.create_commit(
            repo_id,
            [CommitOperationAdd(path_in_repo=name, path_or_fileobj=str(path)) for name, path in files.items()],
            commit_message="finsent export",
            repo_type="model",
        )
    except (HfHubHTTPError, OSError, ValueError) as err:
        raise FinsentError(f"cannot upload {out_dir} to the hub repo {repo_id!r} ({err})") from err
    logger.info("uploaded %d files to %s", len(files), url)
    return str(url)


def _data_section(data_dir: Path) -> list[str]:
    report = _read_json(data_dir / "report.json")
    if not report:
        return []
    splits: dict[str, dict[str, int]] = report.get("splits", {})
    labels = sorted({label for counts in splits.values() for label in counts})
    lines = ["## Data", "", "| split | " + " | ".join(labels) + " | total |", "|:---|" + "---:|" * (len(labels) + 1)]
    for split, counts in splits.items():
        cells = [str(counts.get(label, 0)) for label in labels]
        lines.append(f"| {split} | " + " | ".join(cells) + f" | {sum(counts.values())} |")
    sources = [s.get("name", "?") for s in report.get("sources", []) if isinstance(s, dict)]
    if sources:
        lines += ["", f"Sources: {', '.join(sources)}."]
    return [*lines, ""]


def _training_section(cfg: RecipeConfig) -> list[str]:
    lines = []
    for stage, out in (("SFT", cfg.sft.output_dir), ("GRPO", cfg.grpo.output_dir)):
        result = _read_json(Path(str(out)) / "result.json")
        metrics = {k: v for k, v in (result or {}).get("metrics", {}).items() if isinstance(v, int | float)}
        if metrics:
            lines.append(f"- {stage}: " + ", ".join(f"{k} {v:.4g}" for k, v in sorted(metrics.items())))
    return ["## Training", "", *lines, ""] if lines else []


def _usage_section(name: str, prompt: PromptConfig, recommended_gguf: str | None) -> list[str]:
    example = prompt.user_template.format(text="Net sales rose 12% to EUR 85 million.")
    lines = [
        "## Use",
        "",
        "```bash",
        "finsent serve --model .   # HTTP: POST /v1/sentiment, /v1/chat/completions, a web page at /",
        f"finsent predict --model . {json.dumps(example)}",
    ]
    if recommended_gguf:
        lines += [
            f"ollama create {name} -f Modelfile",
            f"ollama run {name} {json.dumps(example)}",
            f"finsent predict --backend llamacpp --model gguf/{recommended_gguf} {json.dumps(example)}",
        ]
    lines += ["```", "", "System prompt (as in training):", "", "```text", prompt.system, "```", ""]
    return lines


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None
