from pathlib import Path

import pytest

from finsent.config import RecipeConfig, config_hash, dump_config, load_config, resolve_recipe
from finsent.errors import ConfigError


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "recipe.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def test_bundled_recipe_loads_and_stage_dirs_default_under_run_dir():
    cfg = load_config("tiny-cpu")
    assert isinstance(cfg, RecipeConfig)
    assert cfg.data.sources[0].name == "demo"
    assert cfg.data.output_dir == str(Path(cfg.output_dir) / "data")
    assert resolve_recipe("tiny-cpu").name == "tiny-cpu.yaml"


def test_issue_shape_is_accepted(tmp_path):
    path = write(
        tmp_path,
        """
data:
  sources:
    - {name: financial_phrasebank, path: path/to/Sentences_AllAgree.txt}
    - {name: twitter_financial_news, path: path/to/sent_train.csv}
  teacher: {name: lexicon}
  output_dir: runs/x/data
""",
    )
    cfg = load_config(path)
    assert [s.name for s in cfg.data.sources] == ["financial_phrasebank", "twitter_financial_news"]
    assert cfg.data.output_dir == "runs/x/data"


def test_unknown_key_names_file_line_key_and_valid_keys(tmp_path):
    path = write(tmp_path, "data:\n  teacher:\n    name: lexicon\n    temprature: 0.3\n")
    with pytest.raises(ConfigError) as err:
        load_config(path)
    message = str(err.value)
    assert f"{path}:4: data.teacher.temprature" in message
    assert "temperature" in message  # the valid keys are listed


def test_wrong_type_names_line_expected_and_got(tmp_path):
    path = write(tmp_path, "data:\n  seed: 42\n  split:\n    test: lots\n")
    with pytest.raises(ConfigError) as err:
        load_config(path)
    assert str(err.value) == f"{path}:4: data.split.test: expected a number, got 'lots'"


def test_literal_and_list_items_are_checked(tmp_path):
    path = write(tmp_path, "data:\n  on_error: ignore\n")
    with pytest.raises(ConfigError, match=r"recipe.yaml:2: data.on_error: expected one of raise\|skip, got 'ignore'"):
        load_config(path)
    path = write(tmp_path, "data:\n  sources:\n    - {name: demo}\n    - {path: x.csv}\n")
    with pytest.raises(ConfigError, match=r"recipe.yaml:4: data.sources.1.name: missing required key"):
        load_config(path)


def test_cross_field_check_points_at_the_field(tmp_path):
    path = write(tmp_path, "data:\n  split:\n    validation: 0.5\n    test: 0.6\n")
    with pytest.raises(ConfigError) as err:
        load_config(path)
    assert f"{path}:4: data.split.test: expected validation + test < 1" in str(err.value)


def test_overrides_typed_and_located():
    cfg = load_config("tiny-cpu", ["data.seed=7", "data.teacher.mode=blind", "data.split.test=0.2"])
    assert (cfg.data.seed, cfg.data.teacher.mode, cfg.data.split.test) == (7, "blind", 0.2)
    cfg = load_config("tiny-cpu", ["data.sources=[{name: demo, num_examples: 30}]"])
    assert cfg.data.sources[0].num_examples == 30
    with pytest.raises(ConfigError, match=r"<command line>: data.seed: expected an int, got 'seven'"):
        load_config("tiny-cpu", ["data.seed=seven"])
    with pytest.raises(ConfigError, match="expected an override like"):
        load_config("tiny-cpu", ["data.seed"])


def test_duplicate_keys_and_bad_yaml_name_the_line(tmp_path):
    with pytest.raises(ConfigError, match=r"recipe.yaml:3: data.seed: duplicate key"):
        load_config(write(tmp_path, "data:\n  seed: 1\n  seed: 2\n"))
    with pytest.raises(ConfigError, match=r"recipe.yaml:3: invalid YAML: mapping values are not allowed here"):
        load_config(write(tmp_path, "data:\n  seed: 1\n    x: 2\n"))


def test_missing_and_unknown_recipes():
    with pytest.raises(ConfigError, match="recipe not found"):
        load_config("does/not/exist.yaml")
    with pytest.raises(ConfigError, match="bundled recipes: .*tiny-cpu"):
        load_config("no-such-recipe")


def test_dump_roundtrip_and_hash_tracks_changes(tmp_path):
    cfg = load_config("tiny-cpu")
    path = write(tmp_path, dump_config(cfg))
    again = load_config(path)
    assert dump_config(again) == dump_config(cfg)
    assert config_hash(cfg.data) == config_hash(again.data)
    assert config_hash(cfg.data) != config_hash(load_config("tiny-cpu", ["data.seed=1"]).data)


def test_cli_overrides_may_come_before_and_after_options(capsys):
    from finsent.cli import main

    assert main(["validate", "--config", "tiny-cpu", "data.seed=7", "--show", "data.split.test=0.2"]) == 0
    shown = capsys.readouterr().out
    assert "seed: 7" in shown and "test: 0.2" in shown
    with pytest.raises(SystemExit) as exit_info:
        main(["validate", "--config", "tiny-cpu", "--show", "--colour"])
    assert exit_info.value.code == 2 and "unrecognized arguments: --colour" in capsys.readouterr().err


def test_exponent_floats_without_a_dot_are_floats_in_files_and_overrides(tmp_path):
    # YAML 1.1 (PyYAML) reads 1e-5 as a string, which TRL would hand to the optimizer.
    path = write(tmp_path, "sft:\n  trainer: {learning_rate: 2e-4, weight_decay: 1E-2, run_name: 3e5x}\n")
    cfg = load_config(path, ["grpo.trainer.learning_rate=1e-6"])
    assert cfg.sft.trainer == {"learning_rate": 2e-4, "weight_decay": 0.01, "run_name": "3e5x"}
    assert cfg.grpo.trainer["learning_rate"] == 1e-6
