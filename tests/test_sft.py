"""SFT on the tiny Qwen3 (real Qwen3 tokenizer) over the data stage's output from the real PhraseBank file."""

import json
import logging
import shutil

import pytest
import torch
import trl
from safetensors.torch import load_file

import finsent.sft
from finsent.config import load_config
from finsent.errors import ConfigError, DataError
from finsent.modeling import load_model, load_tokenizer
from finsent.sft import train_sft
from recording_trainer import Killed, assert_every_trainable_parameter_changed, record_trainers

TRAINER = (
    "{max_steps: 4, per_device_train_batch_size: 2, learning_rate: 0.01, max_length: 256, packing: true, "
    "save_steps: 2, logging_steps: 1, bf16: false, seed: 0}"
)
LORA = "{r: 4, lora_alpha: 8, lora_dropout: 0.0, target_modules: all-linear}"


def sft_config(out, data_dir, model_dir, *extra):
    return load_config(
        None,
        [
            f"output_dir={out}",
            f"data.output_dir={data_dir}",
            f"sft.model={model_dir}",
            f"sft.trainer={TRAINER}",
            f"sft.lora={LORA}",
            *extra,
        ],
    )


@pytest.fixture
def recorded(monkeypatch):
    """The real CompactLossSFTTrainer, recording each trainer and its initial adapter values, killed on request."""
    return record_trainers(monkeypatch, finsent.sft, "CompactLossSFTTrainer")


@pytest.mark.slow
def test_sft_trains_every_lora_parameter_keeps_weights_and_resumes_after_a_kill(
    tmp_path, phrasebank_data_dir, tiny_model_dir, recorded, caplog
):
    trainers, kill_at = recorded
    result = train_sft(sft_config(tmp_path / "a", phrasebank_data_dir, tiny_model_dir))
    trainer = trainers[-1]
    assert trainer.initial and all("lora_" in name for name in trainer.initial)
    assert_every_trainable_parameter_changed(trainer)

    out = tmp_path / "a" / "sft"
    assert result.adapter_dir == str(out) and result.metrics["train_loss"] > 0
    for name in ("adapter_model.safetensors", "adapter_config.json", "tokenizer.json", "config.yaml", "result.json"):
        assert (out / name).is_file(), name
    logged = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert {"loss", "learning_rate", "grad_norm", "train_tokens_per_second"} <= set(logged[0])
    assert (out / "plots" / "loss.png").read_bytes()[:4] == b"\x89PNG"

    # Saving, reloading and merging keep the trained weights, with Qwen3's tied embeddings still tied.
    tokenizer = load_tokenizer(str(out))
    inputs = tokenizer(["Operating profit rose to EUR 13.1 mn."], return_tensors="pt")
    trained = trainer.model.eval()
    with torch.no_grad():
        expected = trained(**inputs).logits
        reloaded = load_model(str(out), device="cpu")
        assert torch.allclose(reloaded(**inputs).logits, expected, atol=1e-5)
        merged = reloaded.merge_and_unload()
        merged.save_pretrained(tmp_path / "merged")
        merged = load_model(str(tmp_path / "merged"), device="cpu")
        assert merged.lm_head.weight.data_ptr() == merged.model.embed_tokens.weight.data_ptr()
        assert torch.allclose(merged(**inputs).logits, expected, atol=1e-4)
        base = load_model(str(tiny_model_dir), device="cpu")
        assert not torch.allclose(base(**inputs).logits, expected, atol=1e-4)

    # Killed after checkpoint-2, resumed: the same adapter as the run left alone.
    kill_at.append(2)
    cfg_b = sft_config(tmp_path / "b", phrasebank_data_dir, tiny_model_dir)
    with pytest.raises(Killed):
        train_sft(cfg_b)
    out_b = tmp_path / "b" / "sft"
    assert (out_b / "checkpoint-2").is_dir() and not (out_b / "result.json").exists()
    with pytest.raises(ConfigError, match="--resume"):
        train_sft(cfg_b)
    # A kill while checkpoint-3 was being saved leaves its trainer_state.json empty: resume from checkpoint-2.
    shutil.copytree(out_b / "checkpoint-2", out_b / "checkpoint-3")
    (out_b / "checkpoint-3" / "trainer_state.json").write_text("")
    cfg_b.sft.resume = True
    with caplog.at_level(logging.WARNING, logger="finsent.training"):
        resumed = train_sft(cfg_b)
    assert resumed.resumed_from.endswith("checkpoint-2")
    assert "checkpoint-3 was cut off while saving" in caplog.text
    left_alone, after_kill = (
        load_file(out / "adapter_model.safetensors"),
        load_file(out_b / "adapter_model.safetensors"),
    )
    assert left_alone.keys() == after_kill.keys()
    for name, tensor in left_alone.items():
        assert torch.allclose(tensor, after_kill[name], atol=1e-6), name


