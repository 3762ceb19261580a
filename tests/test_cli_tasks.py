"""Tasks through the CLI and the eval stage: predict --task transactions, categorization scored with the rules."""

import json
from pathlib import Path

from fake_openai_server import FakeOpenAIServer, Reply
from finsent.cli import main
from finsent.config import load_config
from finsent.data import build_dataset
from finsent.eval import evaluate_model
from finsent.tasks import TASKS

ANSWER = "<reasoning>The merchant keyword STARBUCKS points to Food & Dining.</reasoning><answer>food_dining</answer>"


def test_predict_task_transactions_masks_the_text_and_prints_the_display_name(capsys):
    """The model is a fake OpenAI-compatible server (no model can run here for a fixed answer)."""
    seen = []

    def respond(payload, count):
        seen.append(payload["messages"])
        return Reply(content=ANSWER)

    with FakeOpenAIServer(respond) as server:
        args = ["predict", "--task", "transactions", "--backend", "openai", "--base-url", server.url, "--model", "m"]
        assert main([*args, "POS 4921 XXXX XXXX 1234 SQ *STARBUCKS #1234 SEATTLE WA 6.50"]) == 0
    printed = capsys.readouterr().out
    assert "label: Food & Dining (food_dining)" in printed
    (messages,) = seen
    assert messages[0]["content"] == TASKS.get("transactions").prompt.system
    assert messages[1]["content"] == "Transaction: POS [CARD] SQ *STARBUCKS #1234 SEATTLE WA 6.50"


def test_predict_with_the_sentiment_labels_does_not_accept_a_category(capsys):
    with FakeOpenAIServer(lambda payload, count: Reply(content=ANSWER)) as server:
        args = ["predict", "--backend", "openai", "--base-url", server.url, "--model", "m", "STARBUCKS 6.50"]
        assert main(args) == 0
    assert "label: no answer" in capsys.readouterr().out


def test_eval_scores_categories_with_the_rules_on_synthetic_and_shared_sets(tmp_path, shared_data):
    shared = shared_data / "transaction_categorization" / "sample_transactions_1500.csv"
    out = tmp_path / "run"
    cfg = load_config(
        "tiny-cpu-transactions",
        [
            f"output_dir={out}",
            "data.sources.0.num_examples=240",
            "eval.models=[]",
            "eval.baselines=[rules, majority, tfidf]",
            f"eval.train={{name: transactions, path: '{out / 'data' / 'train.jsonl'}', text_column: text, "
            "label_column: label}",
            f"eval.test_sets=[{{name: transactions, path: '{shared}', text_column: text, label_column: label, "
            "display_name: shared}]",
            "eval.bootstrap_resamples=50",
        ],
    )
    build_dataset(cfg)
    # The data stage's test split: what a recipe that names no test set evaluates.
    cfg.eval.test_sets.insert(0, load_config(None, ["task=transactions", f"output_dir={out}"]).eval.test_sets[0])
    report = evaluate_model(cfg)
    rows = {(row["model"], row["test_set"]): row for row in report.rows}
    assert set(rows) == {(m, t) for m in ("rules", "majority", "tfidf") for t in ("data_test", "shared")}
    rules = rows["rules", "shared"]
    assert rules["n"] == 1600
    assert rules["confusion"]["gold"] == list(TASKS.get("transactions").labels)
    assert len(rules["confusion"]["counts"]) == 12 and len(rules["confusion"]["counts"][0]) == 13
    assert rules["macro_f1"] > rows["majority", "shared"]["macro_f1"]
    assert rows["rules", "data_test"]["accuracy"] > 0.7
    assert (Path(report.output_dir) / rules["confusion_png"]).is_file()
    metrics = json.loads((Path(report.output_dir) / "metrics.json").read_text())
    assert {row["test_set"] for row in metrics} == {"data_test", "shared"}


def test_a_baseline_for_another_task_is_refused(tmp_path, capsys):
    recipe = tmp_path / "r.yaml"
    recipe.write_text(
        "task: transactions\nstages: [data, sft, eval]\ndata: {teacher: {name: rules}}\neval: {baselines: [lexicon]}\n"
    )
    assert main(["validate", "--config", str(recipe)]) == 2
    assert "eval.baselines.0: baseline lexicon answers task sentiment only" in capsys.readouterr().err
