"""The bad-input corpus in tests/bad_inputs: each file gives one clear error naming file, line and field, exit code 2,
and no output that looks complete (no split files, no result.json)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from finsent.cli import main

CORPUS = Path(__file__).parent / "bad_inputs"
SPLIT_FILES = ("train.jsonl", "validation.jsonl", "test.jsonl", "result.json", "report.json")

# file, source reader, the located start of the message, what it must say.
DATA_CASES = [
    ("stray_quote.csv", "csv", "stray_quote.csv:2: csv", "malformed CSV"),
    ("wrong_delimiter.csv", "csv", "wrong_delimiter.csv:1: text", "got ['text;label']"),
    ("latin1_in_utf8.csv", "csv", "latin1_in_utf8.csv:3: encoding", "expected valid utf-8 text"),
    ("broken_line.jsonl", "jsonl", "broken_line.jsonl:2: record", "broken JSON"),
    ("missing_column.csv", "csv", "missing_column.csv:1: text", "expected a column named 'text'"),
    ("empty.csv", "csv", "empty.csv:1: header", "empty file"),
    ("label_outside_map.csv", "csv", "label_outside_map.csv:3: label", "got 'bearish'"),
    ("nul_byte.csv", "csv", "nul_byte.csv:3: content", "NUL byte"),
    ("empty.csv", "twitter_financial_news", "empty.csv:1: header", "empty file"),
    ("stray_quote.csv", "twitter_financial_news", "stray_quote.csv:2: csv", "malformed CSV"),
]
CONFIG_CASES = [
    ("unknown_key.yaml", "data", "unknown_key.yaml:5: data.teachr", "unknown key; valid keys: sources, teacher"),
    ("wrong_type.yaml", "data", "wrong_type.yaml:5: data.seed", "expected an int, got 'forty-two'"),
    ("missing_model.yaml", "sft", "missing_model.yaml:3: sft.model", "no such model directory"),
]


def run_cli(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    code = main(argv)
    return code, capsys.readouterr().err


def run_data(out: Path, capsys: pytest.CaptureFixture[str], *paths: Path, reader: str = "csv", extra=()):
    """``finsent data`` on the tiny recipe with ``paths`` as its sources; return the exit code and stderr."""
    sources = ", ".join(f"{{name: {reader}, path: '{path}'}}" for path in paths)
    return run_cli(["data", "--config", "tiny-cpu", f"output_dir={out}", f"data.sources=[{sources}]", *extra], capsys)


def assert_one_located_error(err: str, where: str, says: str) -> None:
    lines = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(lines) == 1, err
    assert re.search(rf"^error: \S*{re.escape(where)}: ", lines[0]), lines[0]
    assert says in lines[0] and "Traceback" not in err


def assert_nothing_that_looks_done(out: Path) -> None:
    left = sorted(p.name for p in out.rglob("*") if p.is_file()) if out.exists() else []
    assert not set(left) & set(SPLIT_FILES), left
    assert not [name for name in left if name.endswith(".tmp")], left


@pytest.mark.parametrize(("name", "reader", "where", "says"), DATA_CASES)
def test_bad_data_files(tmp_path, capsys, name, reader, where, says):
    out = tmp_path / "run"
    code, err = run_data(out, capsys, CORPUS / name, reader=reader)
    assert code == 2
    assert_one_located_error(err, where, says)
    assert_nothing_that_looks_done(out)


@pytest.mark.parametrize(("name", "stage", "where", "says"), CONFIG_CASES)
def test_bad_configs(tmp_path, capsys, name, stage, where, says):
    out = tmp_path / "run"
    code, err = run_cli([stage, "--config", str(CORPUS / name), f"output_dir={out}"], capsys)
    assert code == 2
    assert_one_located_error(err, where, says)
    assert_nothing_that_looks_done(out)


def test_a_megabyte_text_is_refused_with_its_line(tmp_path, capsys):
    path = tmp_path / "big.csv"
    big = "Sales rose. " * 90_000
    path.write_text(f'text,label\nOperating profit rose to EUR 13.1 mn,positive\n"{big}",positive\n')
    out = tmp_path / "run"
    code, err = run_data(out, capsys, path)
    assert code == 2
    assert_one_located_error(err, "big.csv:3: text", "expected at most 100,000 characters, got 1079999")
    assert_nothing_that_looks_done(out)


def test_skip_mode_counts_bad_rows_and_keeps_the_good_ones(tmp_path, capsys):
    out = tmp_path / "run"
    paths = [CORPUS / name for name in ("label_outside_map.csv", "nul_byte.csv", "bom.csv")]
    assert run_data(out, capsys, *paths, extra=["data.on_error=skip"])[0] == 0
    report = (out / "data" / "report.json").read_text()
    assert '"unknown_label": 1' in report and '"nul_byte": 1' in report


def test_a_bom_is_not_part_of_the_first_column(tmp_path, capsys):
    out = tmp_path / "run"
    assert run_data(out, capsys, CORPUS / "bom.csv")[0] == 0
    rows = [line for split in ("train", "validation", "test") for line in (out / "data" / f"{split}.jsonl").open()]
    assert len(rows) == 2 and not any("\ufeff" in row for row in rows)


def test_nothing_usable_is_an_error_not_an_empty_dataset(tmp_path, capsys):
    path = tmp_path / "short.csv"
    path.write_text("text,label\nUp,positive\nDown,negative\n")
    out = tmp_path / "run"
    code, err = run_data(out, capsys, path)
    assert code == 2
    assert_one_located_error(err, "data.sources", "text_too_short 2")
    assert_nothing_that_looks_done(out)