@pytest.mark.slow
def test_lora_null_fine_tunes_every_weight_and_grpo_trains_on_from_the_model(
    tmp_path, phrasebank_data_dir, tiny_model_dir, recorded
):
    trainers, _ = recorded
    grpo_trainer = (
        "{max_steps: 1, per_device_train_batch_size: 4, num_generations: 2, max_completion_length: 8, "
        "save_steps: 1, bf16: false, seed: 0}"
    )
    cfg = sft_config(
        tmp_path,
        phrasebank_data_dir,
        tiny_model_dir,
        "sft.lora=null",
        "sft.trainer.max_steps=2",
        f"grpo.trainer={grpo_trainer}",
        "grpo.lora=null",
    )
    train_sft(cfg)
    trainer = trainers[-1]
    assert set(trainer.initial) == {n for n, _ in trainer.model.named_parameters()}  # every weight trains, no adapter
    assert_every_trainable_parameter_changed(trainer)
    out = tmp_path / "sft"
    assert (out / "model.safetensors").is_file() and not (out / "adapter_config.json").exists()
    with torch.no_grad():
        ids = torch.tensor([[9707, 1879, 16009]])
        assert torch.allclose(load_model(str(out), device="cpu")(ids).logits, trainer.model.eval()(ids).logits)

    from finsent.grpo import train_grpo

    grpo = train_grpo(cfg)  # grpo.model defaults to the SFT output: here a model dir, not an adapter
    assert (tmp_path / "grpo" / "model.safetensors").is_file() and grpo.adapter_dir == str(tmp_path / "grpo")


def test_lora_null_with_4bit_is_refused(tmp_path):
    recipe = write_recipe(tmp_path, "sft:\n  quantization: 4bit\n  lora: null\n")
    with pytest.raises(ConfigError) as err:
        load_config(recipe)
    assert f"{recipe}:4: sft.lora" in str(err.value) and "full fine-tuning" in str(err.value)


@pytest.mark.slow
@pytest.mark.parametrize("packing", [True, False])
def test_the_cpu_loss_on_labelled_positions_is_trls_loss(
    tmp_path, phrasebank_data_dir, tiny_model_dir, recorded, packing
):
    trainers, kill_at = recorded
    kill_at.append(0)  # stop before the first step: only the trainer and its batches are needed
    with pytest.raises(Killed):
        train_sft(sft_config(tmp_path, phrasebank_data_dir, tiny_model_dir, f"sft.trainer.packing={packing}"))
    trainer = trainers[-1]
    batch = next(iter(trainer.get_train_dataloader()))
    assert (batch["labels"] == -100).any() and (batch["labels"] != -100).any()  # prompts masked, answers kept
    model = trainer.model.train()
    losses, grads = [], []
    for compute_loss in (trainer.compute_loss, trl.SFTTrainer.compute_loss.__get__(trainer)):
        model.zero_grad()
        loss = compute_loss(model, dict(batch))
        loss.backward()
        losses.append(loss.detach())
        grads.append({n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None})
    assert torch.allclose(losses[0], losses[1], rtol=1e-5)
    assert grads[0].keys() == grads[1].keys()
    for name, grad in grads[0].items():
        assert torch.allclose(grad, grads[1][name], rtol=1e-4, atol=1e-7), name


def write_recipe(tmp_path, body):
    path = tmp_path / "recipe.yaml"
    path.write_text(f"output_dir: {tmp_path / 'run'}\n{body}")
    return path


def test_trl_validation_errors_carry_the_recipe_line(tmp_path):
    recipe = write_recipe(tmp_path, "sft:\n  trainer:\n    max_steps: 2\n    learnin_rate: 0.1\n")
    with pytest.raises(ConfigError) as err:
        train_sft(load_config(recipe))
    assert f"{recipe}:5: sft.trainer.learnin_rate: unknown key" in str(err.value)


def test_lora_validation_errors_carry_the_recipe_line(tmp_path):
    recipe = write_recipe(tmp_path, "sft:\n  trainer: {bf16: false}\n  lora:\n    r: 4\n    lora_alfa: 8\n")
    with pytest.raises(ConfigError) as err:
        train_sft(load_config(recipe))
    assert f"{recipe}:6: sft.lora.lora_alfa" in str(err.value)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error on a machine without CUDA")
def test_qlora_without_cuda_fails_before_any_model_loads(tmp_path):
    recipe = write_recipe(tmp_path, "sft:\n  model: /nonexistent/model\n  quantization: 4bit\n")
    with pytest.raises(ConfigError) as err:
        train_sft(load_config(recipe))
    assert f"{recipe}:4: sft.quantization" in str(err.value) and "CUDA" in str(err.value)


def test_trainer_output_dir_is_the_stages(tmp_path):
    recipe = write_recipe(tmp_path, "sft:\n  trainer: {output_dir: elsewhere}\n")
    with pytest.raises(ConfigError) as err:
        load_config(recipe)
    assert f"{recipe}:3: sft.trainer.output_dir" in str(err.value)


def test_missing_train_file_says_to_run_the_data_stage(tmp_path):
    with pytest.raises(DataError, match="finsent data"):
        train_sft(load_config(None, [f"output_dir={tmp_path}", "sft.trainer={bf16: false}"]))


def test_earlier_checkpoints_need_resume(tmp_path, phrasebank_data_dir):
    cfg = sft_config(tmp_path, phrasebank_data_dir, "tiny:qwen3")  # refused before the model is built
    (tmp_path / "sft" / "checkpoint-3").mkdir(parents=True)
    with pytest.raises(ConfigError, match="pass --resume"):
        train_sft(cfg)
