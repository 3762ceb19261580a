"""A LoRA adapter on the tiny Qwen3 whose merge changes the weights (nonzero init), saved with its tokenizer."""

from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def tiny_adapter_dir(tmp_path_factory: pytest.TempPathFactory, tiny_model_dir: Path) -> Path:
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    torch.manual_seed(1)
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    # PEFT starts B at zero, which merges as a no-op; init_lora_weights=False draws A and B at random, so a merge that
    # skips the delta is visible in the logits, as after training.
    lora = LoraConfig(r=4, lora_alpha=8, target_modules="all-linear", init_lora_weights=False)
    out = tmp_path_factory.mktemp("tiny-adapter")
    get_peft_model(model, lora).save_pretrained(out)
    AutoTokenizer.from_pretrained(tiny_model_dir).save_pretrained(out)
    return out
