"""The data stage end to end: real files in, ChatML out, with the report and card a user reads."""

import json
from pathlib import Path

import pytest

from finsent.cli import main
from finsent.completion import parse_completion
from finsent.config import load_config
from finsent.data import build_dataset
from finsent.data.readers import normalize_text


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def test_demo_recipe_writes_valid_chatml_splits(tmp_path):
    cfg = load_config("tiny-cpu", [f"output_dir={tmp_path}", "data.sources=[{name: demo, num_examples: 120}]"])
    result = build_dataset(cfg)
    out = Path(result.output_dir)
    for name in (
        "train.jsonl",
        "validation.jsonl",
        "test.jsonl",
        "report.json",
        "README.md",
        "config.yaml",
        "result.json",
    ):
        assert (out / name).is_file(), name
    rows = {split: read_jsonl(out / f"{split}.jsonl") for split in ("train", "validation", "test")}
    all_rows = [row for split_rows in rows.values() for row in split_rows]
    assert len(all_rows) == result.counts["kept"] > 100
    assert len({row["id"] for row in all_rows}) == len(all_rows)
    for row in all_rows:
        system, user, assistant = row["messages"]
        assert (system["role"], user["role"], assistant["role"]) == ("system", "user", "assistant")
        assert system["content"] == cfg.prompt.system
        assert user["content"] == cfg.prompt.user_template.format(text=row["text"])
        parsed = parse_completion(assistant["content"])
        assert parsed.is_format_ok and parsed.label == row["label"]
    report = json.loads((out / "report.json").read_text())
    assert report["funnel"]["written"] == len(all_rows)
    assert sum(sum(c.values()) for c in report["splits"].values()) == len(all_rows)
    card = (out / "README.md").read_text()
    assert "Synthetic data" in card and "Baseline reasoning" in card
    assert "data_summary.png" in card and (out / "data_summary.png").stat().st_size > 10_000
    # the local tracker received the stage's figures
    [logged] = read_jsonl(out / "metrics.jsonl")
    assert logged["data/valid_rate"] == 1.0
    assert logged["data/written"] == len(all_rows)
    assert logged["data/labels/test/positive"] == report["splits"]["test"]["positive"]
    assert logged["data/reasoning_words_mean"] == report["reasoning_words_mean"] > 5


def test_phrasebank_allagree_funnel_adds_up_and_no_text_crosses_splits(tmp_path, phrasebank_allagree):
    cfg = load_config(
        None,
        [
            f"output_dir={tmp_path}",
            f"data.sources=[{{name: financial_phrasebank, path: '{phrasebank_allagree}'}}]",
        ],
    )
    result = build_dataset(cfg)
    report = result.report
    funnel = report["funnel"]
    assert funnel["rows read"] == 2264
    assert report["dedup"]["removed_exact"] >= 1  # AllAgree has 5 duplicated sentences
    assert (
        funnel["rows read"] - funnel["rejected inputs"] - funnel["duplicates removed"] - funnel["dropped to balance"]
        == funnel["sent to teacher"]
    )
    teacher = report["teacher"]
    assert teacher["kept"] + teacher["rejected"] + teacher["failed"] == funnel["sent to teacher"]
    assert funnel["written"] == teacher["kept"]
    texts = {
        split: {normalize_text(r["text"]) for r in read_jsonl(Path(result.paths[split]))}
        for split in ("train", "validation", "test")
    }
    assert not texts["train"] & texts["test"] and not texts["train"] & texts["validation"]
    shares = {split: sum(report["splits"][split].values()) / funnel["written"] for split in texts}
    assert shares["test"] == pytest.approx(0.1, abs=0.01)
    card = (Path(result.output_dir) / "README.md").read_text()
    assert "CC BY-NC-SA 3.0" in card and "Synthetic data" not in card


def test_rerun_resumes_from_generations(tmp_path):
    overrides = [f"output_dir={tmp_path}", "data.sources=[{name: demo, num_examples: 60}]"]
    first = build_dataset(load_config("tiny-cpu", overrides))
    [log] = Path(first.output_dir).glob("generations-*.jsonl")
    lines_before = log.read_text().count("\n")
    second = build_dataset(load_config("tiny-cpu", overrides))
    assert log.read_text().count("\n") == lines_before  # nothing generated twice
    assert second.counts == first.counts
    assert Path(second.paths["train"]).read_text() == Path(first.paths["train"]).read_text()
    # another teacher setting writes its own log instead of reusing records written under the first
    third = build_dataset(load_config("tiny-cpu", [*overrides, "data.teacher.mode=blind"]))
    assert len(list(Path(third.output_dir).glob("generations-*.jsonl"))) == 2
    assert log.read_text().count("\n") == lines_before


def test_cli_data_and_bad_input_exit_codes(tmp_path, capsys):
    assert (
        main(
            ["data", "--config", "tiny-cpu", f"output_dir={tmp_path}", "data.sources=[{name: demo, num_examples: 30}]"]
        )
        == 0
    )
    assert "outputs in" in capsys.readouterr().out
    missing = tmp_path / "nope.csv"
    code = main(
        [
            "data",
            "--config",
            "tiny-cpu",
            f"output_dir={tmp_path / 'b'}",
            f"data.sources=[{{name: csv, path: '{missing}'}}]",
        ]
    )
    err = capsys.readouterr().err
    assert code == 2
    assert str(missing) in err and "Traceback" not in err
    assert not (tmp_path / "b" / "data" / "result.json").exists()
