"""The data stage pipeline: labeled text in, validated chain-of-thought ChatML out.

Usage: ``finsent data --config recipes/tiny-cpu.yaml`` or ``build_dataset(load_config("tiny-cpu"))``.
Steps: read sources -> check inputs -> dedup (before the split) -> balance -> teacher -> validate -> split -> write.
"""

from __future__ import annotations

import hashlib
import logging
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from finsent.completion import parse_completion
from finsent.config import RecipeConfig, config_hash, dump_config
from finsent.data.balance import balance_examples, label_counts, stratified_split, upsample
from finsent.data.card import SOURCE_LICENSES, data_metrics, plot_data_summary, render_card
from finsent.data.chatml import ReasonedExample, to_chatml
from finsent.data.dedup import deduplicate, find_contamination
from finsent.data.reasoning import generate_reasoning
from finsent.data.sources import Example, RowErrors, load_source
from finsent.data.validate import validate_input
from finsent.io import atomic_write_json, atomic_write_jsonl, atomic_write_text
from finsent.tracking import start_tracking

logger = logging.getLogger(__name__)

SPLITS = ("train", "validation", "test")


@dataclass(frozen=True)
class DataResult:
    """Where the data stage wrote its outputs, and the counts that matter."""

    output_dir: str
    paths: dict[str, str]
    counts: dict[str, int]
    report: dict[str, Any]


def build_dataset(cfg: RecipeConfig) -> DataResult:
    """Run the data stage of ``cfg`` and return where its outputs are."""
    data = cfg.data
    out = Path(data.output_dir)
    atomic_write_text(out / "config.yaml", dump_config(cfg))
    errors = RowErrors(data.on_error)

    examples: list[Example] = []
    source_reports = []
    for source in data.sources:
        rows = load_source(source, errors)
        source_reports.append(
            {
                "name": source.name,
                "path": source.path,
                "rows_read": len(rows),
                "labels": label_counts(rows),
                "license": SOURCE_LICENSES.get(source.name, "unknown: check the source"),
            }
        )
        examples.extend(rows)

    input_rejections: Counter[str] = Counter()
    checked = []
    for ex in examples:
        reason = validate_input(ex.text, data.validation)
        if reason:
            input_rejections[reason] += 1
        else:
            checked.append(ex)

    deduped = deduplicate(checked, data.dedup, seed=data.seed)
    unique = deduped.kept
    decontaminated = 0
    if data.dedup.decontaminate:
        reference = [ex.text for src in data.dedup.decontaminate for ex in load_source(src, errors)]
        contamination = find_contamination(unique, reference, data.dedup)
        unique = [ex for ex in unique if ex.id not in contamination.ids]
        decontaminated = len(contamination.ids)

    balanced = balance_examples(unique, data.balance, data.seed)
    reasoning = generate_reasoning(balanced, data.teacher, cfg.prompt, data.validation, generations_path(cfg))
    kept = [
        ReasonedExample(ex.id, ex.text, ex.label, ex.source, ex.meta, completion=reasoning.records[ex.id].completion)
        for ex in balanced
        if reasoning.records[ex.id].status == "kept"
    ]
    splits = stratified_split(kept, data.split, data.seed)
    if data.balance.upsample_train:
        splits["train"] = upsample(splits["train"], data.seed)

    paths = {}
    for name in SPLITS:
        paths[name] = str(
            atomic_write_jsonl(out / f"{name}.jsonl", (to_chatml(ex, cfg.prompt) for ex in splits[name]))
        )

    failed = reasoning.counts.get("failed", 0)
    report = {
        "sources": source_reports,
        "skipped_rows": dict(errors.counts),
        "skipped_samples": errors.samples,
        "filtered_rows": dict(errors.filtered),
        "input_rejections": dict(input_rejections),
        "dedup": {
            "removed_exact": deduped.removed_exact,
            "removed_near": deduped.removed_near,
            "conflicting_labels": deduped.conflicting_labels,
            "decontaminated": decontaminated,
            "threshold": data.dedup.threshold if data.dedup.use_near else None,
        },
        "balance": {
            "strategy": data.balance.strategy,
            "before": label_counts(unique),
            "after": label_counts(balanced),
            "upsample_train": data.balance.upsample_train,
        },
        "teacher": {
            "name": data.teacher.name,
            "mode": data.teacher.mode,
            "model": data.teacher.model,
            "kept": reasoning.counts.get("kept", 0),
            "rejected": reasoning.counts.get("rejected", 0),
            "failed": failed,
            "rejections": dict(reasoning.rejections),
            "prompt_tokens": reasoning.prompt_tokens,
            "completion_tokens": reasoning.completion_tokens,
            "seconds": round(reasoning.seconds, 2),
            "examples_per_s": round(reasoning.examples_per_s, 2),
        },
        "prompt": {"system": cfg.prompt.system, "user_template": cfg.prompt.user_template},
        "funnel": {
            "rows read": sum(s["rows_read"] for s in source_reports) + sum(errors.counts.values()),
            "skipped as bad rows": sum(errors.counts.values()),
            "rejected inputs": sum(input_rejections.values()),
            "duplicates removed": deduped.removed_exact + deduped.removed_near + deduped.conflicting_labels,
            "decontaminated": decontaminated,
            "dropped to balance": len(unique) - len(balanced),
            "sent to teacher": len(balanced),
            "kept with reasoning": len(kept),
            "written": sum(len(rows) for rows in splits.values()),
        },
        "splits": {name: label_counts(splits[name]) for name in SPLITS},
        "reasoning_words_mean": round(
            sum(len(parse_completion(ex.completion).reasoning.split()) for ex in kept) / max(len(kept), 1), 1
        ),
    }
    paths["report"] = str(atomic_write_json(out / "report.json", report))
    paths["card"] = str(atomic_write_text(out / "README.md", render_card(report)))
    paths["plot"] = str(plot_data_summary(report, out / "data_summary.png"))
    tracker = start_tracking(cfg.tracking, out)
    tracker.log(data_metrics(report), step=0)
    tracker.finish()
    if failed:
        logger.warning("%d examples failed after retries; run the same command again to retry them", failed)
    if data.push_to_hub:
        push_dataset(out, data.push_to_hub)
    counts = {
        "read": report["funnel"]["rows read"],
        "kept": len(kept),
        "failed": failed,
        **{name: len(splits[name]) for name in SPLITS},
    }
    result = DataResult(str(out), paths, counts, report)
    atomic_write_json(out / "result.json", {"stage": "data", "paths": paths, "counts": counts})
    return result


def generations_path(cfg: RecipeConfig) -> Path:
    """Return the teacher log for this teacher, prompt and validation, so another teacher never reuses its records
    while a changed split or balance still does."""
    key = ":".join(config_hash(part) for part in (cfg.data.teacher, cfg.prompt, cfg.data.validation))
    return Path(cfg.data.output_dir) / f"generations-{hashlib.sha256(key.encode()).hexdigest()[:8]}.jsonl"


def push_dataset(output_dir: Path, repo_id: str) -> None:
    """Upload the three splits and the dataset card to the Hugging Face Hub as ``repo_id``."""
    from datasets import load_dataset
    from huggingface_hub import HfApi

    files = {name: str(output_dir / f"{name}.jsonl") for name in SPLITS}
    load_dataset("json", data_files=files).push_to_hub(repo_id)
    HfApi().upload_file(
        path_or_fileobj=str(output_dir / "README.md"), path_in_repo="README.md", repo_id=repo_id, repo_type="dataset"
    )
    logger.info("pushed %s to the hub as %s", output_dir, repo_id)
