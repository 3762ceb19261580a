"""The data stage pipeline: labeled text in, validated chain-of-thought ChatML out.

Usage: ``finsent data --config recipes/tiny-cpu.yaml`` or ``build_dataset(load_config("tiny-cpu"))``.
Steps: read sources (anonymized when ``data.anonymize``) -> check inputs -> dedup (before the split) -> balance ->
teacher -> validate -> split -> write. For the ``instruct`` task (free-form answers) the teacher is replaced by the
length filter and the task-type mixture: the dataset's answer is the assistant turn.
"""

from __future__ import annotations

import hashlib
import logging
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from datasets import load_dataset
from huggingface_hub import HfApi

from finsent.anonymize import anonymize_text
from finsent.checks import validate_recipe
from finsent.completion import parse_completion
from finsent.config import RecipeConfig, SourceConfig, config_hash, dump_config
from finsent.data.balance import balance_examples, label_counts, stratified_split, upsample
from finsent.data.card import SOURCE_LICENSES, data_metrics, plot_data_summary, render_card
from finsent.data.chatml import ReasonedExample, instruct_to_chatml, to_chatml
from finsent.data.dedup import deduplicate, find_contamination
from finsent.data.instruct import filter_by_length, mix_examples
from finsent.data.readers import Example, InstructExample, RowErrors, anonymize_examples
from finsent.data.reasoning import ReasoningResult, generate_reasoning
from finsent.data.sources import load_source
from finsent.data.validate import validate_input
from finsent.errors import ConfigError, DataError
from finsent.io import atomic_write_json, atomic_write_jsonl, atomic_write_text
from finsent.tasks import Task
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
    validate_recipe(cfg, ["data"])
    data, task = cfg.data, cfg.get_task()
    out = Path(data.output_dir)
    atomic_write_text(out / "config.yaml", dump_config(cfg))
    errors = RowErrors(data.on_error)

    examples: list[Example] = []
    source_reports = []
    for i, source in enumerate(data.sources):
        rows = read_source(source, errors, task.use_anonymizer)
        check_source_task(rows, task, cfg, i)
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
    if not checked:
        rejected = ", ".join(f"{reason} {n}" for reason, n in input_rejections.most_common()) or "no rows"
        raise DataError(
            f"no usable rows in {', '.join(str(s.path or s.name) for s in data.sources)} ({rejected}); "
            "see data.validation for the limits",
            field="data.sources",
        )

    deduped = deduplicate(checked, data.dedup, seed=data.seed)
    unique = deduped.kept
    decontaminated = 0
    if data.dedup.decontaminate:
        reference = [ex.text for src in data.dedup.decontaminate for ex in load_source(src, errors)]
        contamination = find_contamination(unique, reference, data.dedup)
        unique = [ex for ex in unique if ex.id not in contamination.ids]
        decontaminated = len(contamination.ids)

    instruct: dict[str, Any] | None = None
    if task.labels is None:
        selected, instruct = select_instructions([ex for ex in unique if isinstance(ex, InstructExample)], cfg)
        unique = list(selected)

    balanced = balance_examples(unique, data.balance, data.seed)
    reasoning: ReasoningResult | None = None
    kept: list[Example] = list(balanced)
    if task.labels is not None:
        reasoning = generate_reasoning(balanced, data.teacher, task, data.validation, generations_path(cfg))
        records = reasoning.records
        kept = [
            ReasonedExample(ex.id, ex.text, ex.label, ex.source, ex.meta, completion=records[ex.id].completion)
            for ex in balanced
            if records[ex.id].status == "kept"
        ]
        if not kept:
            raise DataError(
                f"the teacher kept none of {len(balanced)} examples ({dict(reasoning.counts)}); "
                f"each record and its reason is in {generations_path(cfg)}",
                field="data.teacher",
            )
    splits = stratified_split(kept, data.split, data.seed)
    if data.balance.upsample_train:
        splits["train"] = upsample(splits["train"], data.seed)

    paths = {}
    for name in SPLITS:
        rows = (
            instruct_to_chatml(ex, task.prompt) if isinstance(ex, InstructExample) else to_chatml(ex, task.prompt)
            for ex in splits[name]
        )
        paths[name] = str(atomic_write_jsonl(out / f"{name}.jsonl", rows))

    failed = reasoning.counts.get("failed", 0) if reasoning else 0
    report = {
        "task": task.name,
        "anonymized": bool(data.anonymize),
        "sources": source_reports,
        "skipped_rows": dict(errors.counts),
        "skipped_samples": [task.anonymize(s) for s in errors.samples],
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
        "teacher": teacher_report(cfg, reasoning, len(kept)),
        "instruct": instruct,
        "prompt": {"system": cfg.prompt.system, "user_template": cfg.prompt.user_template},
        "funnel": {
            "rows read": sum(s["rows_read"] for s in source_reports) + sum(errors.counts.values()),
            "skipped as bad rows": sum(errors.counts.values()),
            "rejected inputs": sum(input_rejections.values()),
            "duplicates removed": deduped.removed_exact + deduped.removed_near + deduped.conflicting_labels,
            "decontaminated": decontaminated,
            **({} if instruct is None else instruct_funnel(instruct, data.max_tokens)),
            "dropped to balance": len(unique) - len(balanced),
            **({} if reasoning is None else {"sent to teacher": len(balanced), "kept with reasoning": len(kept)}),
            "written": sum(len(rows) for rows in splits.values()),
        },
        "splits": {name: label_counts(splits[name]) for name in SPLITS},
        "reasoning_words_mean": round(sum(_words(ex) for ex in kept) / max(len(kept), 1), 1),
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


def read_source(source: SourceConfig, errors: RowErrors, use_anonymizer: bool) -> list[Example]:
    """Read one source; with ``use_anonymizer``, mask personal data in its texts and in the errors it raises."""
    if not use_anonymizer:
        return load_source(source, errors)
    try:
        rows = load_source(source, errors)
    except DataError as err:
        raise DataError(anonymize_text(str(err))) from None  # the cause would repeat the unmasked row
    return anonymize_examples(rows)


def check_source_task(rows: list[Example], task: Task, cfg: RecipeConfig, index: int) -> None:
    """Fail when a source's rows do not fit the task: labels outside its set, or labels where instructions go."""
    path, line = cfg.locate(f"data.sources.{index}")
    field = f"data.sources.{index}.name"
    name = cfg.data.sources[index].name
    is_instruct = [isinstance(ex, InstructExample) for ex in rows]
    if task.labels is None:
        if not all(is_instruct):
            raise ConfigError(
                f"source {name} gives labeled text, not instructions",
                path=path,
                line=line,
                field=field,
                expected="a source of instructions (instruct) with task: instruct",
                got=name,
            )
        return
    if any(is_instruct):
        raise ConfigError(
            f"source {name} gives instructions, not labeled text",
            path=path,
            line=line,
            field=field,
            expected=f"a source of {task.name} labels, or task: instruct",
            got=name,
        )
    unknown = sorted({ex.label for ex in rows} - set(task.labels))
    if unknown:
        raise ConfigError(
            f"source {name} gives labels outside task {task.name}",
            path=path,
            line=line,
            field=field,
            expected="|".join(task.labels),
            got=unknown,
        )


def select_instructions(
    examples: list[InstructExample], cfg: RecipeConfig
) -> tuple[list[InstructExample], dict[str, Any]]:
    """Drop conversations of ``data.max_tokens`` or more, then sample the mixture; return them and the report's
    ``instruct`` section."""
    data = cfg.data
    length = filter_by_length(examples, cfg.prompt, data.max_tokens, data.tokenizer)
    section: dict[str, Any] = {
        "length_filter": {
            "max_tokens": length.max_tokens,
            "counted_with": length.counted_with,
            "removed": length.removed,
            "longest_kept": length.longest_kept,
        },
        "mixture": None,
    }
    if data.mixture is None:
        return length.kept, section
    mixture = mix_examples(length.kept, data.mixture, data.seed)
    section["mixture"] = {"total": data.mixture.total, "task_types": mixture.counts, "left_out": mixture.left_out}
    return mixture.kept, section


def teacher_report(cfg: RecipeConfig, reasoning: ReasoningResult | None, kept: int) -> dict[str, Any]:
    """Return the report's teacher section; without a teacher (instructions) the dataset's answers are kept."""
    if reasoning is None:
        return {
            "name": "none",
            "mode": None,
            "model": None,
            "kept": kept,
            "rejected": 0,
            "failed": 0,
            "rejections": {},
            "prompt_tokens": 0,
            "completion_tokens": 0,
            "seconds": 0.0,
            "examples_per_s": 0.0,
        }
    teacher = cfg.data.teacher
    return {
        "name": teacher.name,
        "mode": teacher.mode,
        "model": teacher.model,
        "kept": reasoning.counts.get("kept", 0),
        "rejected": reasoning.counts.get("rejected", 0),
        "failed": reasoning.counts.get("failed", 0),
        "rejections": dict(reasoning.rejections),
        "prompt_tokens": reasoning.prompt_tokens,
        "completion_tokens": reasoning.completion_tokens,
        "seconds": round(reasoning.seconds, 2),
        "examples_per_s": round(reasoning.examples_per_s, 2),
    }


def instruct_funnel(instruct: dict[str, Any], max_tokens: int) -> dict[str, int]:
    """Return the funnel steps of instructions: too long, and left out by the mixture (not sampled)."""
    mixture = instruct["mixture"]
    left_out = 0
    if mixture is not None:
        counts = mixture["task_types"].values()
        left_out = sum(mixture["left_out"].values()) + sum(c["available"] - c["kept"] for c in counts)
    return {f"{max_tokens}+ tokens": instruct["length_filter"]["removed"], "left out by the mixture": left_out}


def _words(example: Example) -> int:
    """Return the words of what the assistant says: the reasoning of a completion, or an instruction's answer."""
    if isinstance(example, InstructExample):
        return len(example.answer.split())
    if isinstance(example, ReasonedExample):
        return len(parse_completion(example.completion).reasoning.split())
    return 0


def generations_path(cfg: RecipeConfig) -> Path:
    """Return the teacher log for this teacher, prompt and validation, so another teacher never reuses its records
    while a changed split or balance still does."""
    key = ":".join(config_hash(part) for part in (cfg.data.teacher, cfg.prompt, cfg.data.validation))
    return Path(cfg.data.output_dir) / f"generations-{hashlib.sha256(key.encode()).hexdigest()[:8]}.jsonl"


def push_dataset(output_dir: Path, repo_id: str) -> None:
    """Upload the three splits and the dataset card to the Hugging Face Hub as ``repo_id``."""

    files = {name: str(output_dir / f"{name}.jsonl") for name in SPLITS}
    load_dataset("json", data_files=files).push_to_hub(repo_id)
    HfApi().upload_file(
        path_or_fileobj=str(output_dir / "README.md"), path_in_repo="README.md", repo_id=repo_id, repo_type="dataset"
    )
    logger.info("pushed %s to the hub as %s", output_dir, repo_id)
