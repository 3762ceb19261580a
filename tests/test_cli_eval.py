"""finsent eval and finsent predict through main(), as a user runs them."""

import json

from finsent.cli import main


def write_recipe(tmp_path, phrasebank, baselines="[majority, lexicon, tfidf]"):
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(f"""
output_dir: {tmp_path / "run"}
eval:
  baselines: {baselines}
  train: {{name: financial_phrasebank, path: "{phrasebank}", max_rows: 400}}
  test_sets:
    - {{name: financial_phrasebank, path: "{phrasebank}", max_rows: 400, protocol: holdout, test_size: 0.25}}
  bootstrap_resamples: 100
""")
    return recipe


def test_eval_with_baselines_writes_the_report_and_prints_a_summary(phrasebank_allagree, tmp_path, capsys):
    assert main(["eval", "--config", str(write_recipe(tmp_path, phrasebank_allagree))]) == 0
    out = tmp_path / "run" / "eval"
    for name in (
        "metrics.json",
        "report.md",
        "report.html",
        "samples.jsonl",
        "config.yaml",
        "result.json",
        "confusion_tfidf_financial_phrasebank_Sentences_AllAgree.png",
    ):
        assert (out / name).is_file(), name
    rows = json.loads((out / "metrics.json").read_text())
    assert [r["model"] for r in rows] == ["majority", "lexicon", "tfidf"] and all(r["n"] == 100 for r in rows)
    printed = capsys.readouterr().out
    assert "finsent eval" in printed and "tfidf" in printed and f"{rows[2]['macro_f1']:.3f}" in printed


def test_eval_errors_exit_2_naming_the_field(phrasebank_allagree, tmp_path, capsys):
    recipe = write_recipe(tmp_path, phrasebank_allagree, baselines="[majority, tfidff]")
    assert main(["eval", "--config", str(recipe)]) == 2
    err = capsys.readouterr().err
    assert "eval.baselines.1" in err and "Did you mean 'tfidf'" in err and str(recipe) in err
    assert (
        main(
            [
                "eval",
                "--config",
                str(recipe),
                "eval.baselines=[lexicon]",
                "eval.train=null",
                "eval.test_sets.0.protocol=fpb_50agree",
                "eval.test_sets.0.test_size=null",
            ]
        )
        == 0
    )


def test_predict_a_text_and_a_file(tiny_model_dir, tmp_path, capsys):
    assert main(["predict", "--model", str(tiny_model_dir), "--max-new-tokens", "4", "Net sales rose 12%."]) == 0
    printed = capsys.readouterr().out
    assert "label:" in printed and "reasoning:" in printed
    source = tmp_path / "in.csv"
    source.write_text("text\nNet sales rose.\nShares fell.\n")
    out = tmp_path / "out.jsonl"
    args = ["predict", "--model", str(tiny_model_dir), "--max-new-tokens", "4", "--input", str(source)]
    assert main([*args, "--output", str(out)]) == 0
    assert [json.loads(line)["id"] for line in out.read_text().splitlines()] == ["1", "2"]
    assert "2 new" in capsys.readouterr().out
    assert main(args) == 2 and "--input needs --output" in capsys.readouterr().err
