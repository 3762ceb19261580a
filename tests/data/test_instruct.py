"""Instruction data: column layouts, the length filter, task-type mixtures, the data stage on a Sujet-schema file."""

import json
from collections import Counter
from pathlib import Path

import pytest

from finsent.completion import PromptConfig
from finsent.config import MixtureConfig, SourceConfig, load_config
from finsent.data import build_dataset
from finsent.data.instruct import filter_by_length, mix_examples, mixture_targets
from finsent.data.readers import InstructExample, RowErrors
from finsent.data.sources import load_source
from finsent.errors import ConfigError, DataError
from sujet_schema import sujet_rows, write_sujet_parquet


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    return path


def read(path: Path, **settings) -> list[InstructExample]:
    return load_source(SourceConfig(name="instruct", path=str(path), **settings), RowErrors())  # type: ignore[return-value]


def test_sujet_parquet_keeps_user_prompt_system_prompt_and_task_type(tmp_path):
    rows = read(write_sujet_parquet(tmp_path / "sujet.parquet", 2))
    assert len(rows) == 12
    first = rows[0]
    assert isinstance(first, InstructExample)
    source = sujet_rows(2)[0]
    assert (first.text, first.answer, first.system) == (
        source["user_prompt"],
        source["answer"],
        source["system_prompt"],
    )
    assert (first.label, first.meta["dataset"]) == ("sentiment_analysis", "made-up-sentiment_analysis")
    assert Counter(ex.label for ex in rows)["yes_no_question"] == 2


def test_sujet_rows_without_user_prompt_use_inputs(tmp_path):
    path = write_jsonl(
        tmp_path / "s.jsonl",
        [{"inputs": "Instruction: rate it.\nSales rose", "answer": "positive", "user_prompt": "", "system_prompt": "S",
          "task_type": "Sentiment_Analysis"}],
    )  # fmt: skip
    (row,) = read(path)
    assert (row.text, row.system, row.label) == ("Instruction: rate it.\nSales rose", "", "sentiment_analysis")


@pytest.mark.parametrize(
    ("record", "text", "answer"),
    [
        ({"input": "What is EBITDA?", "response": "Earnings before interest ..."}, "What is EBITDA?",
         "Earnings before interest ..."),
        ({"instruction": "Summarize.", "input": "Sales rose 5%.", "output": "Growth."}, "Summarize.\n\nSales rose 5%.",
         "Growth."),
        ({"instruction": "Define a bond.", "input": "", "output": "A debt security."}, "Define a bond.",
         "A debt security."),
        ({"messages": [{"role": "user", "content": "Hi?"}, {"role": "assistant", "content": "Hello."}]}, "Hi?",
         "Hello."),
    ],
)  # fmt: skip
def test_other_instruction_layouts_map_to_messages(tmp_path, record, text, answer):
    (row,) = read(write_jsonl(tmp_path / "f.jsonl", [record]))
    assert (row.text, row.answer, row.label, row.system) == (text, answer, "general", "")


def test_a_file_without_instruction_columns_names_file_line_and_columns(tmp_path):
    path = write_jsonl(tmp_path / "f.jsonl", [{"question_text": "a", "label": "b"}])
    with pytest.raises(DataError, match="no instruction columns") as err:
        read(path)
    assert f"{path}:1: columns" in str(err.value) and "question_text" in str(err.value)
    path = write_jsonl(tmp_path / "g.jsonl", [{"input": "q", "output": "a"}, {"input": "q2", "output": ""}])
    with pytest.raises(DataError, match="empty answer") as err:
        read(path)
    assert f"{path}:2: answer" in str(err.value)


def instruct(i: int, task_type: str, answer: str = "short answer") -> InstructExample:
    return InstructExample(f"id{i}", f"question {i}", task_type, "instruct", answer=answer)


def test_length_filter_estimates_or_counts_with_the_tokenizer(qwen3_tokenizer_dir):
    examples = [instruct(0, "qa"), instruct(1, "qa", "word " * 400)]
    prompt = PromptConfig("sys", "{text}")
    estimated = filter_by_length(examples, prompt, max_tokens=200)
    assert ([e.id for e in estimated.kept], estimated.removed, estimated.counted_with) == (["id0"], 1, "estimate")
    counted = filter_by_length(examples, prompt, max_tokens=200, tokenizer=str(qwen3_tokenizer_dir))
    assert ([e.id for e in counted.kept], counted.removed) == (["id0"], 1)
    assert counted.counted_with == str(qwen3_tokenizer_dir) and 10 < counted.longest_kept < 40


