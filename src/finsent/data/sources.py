"""Readers for labeled financial text (``Example``: sentiment labels, transaction categories) and instructions
(``InstructExample``: a user message and its reference answer).

``finsent ls sources`` lists them. Every reader names file, line (or row) and field in its errors, and with
``on_error: skip`` counts skipped rows by reason instead of stopping. Problems with a whole file (missing, empty,
a missing column, the unlabeled FiQA test file) always raise: skipping them would drop a source silently.
Text files report 1-based physical lines; Parquet files and hub datasets report the 0-based row index (``ds[row]``).
"""

from __future__ import annotations

import json
import logging
import math
import random
import re
from bisect import bisect_right
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

from finsent.config import SourceConfig
from finsent.data.labels import fiqa_label
from finsent.data.readers import (
    Example,
    InstructExample,
    RowErrors,
    csv_rows,
    decode_lines,
    example_id,
    generic_columns,
    hub_name,
    hub_rows,
    jsonl_rows,
    local_file,
    locate_source,
    parquet_rows,
    read_bytes,
    read_examples,
    source_label_map,
    source_rows,
    to_example,
)
from finsent.errors import DataError
from finsent.registry import Registry

logger = logging.getLogger(__name__)


SourceReader = Callable[[SourceConfig, RowErrors], Iterator[Example]]
SOURCES: Registry[SourceReader] = Registry("source")
SOURCES.add("demo", "finsent.data.demo:read_demo", help="Synthetic, seeded financial headlines (offline default).")
SOURCES.add(
    "synthetic_transactions",
    "finsent.data.transactions:read_synthetic_transactions",
    help="Synthetic, seeded bank-statement lines in 12 categories, with realistic noise and personal data.",
)
SOURCES.add(
    "transactions",
    "finsent.data.transactions:read_transactions",
    help="Transaction files (.csv or .jsonl): description, amount, optional date and category (id, name or synonym).",
)


def load_source(cfg: SourceConfig, errors: RowErrors) -> list[Example]:
    """Read one source into examples; ``hub:<id>`` names go through ``datasets.load_dataset``.

    With ``max_rows``, keep a random sample of that many examples (seed 0, so reruns agree), in reading order.
    """
    reader = SOURCES.get("hub" if cfg.name.startswith("hub:") else cfg.name)
    examples = list(reader(cfg, errors))
    if cfg.max_rows is not None and len(examples) > cfg.max_rows:
        keep = sorted(random.Random(0).sample(range(len(examples)), cfg.max_rows))
        examples = [examples[i] for i in keep]
    logger.info("%s: %d examples", cfg.name, len(examples))
    return examples


# --- reading files and hub datasets -------------------------------------------------------------------------------

_AGREEMENT = re.compile(r"sentences_(all|\d+)agree", re.IGNORECASE)
_PHRASEBANK_HUB_ID = "takala/financial_phrasebank"


@SOURCES.register("financial_phrasebank")
def read_financial_phrasebank(cfg: SourceConfig, errors: RowErrors) -> Iterator[Example]:
    """Financial PhraseBank: a local Sentences_*Agree.txt, or the hub copy (subset sentences_<level>agree).

    The release's ``sentence@label`` lines are latin-1 with CRLF; the label follows the last ``@``. A copy re-saved
    as UTF-8 is read as UTF-8. ``meta["agreement"]`` is the annotator agreement level (``all``, ``75``, ...).
    """
    source = "financial_phrasebank"
    label_map = source_label_map(cfg)
    located = locate_source(cfg, _PHRASEBANK_HUB_ID)
    if isinstance(located, str):
        subset = cfg.subset or "sentences_allagree"
        where = hub_name(located, subset, cfg.split)
        for row, record in hub_rows(where, located, subset, cfg.split, ("sentence", "label")):
            meta = {"agreement": _agreement(subset), "line": row}
            example = to_example(
                source,
                record,
                ("sentence", "label"),
                where=where,
                line=row,
                label_map=label_map,
                errors=errors,
                meta=meta,
            )
            if example:
                yield example
        return
    data = read_bytes(located, "sentence", "sentence@label lines")
    agreement = _agreement(located.name)
    for line in decode_lines(located, data, "utf-8" if _is_utf8(data) else "latin-1"):
        content = line.text.rstrip("\r\n")
        if line.problem:
            errors.report(*line.problem)
            continue
        if not content.strip():
            continue
        sentence, at, label = content.rpartition("@")
        if not at:
            errors.report(
                "malformed_line",
                DataError(
                    "no '@' before the label",
                    path=located,
                    line=line.number,
                    field="label",
                    expected="sentence@label",
                    got=content,
                ),
            )
            continue
        example = to_example(
            source,
            {"sentence": sentence, "label": label},
            ("sentence", "label"),
            where=located,
            line=line.number,
            label_map=label_map,
            errors=errors,
            meta={"agreement": agreement, "line": line.number},
        )
        if example:
            yield example


