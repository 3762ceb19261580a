"""GRPO with the real reward functions on a tiny Qwen3 over the data stage's output from the real PhraseBank file.

A random tiny model never writes a ``<reasoning>``/``<answer>`` block, so every reward is 0 and no group has the
variance GRPO learns from. The ``warm_tiny_model_dir`` fixture stands in for the SFT warm-up at full strength:
a tiny Qwen3 with a small in-process tokenizer, fully fine-tuned for a few seconds on the teacher's completions,
so that sampled completions sometimes get the format and the label right and sometimes not.
"""

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

import finsent.grpo
from finsent.checks import validate_recipe
from finsent.cli import main
from finsent.config import load_config
from finsent.errors import ConfigError
from finsent.grpo import grpo_rows, train_grpo
from finsent.training import read_jsonl
from recording_trainer import Killed, assert_every_trainable_parameter_changed, record_trainers
from warm_model import warm_tiny_qwen3

TRAINER = (
    "{max_steps: 3, per_device_train_batch_size: 8, num_generations: 4, max_completion_length: 64, "
    "learning_rate: 0.01, temperature: 1.0, save_steps: 2, logging_steps: 1, bf16: false, seed: 0}"
)
LORA = "{r: 4, lora_alpha: 8, lora_dropout: 0.0, target_modules: all-linear}"
PLATEAU = "{warmup_steps: 0, window_steps: 1, patience: 10, accuracy_every_steps: 2, accuracy_examples: 4}"


@pytest.fixture(scope="module")
def warm_tiny_model_dir(tmp_path_factory, phrasebank_data_dir):
    """A tiny Qwen3 fully fine-tuned (150 steps, plain torch) to write completions close to the contract."""
    return warm_tiny_qwen3(phrasebank_data_dir / "train.jsonl", tmp_path_factory.mktemp("warm-tiny-qwen3"))


def grpo_config(out, data_dir, model_dir, *extra):
    return load_config(
        None,
        [
            f"output_dir={out}",
            f"data.output_dir={data_dir}",
            f"grpo.model={model_dir}",
            f"grpo.trainer={TRAINER}",
            f"grpo.lora={LORA}",
            f"grpo.plateau={PLATEAU}",
            *extra,
        ],
    )


@pytest.fixture
def recorded(monkeypatch):
    """The real GRPOTrainer, recording each trainer and its initial adapter values, killed on request."""
    return record_trainers(monkeypatch, finsent.grpo, "GRPOTrainer")


@pytest.mark.slow
def test_grpo_with_the_real_rewards_trains_every_lora_parameter_and_resumes_after_a_kill(
    tmp_path, phrasebank_data_dir, warm_tiny_model_dir, recorded
):
    trainers, kill_at = recorded
    result = train_grpo(grpo_config(tmp_path / "a", phrasebank_data_dir, warm_tiny_model_dir))
    trainer = trainers[-1]
    assert trainer.initial and all("lora_" in name for name in trainer.initial)
    assert_every_trainable_parameter_changed(trainer)

    out = tmp_path / "a" / "grpo"
    history = trainer.state.log_history
    rewards = {key for entry in history for key in entry if key.startswith("rewards/")}
    assert {
        f"rewards/{name}_reward/mean" for name in ("correctness", "format", "reasoning_quality", "consistency")
    } <= (rewards)
    assert any(entry.get("reward_std", 0) > 0 for entry in history)  # the groups had something to learn from
    assert [e["step"] for e in history if "validation_accuracy" in e] == [2]
    evidence = json.loads((out / "plateau.json").read_text())
    assert evidence["last_step"] == 3 and not evidence["stopped_early"]
    assert len(evidence["frac_reward_zero_std"]) == 3 and len(evidence["validation_accuracy"]) == 1
    for name in ("plateau.png", "zero_std_share.png", "plots/frac_reward_zero_std.png", "adapter_model.safetensors"):
        assert (out / name).is_file(), name
    # checkpoints at steps 2 and 3 (the end); the best is the one saved at the higher window mean (window = 1 step)
    reward_at = {e["step"]: e["reward"] for e in history if "reward" in e}
    assert result.best_checkpoint == str(out / f"checkpoint-{max((2, 3), key=reward_at.get)}")

    # Killed after checkpoint-2, resumed: the same adapter as the run left alone.
    kill_at.append(2)
    cfg_b = grpo_config(tmp_path / "b", phrasebank_data_dir, warm_tiny_model_dir)
    with pytest.raises(Killed):
        train_grpo(cfg_b)
    cfg_b.grpo.resume = True
    assert train_grpo(cfg_b).resumed_from.endswith("checkpoint-2")
    left_alone = load_file(out / "adapter_model.safetensors")
    after_kill = load_file(tmp_path / "b" / "grpo" / "adapter_model.safetensors")
    for name, tensor in left_alone.items():
        assert torch.allclose(tensor, after_kill[name], atol=1e-6), name