def test_mixture_targets_follow_weights_and_total():
    cfg = MixtureConfig(weights={"qa": 2, "yes_no_question": 1, "sentiment_analysis": 1}, total=10)
    targets = mixture_targets({"qa": 100, "yes_no_question": 100, "sentiment_analysis": 100}, cfg)
    assert sum(targets.values()) == 10 and targets["qa"] == 5
    # Without a total: the largest sample whose shares fit (qa has 6 rows, half the weight: 12 in all).
    assert mixture_targets({"qa": 6, "yes_no_question": 50, "sentiment_analysis": 50}, MixtureConfig(cfg.weights)) == {
        "qa": 6, "yes_no_question": 3, "sentiment_analysis": 3,
    }  # fmt: skip


def test_mixture_is_seeded_keeps_order_and_reports_shortfalls():
    examples = [instruct(i, t) for i, t in enumerate(["qa"] * 30 + ["yes_no_question"] * 3 + ["other"] * 5)]
    cfg = MixtureConfig(weights={"qa": 1, "yes_no_question": 1}, total=20)
    mixed, again = mix_examples(examples, cfg, seed=1), mix_examples(examples, cfg, seed=1)
    assert [e.id for e in mixed.kept] == [e.id for e in again.kept]
    assert [e.id for e in mix_examples(examples, cfg, seed=2).kept] != [e.id for e in mixed.kept]
    assert mixed.counts == {
        "qa": {"available": 30, "target": 10, "kept": 10},
        "yes_no_question": {"available": 3, "target": 10, "kept": 3},
    }
    assert mixed.left_out == {"other": 5}
    positions = [examples.index(e) for e in mixed.kept]
    assert positions == sorted(positions)


def test_data_stage_on_a_sujet_schema_file(tmp_path):
    path = write_sujet_parquet(tmp_path / "sujet.parquet", 20)
    cfg = load_config(
        "tiny-cpu-instruct",
        [
            f"output_dir={tmp_path / 'run'}",
            f"data.sources=[{{name: instruct, path: '{path}'}}]",
            "data.mixture.total=60",
        ],
    )
    result = build_dataset(cfg)
    report = result.report
    assert report["task"] == "instruct" and report["teacher"]["name"] == "none"
    mixture = report["instruct"]["mixture"]
    assert mixture["left_out"] == {"ner_sentiment_analysis": 20}
    assert sum(c["kept"] for c in mixture["task_types"].values()) == result.counts["kept"] == 60
    funnel = report["funnel"]
    assert funnel["rows read"] == 120 and funnel["written"] == 60
    assert funnel["rows read"] - sum(n for step, n in funnel.items() if step not in ("rows read", "written")) == 60
    assert report["instruct"]["length_filter"]["counted_with"] == "estimate"
    rows = [json.loads(line) for split in ("train", "validation", "test") for line in open(result.paths[split])]
    assert len(rows) == 60
    for row in rows:
        system, user, assistant = row["messages"]
        assert (system["content"], user["content"], assistant["content"]) == (
            row["system"],
            row["text"],
            row["answer"],
        )
        assert "<reasoning>" not in assistant["content"]
    card = Path(result.paths["card"]).read_text()
    assert "# Financial instructions" in card and "Mixture by task type (total 60)" in card
    assert "Teacher: none" in card and "| ner_sentiment_analysis (not in the weights) | 20 | 0 | 0 |" in card
    # The test split reads back as instructions, with each row's own system prompt.
    test_rows = read(Path(result.paths["test"]))
    assert {ex.system for ex in test_rows} <= {r["system_prompt"] for r in sujet_rows(1)}


def test_instruct_task_refuses_labeled_sources(tmp_path):
    cfg = load_config(None, [f"output_dir={tmp_path}", "task=instruct"])
    with pytest.raises(ConfigError, match="source demo gives labeled text, not instructions"):
        build_dataset(cfg)
