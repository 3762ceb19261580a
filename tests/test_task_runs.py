"""Whole tiny runs, data -> SFT -> eval, for the second use: a Sujet-schema file and synthetic transactions."""

import json

import pytest

from finsent.cli import main
from finsent.config import load_config
from finsent.run import run_recipe
from sujet_schema import write_sujet_parquet

SFT = (
    "sft.trainer={max_steps: 3, per_device_train_batch_size: 2, learning_rate: 1.0e-3, max_length: 256, "
    "packing: true, save_steps: 3, logging_steps: 1, bf16: false, seed: 0}"
)


@pytest.mark.slow
def test_instruct_run_on_a_sujet_schema_file(tmp_path, capsys):
    sujet = write_sujet_parquet(tmp_path / "sujet.parquet", 12)
    out = tmp_path / "run"
    overrides = [
        f"output_dir={out}",
        f"data.sources=[{{name: instruct, path: '{sujet}'}}]",
        "data.mixture.total=50",
        "data.split={validation: 0.1, test: 0.2}",
        SFT,
        f"eval.models=[{{path: '{out / 'sft'}', name: sft, max_new_tokens: 8, batch_size: 16}}]",
        "eval.bootstrap_resamples=50",
    ]
    assert main(["run", "--config", "tiny-cpu-instruct", *overrides]) == 0
    printed = capsys.readouterr().out
    assert "finsent eval (instructions, by task type)" in printed and "yes_no_accuracy" in printed
    assert (out / "sft" / "adapter_config.json").is_file() and (out / "sft" / "tokenizer_config.json").is_file()
    rows = json.loads((out / "eval" / "metrics.json").read_text())
    by_type = {row["task_type"]: row for row in rows}
    test_types = {json.loads(line)["task_type"] for line in (out / "data" / "test.jsonl").read_text().splitlines()}
    assert set(by_type) == test_types | {"all"}
    assert by_type["yes_no_question"]["metric"] == "yes_no_accuracy"
    assert by_type["sentiment_analysis"]["metric"] == "sentiment_accuracy"
    assert by_type["sentiment_analysis"]["sentiment_macro_f1"] is not None
    assert by_type["qa_with_context"]["metric"] == "token_f1" and by_type["qa_with_context"]["rouge_l"] is not None
    assert by_type["all"]["n"] == sum(row["n"] for t, row in by_type.items() if t != "all")
    markdown = (out / "eval" / "report.md").read_text()
    assert "## Results by task type" in markdown and "yes_no_question" in markdown
    assert json.loads((out / "eval" / "result.json").read_text())["stage"] == "eval"


@pytest.mark.slow
def test_transactions_run_on_synthetic_data_scored_on_the_shared_file_too(tmp_path, shared_data):
    shared = shared_data / "transaction_categorization" / "sample_transactions_1500.csv"
    out = tmp_path / "run"
    test_sets = (
        f"eval.test_sets=[{{name: transactions, path: '{out / 'data' / 'test.jsonl'}', text_column: text, "
        f"label_column: label, display_name: synthetic_test}}, {{name: transactions, path: '{shared}', "
        "text_column: text, label_column: label, max_rows: 48, display_name: shared}]"
    )
    cfg = load_config(
        "tiny-cpu-transactions",
        [
            f"output_dir={out}",
            "data.sources.0.num_examples=240",
            "sft.tiny={}",
            SFT,
            f"eval.models=[{{path: '{out / 'sft'}', name: sft, max_new_tokens: 8, batch_size: 16}}]",
            f"eval.train={{name: transactions, path: '{out / 'data' / 'train.jsonl'}', text_column: text, "
            "label_column: label}",
            test_sets,
            "eval.bootstrap_resamples=50",
        ],
    )
    outcomes = run_recipe(cfg)
    assert [o.status for o in outcomes] == ["ran", "ran", "ran"]
    rows = {(row["model"], row["test_set"]): row for row in outcomes[-1].result.rows}
    assert set(rows) == {(m, t) for m in ("rules", "majority", "sft") for t in ("synthetic_test", "shared")}
    model = rows["sft", "shared"]
    assert model["n"] == 48 and model["format_compliance"] is not None
    assert len(model["confusion"]["counts"]) == 12
    report = (out / "eval" / "report.md").read_text()
    assert "confusion_sft_shared.png" in report and (out / "eval" / "confusion_sft_shared.png").is_file()
