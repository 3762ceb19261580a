"""Predictions over texts and files: the student prompt in, the parsed label, its probability and reasoning out.

``predict_file`` streams a CSV or JSONL file to JSONL in batches with a progress bar, appending one line per row
keyed by its id, so a rerun after a crash skips what is done. Evaluation predicts through the same function.
"""

from __future__ import annotations

import csv
import hashlib
import json
import logging
import re
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from tqdm.auto import tqdm

from finsent.calibration import (
    ABSTAIN,
    UNCALIBRATED,
    Calibration,
    apply_temperature,
    confidence_of,
    load_calibration,
    should_abstain,
)
from finsent.completion import ParseStatus, PromptConfig
from finsent.config import ModelConfig, dump_config
from finsent.errors import DataError
from finsent.io import atomic_write_text, json_object, writing
from finsent.serve.backends import Backend, Completion, Sampling
from finsent.tasks import Task

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Prediction:
    """One row of a predictions file: the parsed answer, the raw reply and what it cost."""

    id: str
    text: str
    label: str | None
    reasoning: str
    raw: str
    status: ParseStatus
    issue: str | None
    latency_ms: float
    completion_tokens: int
    wall_ms: float  # this row's share of its batch's wall-clock time: sums to the time spent generating
    probabilities: dict[str, float] | None = None  # each label's, calibrated where a temperature was applied
    confidence: float | None = None  # the probability of the model's label
    model_label: str | None = None  # the model's own answer; label says "abstain" where it was not sure enough


@dataclass(frozen=True)
class PredictResult:
    """Where predictions went and how many were made now or found from an earlier run."""

    output_path: str
    predictions: list[Prediction]
    num_new: int
    num_resumed: int


@dataclass(frozen=True)
class Confidence:
    """How predictions treat label probabilities: score them or not, the temperature, and when to abstain."""

    use_probabilities: bool = True
    calibration: Calibration = UNCALIBRATED
    min_confidence: float = 0.0  # below it the label is "abstain"; 0 never abstains


def confidence_for(model: ModelConfig, min_confidence: float = 0.0) -> Confidence:
    """Return label scoring with the calibration saved beside ``model`` (or named by it) and the threshold below
    which to abstain."""
    return Confidence(calibration=load_calibration(model), min_confidence=min_confidence)


@dataclass(frozen=True)
class Answer:
    """What a completion answers: the label reported (a task label, ``abstain`` or None), the model's own label,
    the reasoning, the parse status and how sure the model is."""

    label: str | None
    model_label: str | None
    reasoning: str
    status: ParseStatus
    issue: str | None
    probabilities: dict[str, float] | None
    confidence: float | None


def label_sampling(task: Task, confidence: Confidence) -> Sampling:
    """Return greedy sampling that scores the task's labels where ``confidence`` uses probabilities."""
    return Sampling(score_labels=task.labels if task.labels and confidence.use_probabilities else ())


def read_answer(completion: Completion, task: Task, confidence: Confidence) -> Answer:
    """Parse ``completion`` as ``task`` says, apply the temperature to its label probabilities and abstain where
    the model's label is less likely than ``confidence.min_confidence``."""
    parsed = task.parse(completion.text)
    probabilities = completion.label_probabilities
    if probabilities is not None:
        probabilities = apply_temperature(probabilities, confidence.calibration.temperature)
    sureness = confidence_of(parsed.label, probabilities)
    is_abstained = task.labels is not None and should_abstain(sureness, confidence.min_confidence)
    return Answer(
        ABSTAIN if is_abstained else parsed.label,
        parsed.label,
        parsed.reasoning,
        parsed.status,
        parsed.issue,
        probabilities,
        sureness,
    )


def predict_texts(
    backend: Backend,
    texts: Sequence[str],
    task: Task,
    systems: Sequence[str] | None = None,
    confidence: Confidence = Confidence(),
) -> list[Prediction]:
    """Return a prediction for each text, prompted and parsed as ``task`` says, in one backend call (ids are
    positions).

    Args:
        systems: per text, its own system prompt (instruction datasets carry one); empty keeps the task's.
        confidence: whether to score the labels, the temperature to apply and when to abstain.
    """
    start = time.perf_counter()
    own = systems or [""] * len(texts)
    completions = backend.complete(
        [task.messages(text, system) for text, system in zip(texts, own, strict=True)],
        label_sampling(task, confidence),
    )
    wall_ms = (time.perf_counter() - start) * 1000 / max(len(texts), 1)
    predictions = []
    for i, (text, completion) in enumerate(zip(texts, completions, strict=True)):
        answer = read_answer(completion, task, confidence)
        predictions.append(
            Prediction(
                str(i),
                text,
                answer.label,
                answer.reasoning,
                completion.text,
                answer.status,
                answer.issue,
                round(completion.latency_ms, 3),
                completion.completion_tokens,
                round(wall_ms, 3),
                answer.probabilities,
                answer.confidence,
                answer.model_label,
            )
        )
    return predictions


