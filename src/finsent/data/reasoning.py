"""Teacher chain of thought for each example, validated, in a resumable JSONL file (one line per finished example).

Each example gets up to ``attempts_per_example`` rounds, the temperature rising by ``temperature_step`` each
round; a reply that fails validation goes to the next round, and after the last the example is ``rejected`` with
the last reason. An example whose requests fail after all HTTP retries is ``failed`` and is retried on the next
run; ``kept`` and ``rejected`` ones are skipped. A record is appended and flushed the moment it is final, so a kill
loses only the requests in flight. Usage: ``generate_reasoning(examples, cfg.data.teacher, cfg.get_task(),
cfg.data.validation, Path("generations.jsonl"))``.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import time
from collections import Counter
from collections.abc import Callable
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, get_args

from tqdm.auto import tqdm

from finsent.completion import PromptConfig, build_messages, parse_completion, render_completion
from finsent.config import TeacherConfig, ValidationConfig
from finsent.data.readers import Example
from finsent.data.teachers import Teacher, TeacherRequest, load_teacher
from finsent.data.validate import validate_completion
from finsent.errors import ConfigError, DataError
from finsent.io import atomic_write_jsonl, json_object, writing
from finsent.tasks import Task

logger = logging.getLogger(__name__)

Status = Literal["kept", "rejected", "failed"]


@dataclass(frozen=True)
class ReasoningRecord:
    """The final outcome for one example, as one JSONL line. ``completion`` is canonical when kept."""

    id: str
    status: Status
    reason: str | None
    completion: str | None
    attempts: int
    prompt_tokens: int
    completion_tokens: int
    teacher: str
    temperature: float


@dataclass(frozen=True)
class ReasoningResult:
    """One record per example id, counts by status and by rejection reason, tokens and speed of this run."""

    path: str
    records: dict[str, ReasoningRecord]
    counts: dict[str, int]
    rejections: dict[str, int]
    prompt_tokens: int
    completion_tokens: int
    seconds: float
    examples_per_s: float


_FIELDS = tuple(f.name for f in dataclasses.fields(ReasoningRecord))


def generate_reasoning(
    examples: list[Example],
    teacher_cfg: TeacherConfig,
    task: Task,
    validation: ValidationConfig,
    path: Path,
) -> ReasoningResult:
    """Have the teacher explain every example not already final in ``path`` (prompted and validated as ``task``
    says); return the records of ``examples``."""
    start = time.perf_counter()
    labels = task.labels or ()
    _check_teacher_config(teacher_cfg, labels)
    path = Path(path)
    records = read_records(path)
    by_id: dict[str, Example] = {}
    for ex in examples:
        by_id.setdefault(ex.id, ex)
    unique = list(by_id.values())
    todo = [ex for ex in unique if ex.id not in records or records[ex.id].status == "failed"]
    if todo:
        logger.info("reasoning: %d of %d examples to do (%s teacher)", len(todo), len(unique), teacher_cfg.name)
        path.parent.mkdir(parents=True, exist_ok=True)
        with (
            writing(path),  # a full disk names the log; the records before it stay, for a resume
            path.open("a", encoding="utf-8") as handle,
            tqdm(total=len(unique), initial=len(unique) - len(todo), desc="reasoning", unit="ex") as bar,
        ):

            def finish(record: ReasoningRecord) -> None:
                handle.write(json.dumps(dataclasses.asdict(record), ensure_ascii=False) + "\n")
                handle.flush()
                records[record.id] = record
                bar.update()

            _run_rounds(load_teacher(teacher_cfg), todo, teacher_cfg, task.prompt, validation, labels, finish)
        records = read_records(path)  # drops the lines that retried ids superseded
    seconds = time.perf_counter() - start
    final = {ex.id: records[ex.id] for ex in unique}
    result = ReasoningResult(
        path=str(path),
        records=final,
        counts=dict(Counter(r.status for r in final.values())),
        rejections=dict(Counter(r.reason for r in final.values() if r.status == "rejected" and r.reason)),
        prompt_tokens=sum(r.prompt_tokens for r in final.values()),
        completion_tokens=sum(r.completion_tokens for r in final.values()),
        seconds=seconds,
        examples_per_s=len(todo) / seconds if seconds > 0 else 0.0,
    )
    logger.info("reasoning: %s, rejections %s, in %.1fs", result.counts, result.rejections, seconds)
    return result


def _run_rounds(
    teacher: Teacher,
    examples: list[Example],
    cfg: TeacherConfig,
    prompt: PromptConfig,
    validation: ValidationConfig,
    labels: tuple[str, ...],
    finish: Callable[[ReasoningRecord], None],
) -> None:
    tokens = {ex.id: [0, 0] for ex in examples}
    pending = examples
    for round_index in range(cfg.attempts_per_example):
        temperature = round(cfg.temperature + round_index * cfg.temperature_step, 6)
        is_last = round_index == cfg.attempts_per_example - 1
        requests = [
            TeacherRequest(
                ex.id,
                build_teacher_messages(ex.text, ex.label, cfg, prompt),
                ex.text,
                ex.label if cfg.mode == "guided" else None,
            )
            for ex in pending
        ]
        retry: list[int] = []
        with closing(teacher.generate(requests, temperature)) as outputs:
            for index, output in outputs:
                ex = pending[index]
                used = tokens[ex.id]
                used[0] += output.prompt_tokens
                used[1] += output.completion_tokens
                outcome: tuple[Status, str | None, str | None]
                if output.text is None:
                    outcome = ("failed", output.error, None)
                elif (reason := validate_completion(output.text, ex.text, ex.label, validation, labels)) is None:
                    reasoning = parse_completion(output.text, labels).reasoning
                    outcome = ("kept", None, render_completion(reasoning, ex.label))
                elif is_last:
                    outcome = ("rejected", reason, output.text)
                else:
                    retry.append(index)
                    continue
                status, why, completion = outcome
                finish(ReasoningRecord(ex.id, status, why, completion, round_index + 1, *used, cfg.name, temperature))
        pending = [pending[i] for i in sorted(retry)]
        if not pending:
            break


def build_teacher_messages(
    text: str, gold_label: str, cfg: TeacherConfig, prompt: PromptConfig
) -> list[dict[str, str]]:
    """Return the student's system prompt, the few-shot turns, then the student's user message for ``text``.

    Guided mode appends ``cfg.guided_hint`` (naming the gold label) to every user message.
    """

    def user(shot_text: str, label: str) -> dict[str, str]:
        message = build_messages(shot_text, prompt)[1]
        if cfg.mode == "guided":
            return {"role": "user", "content": f"{message['content']}\n\n{cfg.guided_hint.format(label=label)}"}
        return message

    messages = [build_messages(text, prompt)[0]]
    for shot in cfg.few_shot:
        messages.append(user(shot["text"], shot["label"]))
        messages.append({"role": "assistant", "content": render_completion(shot["reasoning"], shot["label"])})
    messages.append(user(text, gold_label))
    return messages


def read_records(path: Path) -> dict[str, ReasoningRecord]:
    """Return the last record per id in ``path``, first rewriting it without a torn last line or superseded lines."""
    if not path.exists():
        return {}
    complete, _, tail = path.read_bytes().rpartition(b"\n")
    records: dict[str, ReasoningRecord] = {}
    n_lines = 0
    for line_no, line in enumerate(complete.split(b"\n") if complete else [], 1):
        if line.strip():
            record = _parse_record(line, path, line_no)
            records[record.id] = record
            n_lines += 1
    if tail:
        logger.warning("%s: dropping the unfinished last line (the previous run was killed mid-write)", path)
    if tail or n_lines != len(records):
        atomic_write_jsonl(path, (dataclasses.asdict(r) for r in records.values()))
    return records


def _parse_record(line: bytes, path: Path, line_no: int) -> ReasoningRecord:
    data = json_object(line, path, line_no)
    for name in _FIELDS:
        if name not in data:
            raise DataError("missing field", path=path, line=line_no, field=name)
    if data["status"] not in get_args(Status):
        raise DataError(
            "", path=path, line=line_no, field="status", expected="kept|rejected|failed", got=data["status"]
        )
    return ReasoningRecord(**{name: data[name] for name in _FIELDS})


def _check_teacher_config(cfg: TeacherConfig, labels: tuple[str, ...]) -> None:
    for i, shot in enumerate(cfg.few_shot):
        if shot["label"] not in labels:
            raise ConfigError("", field=f"teacher.few_shot.{i}.label", expected="|".join(labels), got=shot["label"])
    try:
        cfg.guided_hint.format(label=labels[0])
    except (KeyError, IndexError, ValueError) as err:
        raise ConfigError(
            "", field="teacher.guided_hint", expected="a template whose only field is {label}", got=cfg.guided_hint
        ) from err