def _agreement(name: str) -> str | None:
    match = _AGREEMENT.search(name)
    return match.group(1).lower() if match else None


def _is_utf8(data: bytes) -> bool:
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


_OBJECT_KEY = re.compile(r'("(?:[^"\\]|\\.)*")\s*:\s*\{')


@SOURCES.register("fiqa_sa")
def read_fiqa_sa(cfg: SourceConfig, errors: RowErrors) -> Iterator[Example]:
    """FiQA 2018 task 1 headlines or posts (*_train.json); sentiment scores within +-neutral_band are neutral.

    One example per record. A headline scored for several targets gets the mean of their scores: the model sees
    the whole sentence, so it needs one label, and the mean follows the stronger opinion. The per-target
    ``targets`` and ``scores`` and the mean ``score`` are kept in ``meta``. The challenge's unlabeled
    ``*_test.json`` files (no ``sentiment_score``) are refused.
    """
    path = local_file(cfg)
    data = read_bytes(path, "record", "a JSON object of FiQA records")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        raise DataError(
            "undecodable bytes",
            path=path,
            line=data.count(b"\n", 0, err.start) + 1,
            field="encoding",
            expected="valid utf-8 text",
            got=data[err.start : err.end],
        ) from err
    try:
        records = json.loads(text)
    except json.JSONDecodeError as err:
        raise DataError(
            f"broken JSON (column {err.colno}): {err.msg}", path=path, line=err.lineno, field="record"
        ) from err
    if not isinstance(records, dict) or not records:
        raise DataError(
            "not FiQA records",
            path=path,
            line=1,
            field="record",
            expected="a JSON object {id: {sentence, info}}",
            got=records,
        )
    entries = [
        entry
        for record in records.values()
        if isinstance(record, dict)
        for entry in record.get("info") or []
        if isinstance(entry, dict)
    ]
    if not any("sentiment_score" in entry for entry in entries):
        raise DataError(
            "this is an unlabeled FiQA challenge test file: read the *_train.json file",
            path=path,
            line=1,
            field="sentiment_score",
            expected="records with a sentiment_score",
            got=f"{len(records)} records without one",
        )
    newlines = [match.start() for match in re.finditer("\n", text)]
    # json.loads keeps no positions; a record id is the only key whose value is an object.
    lines = {json.loads(m.group(1)): bisect_right(newlines, m.start()) + 1 for m in _OBJECT_KEY.finditer(text)}
    for key, record in records.items():
        example = _fiqa_example(path, key, record, lines.get(key), cfg.neutral_band, errors)
        if example:
            yield example


def _fiqa_example(
    path: Path, key: str, record: Any, line: int | None, band: float, errors: RowErrors
) -> Example | None:
    sentence = record.get("sentence") if isinstance(record, dict) else None
    if not isinstance(sentence, str) or not sentence.strip():
        errors.report(
            "empty_text",
            DataError(
                "empty text", path=path, line=line, field=f"{key}.sentence", expected="non-empty text", got=sentence
            ),
        )
        return None
    info = record.get("info")
    if not isinstance(info, list) or not info or not all(isinstance(entry, dict) for entry in info):
        errors.report(
            "missing_field",
            DataError(
                "no aspect entries",
                path=path,
                line=line,
                field=f"{key}.info",
                expected="a non-empty list of {target, sentiment_score}",
                got=info,
            ),
        )
        return None
    scores = []
    for i, entry in enumerate(info):
        raw = entry.get("sentiment_score")
        try:
            score = float(raw)
        except (TypeError, ValueError):
            score = math.nan
        if not -1 <= score <= 1:
            errors.report(
                "bad_score",
                DataError(
                    "bad sentiment score",
                    path=path,
                    line=line,
                    field=f"{key}.info.{i}.sentiment_score",
                    expected="a number in [-1, 1]",
                    got=raw,
                ),
            )
            return None
        scores.append(score)
    score = sum(scores) / len(scores)
    text = sentence.strip()
    meta = {
        "fiqa_id": key,
        "line": line,
        "targets": [entry.get("target") for entry in info],
        "scores": scores,
        "score": score,
    }
    return Example(example_id("fiqa_sa", text), text, fiqa_label(score, band), "fiqa_sa", meta)


