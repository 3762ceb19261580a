"""Readers for labeled financial text (``Example``: sentiment labels, transaction categories) and instructions
(``InstructExample``: a user message and its reference answer).

``finsent ls sources`` lists them. Every reader names file, line (or row) and field in its errors, and with
``on_error: skip`` counts skipped rows by reason instead of stopping. Problems with a whole file (missing, empty,
a missing column, the unlabeled FiQA test file) always raise: skipping them would drop a source silently.
Text files report 1-based physical lines; Parquet files and hub datasets report the 0-based row index (``ds[row]``).
"""

from __future__ import annotations

import codecs
import csv
import hashlib
import json
import logging
import math
import random
import re
import unicodedata
from bisect import bisect_right
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from finsent.config import SourceConfig
from finsent.data.labels import check_label_map, describe_labels, fiqa_label, normalize_label
from finsent.errors import ConfigError, DataError
from finsent.registry import Registry

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Example:
    """One labeled text. ``id`` is stable: a hash of the source name and the normalized text."""

    id: str
    text: str
    label: str
    source: str
    meta: dict[str, Any] = field(default_factory=dict, hash=False, compare=False)


@dataclass(frozen=True)
class InstructExample(Example):
    """An instruction and its reference answer. ``text`` is the user's message; ``label`` is the row's task type
    (what dedup, mixtures, the split and the reports count by); ``system`` is the row's own system prompt, or empty
    for the recipe's."""

    answer: str = ""
    system: str = ""


def normalize_text(text: str) -> str:
    """Return the form used for ids and exact dedup: NFKC, case-folded, whitespace collapsed."""
    return " ".join(unicodedata.normalize("NFKC", text).casefold().split())


def example_id(source: str, text: str) -> str:
    """Return the stable id of ``text`` from ``source`` (16 hex digits)."""
    return hashlib.sha1(f"{source}\x00{normalize_text(text)}".encode()).hexdigest()[:16]


@dataclass
class RowErrors:
    """Bad-row policy of one run: raise the first error, or skip and count by reason.

    ``filtered`` counts rows a source leaves out by design (such as Sujet rows of other tasks): never errors.
    """

    on_error: Literal["raise", "skip"] = "raise"
    counts: Counter[str] = field(default_factory=Counter)
    samples: list[str] = field(default_factory=list)
    filtered: Counter[str] = field(default_factory=Counter)

    def report(self, reason: str, error: DataError) -> None:
        """Raise ``error``, or (skip) count it under ``reason`` and keep the first few messages."""
        if self.on_error == "raise":
            raise error
        self.counts[reason] += 1
        if len(self.samples) < 20:
            self.samples.append(str(error))


