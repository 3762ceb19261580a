"""Named protocols: the seeded split equals datasets' train_test_split, and comparability is checked."""

import json
import math

import pytest
from datasets import Dataset

from finsent.checks import validate_recipe
from finsent.config import EvalSetConfig, load_config
from finsent.data.readers import Example, RowErrors
from finsent.errors import ConfigError
from finsent.eval import read_test_set
from finsent.eval.protocols import PROTOCOLS, apply_protocol, split_indices


@pytest.mark.parametrize(("n", "test_size"), [(4846, 0.25), (1173, 0.226), (37, 0.25)])
def test_split_matches_datasets_train_test_split(n, test_size):
    """FinGPT cuts its test sets with datasets' train_test_split(seed=42): the same rows must come out."""
    ds = Dataset.from_dict({"i": list(range(n))}).train_test_split(test_size=test_size, seed=42)
    train, test = split_indices(n, test_size, 42)
    assert test == ds["test"]["i"] and train == ds["train"]["i"]


def examples(n):
    return [Example(str(i), f"text {i}", "neutral", "financial_phrasebank") for i in range(n)]


def test_published_protocol_keeps_its_anchors_only_when_the_rows_match():
    cfg = EvalSetConfig(name="financial_phrasebank", path="Sentences_50Agree.txt", protocol="fpb_50agree")
    split = apply_protocol(cfg, examples(4846))
    assert len(split.test) == 1212 and len(split.rest) == 3634
    assert {a.model: a.value for a in split.anchors} == {"FinGPT v3.3": 0.882, "FinBERT": 0.880}
    assert split.note == ""
    short = apply_protocol(cfg, examples(100))
    assert short.anchors == () and "100 rows, the protocol 4846" in short.note


def test_holdout_uses_the_configured_share_and_seed():
    cfg = EvalSetConfig(name="csv", path="x.csv", protocol="holdout", test_size=0.2, split_seed=3)
    split = apply_protocol(cfg, examples(50))
    assert [ex.id for ex in split.test] == [str(i) for i in split_indices(50, 0.2, 3)[1]]
    assert cfg.display_name == "csv:x"


def test_protocol_on_another_source_is_refused_at_its_recipe_line(tmp_path):
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(
        "eval:\n"
        "  baselines: [majority]\n"
        "  test_sets:\n"
        "    - {name: twitter_financial_news, path: sent_valid.csv, protocol: fpb_50agree}\n",
        encoding="utf-8",
    )
    with pytest.raises(ConfigError, match=rf"{recipe}:4: eval.test_sets.0.name: .*expected financial_phrasebank"):
        validate_recipe(load_config(recipe), ["eval"])
    typo = load_config(None, ["eval.baselines=[majority]", "eval.test_sets=[{name: fiqa_sa, protocol: fiqa}]"])
    with pytest.raises(ConfigError, match="Did you mean 'fiqa_sa'"):
        validate_recipe(typo, ["eval"])


def test_split_fields_are_checked():
    with pytest.raises(ConfigError, match="test_size"):
        EvalSetConfig(name="csv", protocol="holdout")
    with pytest.raises(ConfigError, match="fixes its own split"):
        EvalSetConfig(name="financial_phrasebank", protocol="fpb_50agree", test_size=0.3)
    assert "tfns_validation" in PROTOCOLS


def test_fiqa_protocol_reads_headlines_then_posts_as_one_set(shared_data):
    fiqa = shared_data / "fiqa_2018_task1"
    cfg = EvalSetConfig(
        name="fiqa_sa",
        path=str(fiqa / "task1_headline_ABSA_train.json"),
        extra_paths=[str(fiqa / "task1_post_ABSA_train.json")],
        protocol="fiqa_sa",
    )
    rows = read_test_set(cfg, RowErrors())
    assert len(rows) == 436 + 675
    assert rows[0].meta["fiqa_id"] in json.loads((fiqa / "task1_headline_ABSA_train.json").read_text())
    split = apply_protocol(cfg, rows)
    assert len(split.test) == math.ceil(0.226 * len(rows))
    assert split.anchors[0].value == 0.874 and "test rows may differ" in split.note