@SOURCES.register("twitter_financial_news")
def read_twitter_financial_news(cfg: SourceConfig, errors: RowErrors) -> Iterator[Example]:
    """Twitter financial news sentiment: a local sent_*.csv (text,label) or the hub copy; 0 bearish, 1 bullish."""
    where, rows = source_rows(cfg, "zeroshot/twitter-financial-news-sentiment", ("text", "label"), errors)
    yield from read_examples("twitter_financial_news", cfg, where, rows, ("text", "label"), errors)


@SOURCES.register("fingpt_sentiment")
def read_fingpt_sentiment(cfg: SourceConfig, errors: RowErrors) -> Iterator[Example]:
    """FinGPT sentiment instructions (hub or local jsonl/parquet/csv: input, output); graded outputs folded to 3."""
    source, columns = "fingpt_sentiment", ("input", "output")
    label_map = source_label_map(cfg)
    where, rows = source_rows(cfg, "FinGPT/fingpt-sentiment-train", columns, errors)
    for line, record in rows:
        meta = {"instruction": record.get("instruction"), "output": record["output"], "line": line}
        example = to_example(
            source, record, columns, where=where, line=line, label_map=label_map, errors=errors, meta=meta
        )
        if example:
            yield example


# Only these rows carry one label for the whole text; ner_sentiment_analysis labels entities.
_SUJET_SENTIMENT_TASKS = frozenset({"sentiment_analysis"})


@SOURCES.register("sujet_finance_instruct")
def read_sujet_finance_instruct(cfg: SourceConfig, errors: RowErrors) -> Iterator[Example]:
    """Sujet-Finance-Instruct-177k sentiment rows (hub or local parquet/jsonl/csv); other tasks are left out.

    Rows whose ``task_type`` is not ``sentiment_analysis`` are counted in ``RowErrors.filtered`` (by design, not
    errors). The text is ``user_prompt`` when it is non-empty, else ``inputs``; the label is ``answer``.
    """
    source = "sujet_finance_instruct"
    label_map = source_label_map(cfg)
    where, rows = source_rows(cfg, "sujet-ai/Sujet-Finance-Instruct-177k", ("inputs", "answer", "task_type"), errors)
    left_out: Counter[str] = Counter()
    for line, record in rows:
        task_type = str(record["task_type"]).strip().lower()
        if task_type not in _SUJET_SENTIMENT_TASKS:
            left_out[task_type] += 1
            continue
        prompt = record.get("user_prompt")
        text_column = "user_prompt" if isinstance(prompt, str) and prompt.strip() else "inputs"
        meta = {"dataset": record.get("dataset"), "task_type": task_type, "line": line}
        example = to_example(
            source,
            record,
            (text_column, "answer"),
            where=where,
            line=line,
            label_map=label_map,
            errors=errors,
            meta=meta,
        )
        if example:
            yield example
    for task_type, count in left_out.items():
        errors.filtered[f"{source}: task_type {task_type}"] += count
    if left_out:
        logger.info(
            "%s: left out %d rows of other task types (%s)",
            where,
            left_out.total(),
            ", ".join(f"{t}={n}" for t, n in left_out.most_common()),
        )


@SOURCES.register("csv")
def read_csv(cfg: SourceConfig, errors: RowErrors) -> Iterator[Example]:
    """Any local UTF-8 CSV with a header: text_column, label_column (default text, label), optional label_map."""
    path, columns = local_file(cfg), generic_columns(cfg)
    yield from read_examples("csv", cfg, path, csv_rows(path, columns, errors), columns, errors)


@SOURCES.register("jsonl")
def read_jsonl(cfg: SourceConfig, errors: RowErrors) -> Iterator[Example]:
    """Any local JSON Lines file: text_column, label_column (default text, label), optional label_map."""
    path, columns = local_file(cfg), generic_columns(cfg)
    yield from read_examples("jsonl", cfg, path, jsonl_rows(path, columns, errors), columns, errors)


@SOURCES.register("parquet")
def read_parquet(cfg: SourceConfig, errors: RowErrors) -> Iterator[Example]:
    """Any local Parquet file: text_column, label_column (default text, label), optional label_map."""
    path, columns = local_file(cfg), generic_columns(cfg)
    yield from read_examples("parquet", cfg, path, parquet_rows(path, columns), columns, errors)


@SOURCES.register("hub")
def read_hub(cfg: SourceConfig, errors: RowErrors) -> Iterator[Example]:
    """Any hub dataset (name hub:<dataset id>): text_column, label_column (default text, label), label_map."""
    dataset_id = cfg.name.partition(":")[2] or cfg.path
    if not dataset_id:
        raise DataError("no dataset id", field="name", expected="hub:<dataset id>", got=cfg.name)
    columns = generic_columns(cfg)
    where = hub_name(dataset_id, cfg.subset, cfg.split)
    label_map = source_label_map(cfg)
    for row, record in hub_rows(where, dataset_id, cfg.subset, cfg.split, columns):
        example = to_example(
            "hub",
            record,
            columns,
            where=where,
            line=row,
            label_map=label_map,
            errors=errors,
            meta={"dataset": dataset_id, "line": row},
        )
        if example:
            yield example