SourceReader = Callable[[SourceConfig, RowErrors], Iterator[Example]]
SOURCES: Registry[SourceReader] = Registry("source")
SOURCES.add("demo", "finsent.data.demo:read_demo", help="Synthetic, seeded financial headlines (offline default).")
SOURCES.add(
    "synthetic_transactions",
    "finsent.data.transactions:read_synthetic_transactions",
    help="Synthetic, seeded bank-statement lines in 12 categories, with realistic noise and personal data.",
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

# Longer texts are almost always a broken file (an unclosed quote swallowing the rest); the few long instruction
# contexts kept by the instruct task stay far below it.
MAX_TEXT_CHARS = 100_000
Row = tuple[int, dict[str, Any]]
"""A record and where it is: the line where it starts (text files) or its row index (Parquet, hub)."""

_HUB_ID = re.compile(r"[A-Za-z0-9][\w.-]*/[\w.-]+")
_FILE_SUFFIXES = frozenset({".txt", ".csv", ".json", ".jsonl", ".parquet"})


@dataclass(frozen=True)
class _Line:
    """One physical line; ``problem`` (reason, error) is set when it does not decode or holds a NUL byte."""

    number: int
    text: str
    problem: tuple[str, DataError] | None


def _local_file(cfg: SourceConfig, expected: str = "an existing file") -> Path:
    if cfg.path is None:
        raise DataError(f"source {cfg.name!r} reads a local file", field="path", expected=expected, got=None)
    path = Path(cfg.path).expanduser()
    if not path.is_file():
        raise DataError(
            "not a file" if path.exists() else "no such file", path=cfg.path, field="path", expected=expected
        )
    return path


def _locate(cfg: SourceConfig, default_hub_id: str) -> Path | str:
    """Return the local file named by ``cfg.path``, else the hub dataset id to load (``default_hub_id`` if none)."""
    if cfg.path is None:
        return default_hub_id
    path = Path(cfg.path).expanduser()
    if not path.exists() and path.suffix not in _FILE_SUFFIXES and _HUB_ID.fullmatch(cfg.path):
        return cfg.path
    return _local_file(cfg, expected="an existing file or a hub dataset id (owner/name)")


def _label_map(cfg: SourceConfig) -> dict[str, str] | None:
    if cfg.label_map is not None:
        try:
            check_label_map(cfg.label_map)
        except ValueError as err:
            raise ConfigError(str(err), field="label_map") from err
    return cfg.label_map


def _read_bytes(path: Path, field: str, expected: str) -> bytes:
    data = path.read_bytes()
    if not data.removeprefix(codecs.BOM_UTF8).strip():
        raise DataError("empty file", path=path, line=1, field=field, expected=expected)
    return data


def _decode_lines(path: Path, data: bytes, encoding: str) -> list[_Line]:
    """Split ``data`` into physical lines (ends kept) and decode each, so a bad byte is reported at its line."""
    if encoding == "utf-8":
        # Excel and Notepad write a BOM; it is not part of the first column name.
        data = data.removeprefix(codecs.BOM_UTF8)
    lines = []
    for number, raw in enumerate(data.splitlines(keepends=True), start=1):
        problem = None
        try:
            text = raw.decode(encoding)
        except UnicodeDecodeError as err:
            text = raw.decode(encoding, errors="replace")
            error = DataError(
                "undecodable bytes",
                path=path,
                line=number,
                field="encoding",
                expected=f"valid {encoding} text",
                got=raw[err.start : err.end],
            )
            error.__cause__ = err
            problem = ("undecodable", error)
        if problem is None and "\x00" in text:
            error = DataError(
                "NUL byte",
                path=path,
                line=number,
                field="content",
                expected="text without NUL bytes",
                got=text.rstrip("\r\n"),
            )
            problem = ("nul_byte", error)
        lines.append(_Line(number, text, problem))
    return lines


def _require_columns(where: str | Path, line: int | None, columns: Iterable[str], found: list[str]) -> None:
    for column in columns:
        if column not in found:
            raise DataError(
                f"no column {column!r}",
                path=where,
                line=line,
                field=column,
                expected=f"a column named {column!r}",
                got=found,
            )


def _csv_rows(path: Path, columns: tuple[str, ...], errors: RowErrors) -> Iterator[Row]:
    """Yield the records of a UTF-8 CSV file with a header; quoted fields may span lines."""
    lines = _decode_lines(path, _read_bytes(path, "header", "a header row naming the columns"), "utf-8")
    # Python's default field limit (131,072 characters) would report a long text as malformed CSV.
    csv.field_size_limit(max(csv.field_size_limit(), 16 * MAX_TEXT_CHARS))
    reader = csv.reader((line.text for line in lines), strict=True)
    header: list[str] | None = None
    while True:
        start = reader.line_num + 1
        try:
            values = next(reader)
        except StopIteration:
            return
        except csv.Error as err:
            error = DataError(f"malformed CSV: {err}", path=path, line=start, field="csv")
            if header is None:
                raise error from err
            error.__cause__ = err
            errors.report("malformed_csv", error)
            continue
        problem = next((line.problem for line in lines[start - 1 : reader.line_num] if line.problem), None)
        if header is None:
            if problem:
                raise problem[1]
            header = [name.strip() for name in values]
            _require_columns(path, start, columns, header)
        elif problem:
            errors.report(*problem)
        elif len(values) != len(header):
            errors.report(
                "bad_row",
                DataError(
                    "wrong number of fields",
                    path=path,
                    line=start,
                    field="row",
                    expected=f"{len(header)} fields ({','.join(header)})",
                    got=values,
                ),
            )
        elif values:
            yield start, dict(zip(header, values, strict=True))


def _jsonl_rows(path: Path, columns: tuple[str, ...], errors: RowErrors) -> Iterator[Row]:
    """Yield the JSON objects of a UTF-8 JSON Lines file; blank lines are allowed."""
    lines = _decode_lines(path, _read_bytes(path, "record", "one JSON object per line"), "utf-8")
    for line in lines:
        if line.problem:
            errors.report(*line.problem)
            continue
        if not line.text.strip():
            continue
        try:
            record = json.loads(line.text)
        except json.JSONDecodeError as err:
            error = DataError(
                f"broken JSON (column {err.colno}): {err.msg}", path=path, line=line.number, field="record"
            )
            error.__cause__ = err
            errors.report("bad_json", error)
            continue
        if not isinstance(record, dict):
            errors.report(
                "bad_json",
                DataError(
                    "not a JSON object",
                    path=path,
                    line=line.number,
                    field="record",
                    expected="one JSON object per line",
                    got=record,
                ),
            )
            continue
        missing = [column for column in columns if column not in record]
        if missing:
            errors.report(
                "missing_column",
                DataError(
                    f"no key {missing[0]!r}",
                    path=path,
                    line=line.number,
                    field=missing[0],
                    expected=f"a key {missing[0]!r}",
                    got=sorted(record),
                ),
            )
            continue
        yield line.number, record


def _parquet_rows(path: Path, columns: tuple[str, ...]) -> Iterator[Row]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    data = _read_bytes(path, "content", "a Parquet file")
    try:
        table = pq.read_table(pa.BufferReader(data))
    except pa.ArrowException as err:
        raise DataError(f"unreadable Parquet: {err}", path=path, field="content") from err
    _require_columns(path, None, columns, table.column_names)
    yield from enumerate(table.to_pylist())


def _hub_rows(where: str, dataset_id: str, subset: str | None, split: str, columns: tuple[str, ...]) -> Iterator[Row]:
    import datasets

    try:
        ds = datasets.load_dataset(dataset_id, subset, split=split)
    except Exception as err:  # offline mode, a missing config or split, the network: all end the same way here
        raise DataError(
            f"could not load the hub dataset: {type(err).__name__}: {err}", path=where, field="path"
        ) from err
    _require_columns(where, None, columns, ds.column_names)
    yield from enumerate(ds)


def _hub_name(dataset_id: str, subset: str | None, split: str) -> str:
    return f"{dataset_id}/{subset}[{split}]" if subset else f"{dataset_id}[{split}]"


def _table_rows(path: Path, columns: tuple[str, ...], errors: RowErrors) -> Iterator[Row]:
    if path.suffix == ".jsonl":
        return _jsonl_rows(path, columns, errors)
    if path.suffix == ".parquet":
        return _parquet_rows(path, columns)
    if path.suffix == ".csv":
        return _csv_rows(path, columns, errors)
    raise DataError(
        "unknown file type", path=path, field="path", expected="a .jsonl, .parquet or .csv file", got=path.suffix
    )


def _rows(
    cfg: SourceConfig, default_hub_id: str, columns: tuple[str, ...], errors: RowErrors
) -> tuple[str | Path, Iterator[Row]]:
    """Return where the records come from and the records: a local file by its suffix, else the hub."""
    located = _locate(cfg, default_hub_id)
    if isinstance(located, Path):
        return located, _table_rows(located, columns, errors)
    where = _hub_name(located, cfg.subset, cfg.split)
    return where, _hub_rows(where, located, cfg.subset, cfg.split, columns)


def _to_example(
    source: str,
    record: Mapping[str, Any],
    columns: tuple[str, str],
    *,
    where: str | Path,
    line: int,
    label_map: Mapping[str, str] | None,
    errors: RowErrors,
    meta: dict[str, Any],
) -> Example | None:
    """Return the example of ``record`` (text column, label column), or report why there is none."""
    text_column, label_column = columns
    text, raw_label = record[text_column], record[label_column]
    if not isinstance(text, str) or not text.strip():
        errors.report(
            "empty_text",
            DataError("empty text", path=where, line=line, field=text_column, expected="non-empty text", got=text),
        )
        return None
    label = normalize_label(raw_label, source, label_map)
    if label is None:
        errors.report(
            "unknown_label",
            DataError(
                "unknown label",
                path=where,
                line=line,
                field=label_column,
                expected=describe_labels(source, label_map),
                got=raw_label,
            ),
        )
        return None
    text = text.strip()
    if len(text) > MAX_TEXT_CHARS:
        errors.report(
            "text_too_long",
            DataError(
                "text too long",
                path=where,
                line=line,
                field=text_column,
                expected=f"at most {MAX_TEXT_CHARS:,} characters",
                got=len(text),
            ),
        )
        return None
    return Example(example_id(source, text), text, label, source, meta)


def _examples(
    source: str, cfg: SourceConfig, where: str | Path, rows: Iterator[Row], columns: tuple[str, str], errors: RowErrors
) -> Iterator[Example]:
    label_map = _label_map(cfg)
    for line, record in rows:
        example = _to_example(
            source, record, columns, where=where, line=line, label_map=label_map, errors=errors, meta={"line": line}
        )
        if example:
            yield example


# --- the sources --------------------------------------------------------------------------------------------------

_AGREEMENT = re.compile(r"sentences_(all|\d+)agree", re.IGNORECASE)
_PHRASEBANK_HUB_ID = "takala/financial_phrasebank"


@SOURCES.register("financial_phrasebank")
def read_financial_phrasebank(cfg: SourceConfig, errors: RowErrors) -> Iterator[Example]:
    """Financial PhraseBank: a local Sentences_*Agree.txt, or the hub copy (subset sentences_<level>agree).

    The release's ``sentence@label`` lines are latin-1 with CRLF; the label follows the last ``@``. A copy re-saved
    as UTF-8 is read as UTF-8. ``meta["agreement"]`` is the annotator agreement level (``all``, ``75``, ...).
    """
    source = "financial_phrasebank"
    label_map = _label_map(cfg)
    located = _locate(cfg, _PHRASEBANK_HUB_ID)
    if isinstance(located, str):
        subset = cfg.subset or "sentences_allagree"
        where = _hub_name(located, subset, cfg.split)
        for row, record in _hub_rows(where, located, subset, cfg.split, ("sentence", "label")):
            meta = {"agreement": _agreement(subset), "line": row}
            example = _to_example(
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
    data = _read_bytes(located, "sentence", "sentence@label lines")
    agreement = _agreement(located.name)
    for line in _decode_lines(located, data, "utf-8" if _is_utf8(data) else "latin-1"):
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
        example = _to_example(
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
    path = _local_file(cfg)
    data = _read_bytes(path, "record", "a JSON object of FiQA records")
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
    where, rows = _rows(cfg, "zeroshot/twitter-financial-news-sentiment", ("text", "label"), errors)
    yield from _examples("twitter_financial_news", cfg, where, rows, ("text", "label"), errors)


@SOURCES.register("fingpt_sentiment")
def read_fingpt_sentiment(cfg: SourceConfig, errors: RowErrors) -> Iterator[Example]:
    """FinGPT sentiment instructions (hub or local jsonl/parquet/csv: input, output); graded outputs folded to 3."""
    source, columns = "fingpt_sentiment", ("input", "output")
    label_map = _label_map(cfg)
    where, rows = _rows(cfg, "FinGPT/fingpt-sentiment-train", columns, errors)
    for line, record in rows:
        meta = {"instruction": record.get("instruction"), "output": record["output"], "line": line}
        example = _to_example(
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
    label_map = _label_map(cfg)
    where, rows = _rows(cfg, "sujet-ai/Sujet-Finance-Instruct-177k", ("inputs", "answer", "task_type"), errors)
    left_out: Counter[str] = Counter()
    for line, record in rows:
        task_type = str(record["task_type"]).strip().lower()
        if task_type not in _SUJET_SENTIMENT_TASKS:
            left_out[task_type] += 1
            continue
        prompt = record.get("user_prompt")
        text_column = "user_prompt" if isinstance(prompt, str) and prompt.strip() else "inputs"
        meta = {"dataset": record.get("dataset"), "task_type": task_type, "line": line}
        example = _to_example(
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


def _generic_columns(cfg: SourceConfig) -> tuple[str, str]:
    return cfg.text_column or "text", cfg.label_column or "label"


@SOURCES.register("csv")
def read_csv(cfg: SourceConfig, errors: RowErrors) -> Iterator[Example]:
    """Any local UTF-8 CSV with a header: text_column, label_column (default text, label), optional label_map."""
    path, columns = _local_file(cfg), _generic_columns(cfg)
    yield from _examples("csv", cfg, path, _csv_rows(path, columns, errors), columns, errors)


@SOURCES.register("jsonl")
def read_jsonl(cfg: SourceConfig, errors: RowErrors) -> Iterator[Example]:
    """Any local JSON Lines file: text_column, label_column (default text, label), optional label_map."""
    path, columns = _local_file(cfg), _generic_columns(cfg)
    yield from _examples("jsonl", cfg, path, _jsonl_rows(path, columns, errors), columns, errors)


@SOURCES.register("parquet")
def read_parquet(cfg: SourceConfig, errors: RowErrors) -> Iterator[Example]:
    """Any local Parquet file: text_column, label_column (default text, label), optional label_map."""
    path, columns = _local_file(cfg), _generic_columns(cfg)
    yield from _examples("parquet", cfg, path, _parquet_rows(path, columns), columns, errors)


@SOURCES.register("hub")
def read_hub(cfg: SourceConfig, errors: RowErrors) -> Iterator[Example]:
    """Any hub dataset (name hub:<dataset id>): text_column, label_column (default text, label), label_map."""
    dataset_id = cfg.name.partition(":")[2] or cfg.path
    if not dataset_id:
        raise DataError("no dataset id", field="name", expected="hub:<dataset id>", got=cfg.name)
    columns = _generic_columns(cfg)
    where = _hub_name(dataset_id, cfg.subset, cfg.split)
    label_map = _label_map(cfg)
    for row, record in _hub_rows(where, dataset_id, cfg.subset, cfg.split, columns):
        example = _to_example(
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
    where, rows = _rows(cfg, "sujet-ai/Sujet-Finance-Instruct-177k", (), errors)
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


# --- transactions -------------------------------------------------------------------------------------------------


@SOURCES.register("transactions")
def read_transactions(cfg: SourceConfig, errors: RowErrors) -> Iterator[Example]:
    """Transaction files (.csv or .jsonl): description, amount, optional date and category (id, name or synonym).

    ``text_column`` (default ``description``) and ``label_column`` (default ``category``) name the columns; an
    ``amount`` column, when there, is appended to the text ("STARBUCKS #12 SEATTLE WA -6.50") and a ``date`` column
    kept in ``meta``. Rows without a category are left out (counted, not errors); ``label_map`` maps other names.
    """
    from finsent.data.transactions import CATEGORY_IDS, normalize_category

    label_map = cfg.label_map
    bad = {k: v for k, v in (label_map or {}).items() if v not in CATEGORY_IDS}
    if bad:
        raise ConfigError(
            f"label_map values must be category ids ({'|'.join(CATEGORY_IDS)}); got {bad}", field="label_map"
        )
    text_column, label_column = cfg.text_column or "description", cfg.label_column or "category"
    path = _local_file(cfg)
    rows = _table_rows(path, (text_column,), errors)
    unlabeled = 0
    for line, record in rows:
        description = record[text_column]
        if not isinstance(description, str) or not description.strip():
            errors.report(
                "empty_text",
                DataError("empty description", path=path, line=line, field=text_column, expected="non-empty text"),
            )
            continue
        raw = record.get(label_column)
        if raw is None or (isinstance(raw, str) and not raw.strip()):
            unlabeled += 1
            continue
        label = normalize_category(raw, label_map)
        if label is None:
            errors.report(
                "unknown_label",
                DataError(
                    "unknown category",
                    path=path,
                    line=line,
                    field=label_column,
                    expected="a category id, name or synonym (finsent ls tasks; or a label_map)",
                    got=raw,
                ),
            )
            continue
        amount = record.get("amount")
        amount_text = str(amount).strip() if amount is not None else ""
        if amount_text and not any(c.isdigit() for c in amount_text):
            errors.report(
                "bad_amount",
                DataError("not an amount", path=path, line=line, field="amount", expected="a number", got=amount),
            )
            continue
        text = " ".join(f"{description.strip()} {amount_text}".split())
        meta = {"line": line, "date": record.get("date"), "amount": amount_text or None}
        yield Example(example_id("transactions", text), text, label, "transactions", meta)
    if unlabeled:
        errors.filtered["transactions: rows without a category"] += unlabeled
