"""load_model / load_tokenizer: a local dir by path, and a LoRA adapter dir that names its base."""

import pytest
import torch

from finsent.errors import ConfigError
from finsent.modeling import adapter_base, load_model, load_tokenizer


def test_local_dir_loads_in_eval_mode_with_left_padding(tiny_model_dir):
    model = load_model(str(tiny_model_dir), device="cpu")
    tokenizer = load_tokenizer(str(tiny_model_dir))
    assert not model.training and model.dtype == torch.float32
    assert tokenizer.padding_side == "left" and tokenizer.pad_token == "<|endoftext|>"


def test_adapter_dir_loads_its_base_then_the_adapter(tiny_model_dir, tmp_path):
    from peft import LoraConfig, get_peft_model

    base = load_model(str(tiny_model_dir), device="cpu")
    # init_lora_weights=False: random LoRA weights, so the adapter really changes the outputs.
    peft_model = get_peft_model(base, LoraConfig(r=4, target_modules=["q_proj", "v_proj"], init_lora_weights=False))
    peft_model.save_pretrained(tmp_path / "adapter")
    assert adapter_base(str(tmp_path / "adapter")) == str(tiny_model_dir)
    assert adapter_base(str(tiny_model_dir)) is None

    ids = torch.tensor([[9707, 1879, 16009]])
    with torch.inference_mode():
        plain = load_model(str(tiny_model_dir))(ids).logits
        by_dir = load_model(str(tmp_path / "adapter"))(ids).logits
        by_flag = load_model(str(tiny_model_dir), adapter=str(tmp_path / "adapter"))(ids).logits
    assert torch.equal(by_dir, by_flag)
    assert not torch.allclose(plain, by_dir)
    assert load_tokenizer(str(tmp_path / "adapter")).padding_side == "left"  # falls back to the base's tokenizer


def test_missing_model_names_the_path(tmp_path):
    with pytest.raises(ConfigError, match="cannot load a model from .*nowhere"):
        load_model(str(tmp_path / "nowhere"))