# --- instructions -------------------------------------------------------------------------------------------------

# Where a row's answer and user message are, in order of preference: Sujet-Finance-Instruct (answer; user_prompt,
# else inputs), finsent's own ChatML rows (text, answer), and instruction files (instruction/input/context with
# output or response). A ``messages`` column (system?, user, assistant) is read when none of these is there.
_ANSWER_COLUMNS = ("answer", "output", "response")
_PROMPT_COLUMNS = ("user_prompt", "inputs", "text", "instruction", "input", "question", "prompt")
_JOINED_COLUMNS = ("instruction", "input", "context")  # joined with blank lines when several are there


@SOURCES.register("instruct")
def read_instruct(cfg: SourceConfig, errors: RowErrors) -> Iterator[Example]:
    """Instruction rows (default: Sujet-Finance-Instruct-177k from the hub; or local parquet/jsonl/csv).

    Columns, in order of preference: Sujet's ``answer`` with ``user_prompt`` (its ``system_prompt`` kept) or, when
    that is empty, ``inputs``; ``text``/``answer`` (finsent's own output); ``instruction``/``input``/``context``
    with ``output`` or ``response``; else ``messages`` (system?, user, assistant). ``task_type`` (default
    ``general``) and ``dataset`` are kept. Yields ``InstructExample`` records.
    """
    where, rows = source_rows(cfg, "sujet-ai/Sujet-Finance-Instruct-177k", (), errors)
    for index, (line, record) in enumerate(rows):
        fields = _instruct_fields(record)
        if isinstance(fields, DataError):
            error = DataError(fields.message, path=where, line=line, field=fields.field, expected=fields.expected)
            if index == 0:  # the first row shows the file has none of the known layouts: never skipped
                raise error
            errors.report("missing_column", error)
            continue
        system, text, answer = fields
        if not text.strip() or not answer.strip():
            empty = "answer" if text.strip() else "text"
            errors.report(
                f"empty_{empty}",
                DataError(f"empty {empty}", path=where, line=line, field=empty, expected=f"a non-empty {empty}"),
            )
            continue
        task_type = " ".join(str(record.get("task_type") or "general").strip().lower().split()) or "general"
        meta = {"dataset": record.get("dataset"), "task_type": task_type, "line": line}
        text = text.strip()
        yield InstructExample(
            example_id("instruct", text), text, task_type, "instruct", meta, answer=answer.strip(), system=system
        )


def _instruct_fields(record: Mapping[str, Any]) -> tuple[str, str, str] | DataError:
    """Return (system prompt, user message, answer) of an instruction record, or the error naming what is missing."""
    answer_column = next((c for c in _ANSWER_COLUMNS if c in record), None)
    prompt_columns = [c for c in _PROMPT_COLUMNS if c in record]
    if answer_column is None or not prompt_columns:
        if "messages" in record:
            return _messages_fields(record["messages"])
        return DataError(
            "no instruction columns",
            field="columns",
            expected=f"an answer column ({'|'.join(_ANSWER_COLUMNS)}) and a prompt column "
            f"({'|'.join(_PROMPT_COLUMNS)}), or messages; found {', '.join(map(str, record))}",
        )
    answer = _string(record[answer_column])
    if "user_prompt" in record or "inputs" in record:  # Sujet: user_prompt with its system prompt, else inputs
        user_prompt = _string(record.get("user_prompt"))
        if user_prompt.strip():
            return _string(record.get("system_prompt")).strip(), user_prompt, answer
        return "", _string(record.get("inputs")), answer
    if "text" in record:
        return _string(record.get("system")).strip(), _string(record["text"]), answer
    joined = [_string(record.get(c)).strip() for c in _JOINED_COLUMNS if c in record]
    parts = [part for part in joined if part] or [_string(record[prompt_columns[0]])]
    return "", "\n\n".join(parts), answer


def _messages_fields(messages: Any) -> tuple[str, str, str] | DataError:
    roles = (
        [m.get("role") for m in messages]
        if isinstance(messages, list) and all(isinstance(m, dict) for m in messages)
        else None
    )
    if roles not in (["system", "user", "assistant"], ["user", "assistant"]):
        return DataError("", field="messages", expected="turns system (optional), user, assistant")
    system = _string(messages[0].get("content")) if roles[0] == "system" else ""
    return system, _string(messages[-2].get("content")), _string(messages[-1].get("content"))


def _string(value: Any) -> str:
    return value if isinstance(value, str) else ""