@pytest.mark.slow
def test_cli_data_sft_grpo_on_the_tiny_cpu_recipe_with_a_real_kill(tmp_path):
    """The offline recipe end to end through the CLI: tiny:qwen3 with its own tokenizer, SFT killed with SIGKILL
    after its first checkpoint and resumed, then GRPO on from the SFT adapter."""
    run = f"output_dir={tmp_path}"
    assert main(["data", "--config", "tiny-cpu", run]) == 0
    sft = tmp_path / "sft"
    proc = subprocess.Popen([sys.executable, "-m", "finsent", "sft", "--config", "tiny-cpu", run])
    deadline = time.monotonic() + 300
    while not _complete_checkpoints(sft) and proc.poll() is None:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    proc.kill()
    assert proc.wait() == -9, "the run finished before it could be killed"
    assert not (sft / "result.json").exists()
    newest = _complete_checkpoints(sft)[-1]  # a later one may have been cut off mid-save by the kill
    assert main(["sft", "--config", "tiny-cpu", run]) == 2  # checkpoints and no --resume: a clear error
    assert main(["sft", "--config", "tiny-cpu", run, "--resume"]) == 0
    assert Path(json.loads((sft / "result.json").read_text())["resumed_from"]).name == newest.name
    assert main(["grpo", "--config", "tiny-cpu", run]) == 0
    grpo = tmp_path / "grpo"
    assert json.loads((grpo / "adapter_config.json").read_text())["base_model_name_or_path"] == str(sft / "tiny-qwen3")
    assert (grpo / "plateau.json").is_file() and (grpo / "result.json").is_file()


def test_reward_weights_must_match_the_rewards(tmp_path):
    recipe = tmp_path / "r.yaml"
    recipe.write_text("grpo:\n  rewards: [format, correctness]\n  trainer:\n    reward_weights: [1.0]\n")
    with pytest.raises(ConfigError) as err:
        load_config(recipe)
    assert f"{recipe}:4: grpo.trainer.reward_weights" in str(err.value)


def test_unknown_reward_lists_the_known_ones(tmp_path):
    recipe = tmp_path / "r.yaml"
    recipe.write_text("grpo:\n  rewards: [format, corectness]\n")
    with pytest.raises(ConfigError) as err:
        validate_recipe(load_config(recipe))
    assert f"{recipe}:2: grpo.rewards.1" in str(err.value) and "Did you mean 'correctness'" in str(err.value)


def test_an_adapter_is_trained_on_as_it_is(tmp_path, phrasebank_data_dir):
    adapter = tmp_path / "adapter"
    adapter.mkdir()
    (adapter / "adapter_config.json").write_text(json.dumps({"base_model_name_or_path": "base"}))
    recipe = tmp_path / "r.yaml"
    recipe.write_text(
        f"data: {{output_dir: {phrasebank_data_dir}}}\ngrpo:\n  model: {adapter}\n  trainer: {{bf16: false}}\n"
        "  lora: {r: 4}\n"
    )
    with pytest.raises(ConfigError) as err:
        train_grpo(load_config(recipe))
    assert f"{recipe}:5: grpo.lora" in str(err.value)


def test_grpo_rows_use_the_shared_prompt_and_keep_the_reward_columns(phrasebank_data_dir):
    cfg = load_config(None, ["prompt.user_template='Headline: {text}'"])
    row = read_jsonl(phrasebank_data_dir / "train.jsonl")[0]
    (grpo_row,) = grpo_rows([row], cfg.get_task())
    assert grpo_row["prompt"] == [
        {"role": "system", "content": cfg.prompt.system},
        {"role": "user", "content": f"Headline: {row['text']}"},
    ]
    assert (grpo_row["label"], grpo_row["text"], grpo_row["id"]) == (row["label"], row["text"], row["id"])


def test_grpo_before_sft_says_to_run_sft_first(tmp_path, phrasebank_data_dir):
    cfg = load_config(
        None, [f"output_dir={tmp_path}", f"data.output_dir={phrasebank_data_dir}", "grpo.trainer={bf16: false}"]
    )
    with pytest.raises(ConfigError, match="run `finsent sft` first"):
        train_grpo(cfg)


def _complete_checkpoints(out: Path) -> list[Path]:
    """The checkpoints whose trainer_state.json (written last) parses, oldest first."""
    complete = []
    for state in sorted(out.glob("checkpoint-*/trainer_state.json"), key=lambda p: int(p.parent.name.split("-")[1])):
        try:
            json.loads(state.read_text())
        except ValueError:
            continue
        complete.append(state.parent)
    return complete