def predict_rows(
    backend: Backend,
    rows: Sequence[tuple[str, str]],
    output_path: str | Path,
    task: Task,
    *,
    batch_size: int,
    desc: str = "predict",
    systems: Mapping[str, str] | None = None,
    confidence: Confidence = Confidence(),
) -> PredictResult:
    """Predict ``(id, text)`` rows into ``output_path`` (JSONL), skipping ids it already holds; return all rows.

    Args:
        systems: row id -> that row's own system prompt, for the rows that have one.
        confidence: as for ``predict_texts``.
    """
    output_path = Path(output_path)
    done = read_predictions(output_path)
    todo = [(row_id, text) for row_id, text in rows if row_id not in done]
    if done:
        logger.info(
            "%s: %d of %d rows already predicted, %d to go", output_path, len(rows) - len(todo), len(rows), len(todo)
        )
    output_path.parent.mkdir(parents=True, exist_ok=True)
    with (
        writing(output_path),
        open(output_path, "a", encoding="utf-8") as handle,
        tqdm(total=len(todo), desc=desc, unit="row") as bar,
    ):
        for start in range(0, len(todo), batch_size):
            batch = todo[start : start + batch_size]
            own = [(systems or {}).get(row_id, "") for row_id, _ in batch]
            for (row_id, _), prediction in zip(
                batch, predict_texts(backend, [t for _, t in batch], task, own, confidence), strict=True
            ):
                done[row_id] = Prediction(**{**asdict(prediction), "id": row_id})
                handle.write(json.dumps(asdict(done[row_id]), ensure_ascii=False) + "\n")
            handle.flush()
            bar.update(len(batch))
    return PredictResult(str(output_path), [done[row_id] for row_id, _ in rows], len(todo), len(rows) - len(todo))


def read_predictions(path: Path) -> dict[str, Prediction]:
    """Return the predictions already in ``path`` by id; a last line cut by a crash is dropped from the file."""
    if not path.is_file():
        return {}
    lines = path.read_text(encoding="utf-8").splitlines(keepends=True)
    done: dict[str, Prediction] = {}
    for number, line in enumerate(lines, start=1):
        try:
            row = Prediction(**json.loads(line))
        except (ValueError, TypeError) as err:
            if number == len(lines):
                logger.warning("%s:%d: dropping a line cut short by an earlier crash", path, number)
                atomic_write_text(path, "".join(lines[:-1]))
                break
            raise DataError(f"not a prediction row ({err})", path=path, line=number) from err
        if not line.endswith("\n"):  # valid JSON but the newline was lost: complete the line before appending
            atomic_write_text(path, "".join(lines) + "\n")
        done[row.id] = row
    return done


def read_inputs(path: str | Path, text_column: str = "text", id_column: str = "id") -> list[tuple[str, str]]:
    """Return ``(id, text)`` rows of a CSV or JSONL file; rows without an id column are numbered from 1."""
    path = Path(path)
    if path.suffix not in (".csv", ".jsonl"):
        raise DataError("", path=path, expected="a .csv or .jsonl file", got=path.suffix)
    try:
        with open(path, encoding="utf-8-sig", newline="") as handle:
            if path.suffix == ".csv":
                reader = csv.DictReader(handle)
                records = [(reader.line_num, row) for row in reader]
            else:
                records = [(n, json_object(line, path, n)) for n, line in enumerate(handle, start=1) if line.strip()]
    except (OSError, UnicodeDecodeError) as err:
        raise DataError(f"cannot read ({err})", path=path) from err
    rows: list[tuple[str, str]] = []
    seen: set[str] = set()
    for index, (line, record) in enumerate(records, start=1):
        text = record.get(text_column)
        if not isinstance(text, str) or not text.strip():
            raise DataError(
                "",
                path=path,
                line=line,
                field=text_column,
                expected=f"non-empty text (columns: {', '.join(map(str, record))})",
                got=text,
            )
        row_id = str(record[id_column]) if record.get(id_column) not in (None, "") else str(index)
        if row_id in seen:
            raise DataError("duplicate id", path=path, line=line, field=id_column, expected="unique ids", got=row_id)
        seen.add(row_id)
        rows.append((row_id, text))
    return rows


def predict_file(
    backend: Backend,
    input_path: str | Path,
    output_path: str | Path,
    task: Task,
    *,
    batch_size: int,
    text_column: str = "text",
    id_column: str = "id",
    confidence: Confidence = Confidence(),
) -> PredictResult:
    """Predict every row of a CSV or JSONL file into ``output_path``, resuming where an earlier run stopped; texts
    are anonymized as the task's training texts were."""
    rows = [(row_id, task.anonymize(text)) for row_id, text in read_inputs(input_path, text_column, id_column)]
    return predict_rows(
        backend, rows, output_path, task, batch_size=batch_size, desc=Path(input_path).name, confidence=confidence
    )


def safe_name(name: str) -> str:
    """Return ``name`` with anything but letters, digits, ``.``, ``_`` and ``-`` replaced, for file names."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("_") or "x"


def predictions_path(directory: Path, model: ModelConfig, prompt: PromptConfig, test_set: str) -> Path:
    """Return the resumable predictions file of ``model`` on ``test_set``; the name carries a hash of the model's
    settings and the prompt, so changed settings never resume from old rows."""
    key = hashlib.sha256((dump_config(model) + dump_config(prompt)).encode()).hexdigest()[:8]
    return directory / f"{safe_name(str(model.name))}__{safe_name(test_set)}__{key}.jsonl"
