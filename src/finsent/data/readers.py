"""The records every stage passes around (``Example``, ``InstructExample``) and the generic readers of local files
(CSV, JSON Lines, Parquet) and hub datasets that the named sources build on.

Every reader names file, line (or row) and field in its errors, and with ``on_error: skip`` counts skipped rows by
reason instead of stopping. Text files report 1-based physical lines; Parquet files and hub datasets report the
0-based row index (``ds[row]``).
"""

from __future__ import annotations

import codecs
import csv
import hashlib
import json
import logging
import re
import unicodedata
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

import datasets
import pyarrow as pa
import pyarrow.parquet as pq

from finsent.anonymize import anonymize_text
from finsent.config import SourceConfig
from finsent.data.labels import check_label_map, describe_labels, normalize_label
from finsent.errors import ConfigError, DataError

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


# Longer texts are almost always a broken file (an unclosed quote swallowing the rest); the few long instruction
# contexts kept by the instruct task stay far below it.
MAX_TEXT_CHARS = 100_000
Row = tuple[int, dict[str, Any]]
"""A record and where it is: the line where it starts (text files) or its row index (Parquet, hub)."""

_HUB_ID = re.compile(r"[A-Za-z0-9][\w.-]*/[\w.-]+")
_FILE_SUFFIXES = frozenset({".txt", ".csv", ".json", ".jsonl", ".parquet"})


@dataclass(frozen=True)
class Line:
    """One physical line; ``problem`` (reason, error) is set when it does not decode or holds a NUL byte."""

    number: int
    text: str
    problem: tuple[str, DataError] | None


def local_file(cfg: SourceConfig, expected: str = "an existing file") -> Path:
    if cfg.path is None:
        raise DataError(f"source {cfg.name!r} reads a local file", field="path", expected=expected, got=None)
    path = Path(cfg.path).expanduser()
    if not path.is_file():
        raise DataError(
            "not a file" if path.exists() else "no such file", path=cfg.path, field="path", expected=expected
        )
    return path


def locate_source(cfg: SourceConfig, default_hub_id: str) -> Path | str:
    """Return the local file named by ``cfg.path``, else the hub dataset id to load (``default_hub_id`` if none)."""
    if cfg.path is None:
        return default_hub_id
    path = Path(cfg.path).expanduser()
    if not path.exists() and path.suffix not in _FILE_SUFFIXES and _HUB_ID.fullmatch(cfg.path):
        return cfg.path
    return local_file(cfg, expected="an existing file or a hub dataset id (owner/name)")


def source_label_map(cfg: SourceConfig) -> dict[str, str] | None:
    if cfg.label_map is not None:
        try:
            check_label_map(cfg.label_map)
        except ValueError as err:
            raise ConfigError(str(err), field="label_map") from err
    return cfg.label_map


def read_bytes(path: Path, field: str, expected: str) -> bytes:
    data = path.read_bytes()
    if not data.removeprefix(codecs.BOM_UTF8).strip():
        raise DataError("empty file", path=path, line=1, field=field, expected=expected)
    return data


def decode_lines(path: Path, data: bytes, encoding: str) -> list[Line]:
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
        lines.append(Line(number, text, problem))
    return lines


def require_columns(where: str | Path, line: int | None, columns: Iterable[str], found: list[str]) -> None:
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


def csv_rows(path: Path, columns: tuple[str, ...], errors: RowErrors) -> Iterator[Row]:
    """Yield the records of a UTF-8 CSV file with a header; quoted fields may span lines."""
    lines = decode_lines(path, read_bytes(path, "header", "a header row naming the columns"), "utf-8")
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
            require_columns(path, start, columns, header)
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


def jsonl_rows(path: Path, columns: tuple[str, ...], errors: RowErrors) -> Iterator[Row]:
    """Yield the JSON objects of a UTF-8 JSON Lines file; blank lines are allowed."""
    lines = decode_lines(path, read_bytes(path, "record", "one JSON object per line"), "utf-8")
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


def parquet_rows(path: Path, columns: tuple[str, ...]) -> Iterator[Row]:
    data = read_bytes(path, "content", "a Parquet file")
    try:
        table = pq.read_table(pa.BufferReader(data))
    except pa.ArrowException as err:
        raise DataError(f"unreadable Parquet: {err}", path=path, field="content") from err
    require_columns(path, None, columns, table.column_names)
    yield from enumerate(table.to_pylist())


def hub_rows(where: str, dataset_id: str, subset: str | None, split: str, columns: tuple[str, ...]) -> Iterator[Row]:
    try:
        ds = datasets.load_dataset(dataset_id, subset, split=split)
    except Exception as err:  # offline mode, a missing config or split, the network: all end the same way here
        raise DataError(
            f"could not load the hub dataset: {type(err).__name__}: {err}", path=where, field="path"
        ) from err
    require_columns(where, None, columns, ds.column_names)
    yield from enumerate(ds)


def hub_name(dataset_id: str, subset: str | None, split: str) -> str:
    return f"{dataset_id}/{subset}[{split}]" if subset else f"{dataset_id}[{split}]"


def table_rows(path: Path, columns: tuple[str, ...], errors: RowErrors) -> Iterator[Row]:
    if path.suffix == ".jsonl":
        return jsonl_rows(path, columns, errors)
    if path.suffix == ".parquet":
        return parquet_rows(path, columns)
    if path.suffix == ".csv":
        return csv_rows(path, columns, errors)
    raise DataError(
        "unknown file type", path=path, field="path", expected="a .jsonl, .parquet or .csv file", got=path.suffix
    )


def source_rows(
    cfg: SourceConfig, default_hub_id: str, columns: tuple[str, ...], errors: RowErrors
) -> tuple[str | Path, Iterator[Row]]:
    """Return where the records come from and the records: a local file by its suffix, else the hub."""
    located = locate_source(cfg, default_hub_id)
    if isinstance(located, Path):
        return located, table_rows(located, columns, errors)
    where = hub_name(located, cfg.subset, cfg.split)
    return where, hub_rows(where, located, cfg.subset, cfg.split, columns)


def to_example(
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


def read_examples(
    source: str, cfg: SourceConfig, where: str | Path, rows: Iterator[Row], columns: tuple[str, str], errors: RowErrors
) -> Iterator[Example]:
    label_map = source_label_map(cfg)
    for line, record in rows:
        example = to_example(
            source, record, columns, where=where, line=line, label_map=label_map, errors=errors, meta={"line": line}
        )
        if example:
            yield example


# --- the sources --------------------------------------------------------------------------------------------------
def generic_columns(cfg: SourceConfig) -> tuple[str, str]:
    return cfg.text_column or "text", cfg.label_column or "label"


def anonymize_examples(examples: Sequence[Example]) -> list[Example]:
    """Return the examples with anonymized text (and an instruction's answer and system prompt); ids are recomputed
    from the masked text."""
    masked = []
    for ex in examples:
        text = anonymize_text(ex.text)
        ex = ex if text == ex.text else replace(ex, id=example_id(ex.source, text), text=text)
        if isinstance(ex, InstructExample):
            ex = replace(ex, answer=anonymize_text(ex.answer), system=anonymize_text(ex.system))
        masked.append(ex)
    return masked
