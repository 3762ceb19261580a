"""Shared fixtures: the real data in ../shared/data and a tiny Qwen3 saved with the real Qwen3 tokenizer."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from hypothesis import settings

# Property tests: no per-example deadline (a loaded CI machine is slow, not wrong).
settings.register_profile("finsent", deadline=None)
settings.load_profile("finsent")

# The hubs cannot be reached from tests: make a stray call fail fast instead of hanging.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

REPO_ROOT = Path(__file__).resolve().parents[1]


def _shared_data_dir() -> Path:
    return Path(os.environ.get("FINSENT_SHARED_DATA", REPO_ROOT.parent / "shared" / "data")).resolve()


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The real data files (set FINSENT_SHARED_DATA to move them)."""
    path = _shared_data_dir()
    if not (path / "financial_phrasebank").is_dir():
        pytest.fail(f"real test data not found at {path}: set FINSENT_SHARED_DATA to the shared/data folder")
    return path


@pytest.fixture(scope="session")
def phrasebank_allagree(shared_data: Path) -> Path:
    return shared_data / "financial_phrasebank" / "FinancialPhraseBank-v1.0" / "Sentences_AllAgree.txt"


@pytest.fixture(scope="session")
def qwen3_tokenizer_dir(shared_data: Path) -> Path:
    return shared_data / "tokenizers" / "qwen3"


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory, qwen3_tokenizer_dir: Path) -> Path:
    """A randomly initialised 2-layer Qwen3 saved with the real Qwen3 tokenizer, loaded later by path."""
    from transformers import AutoTokenizer

    from finsent.training import build_tiny_qwen3

    tokenizer = AutoTokenizer.from_pretrained(qwen3_tokenizer_dir)
    return build_tiny_qwen3(tokenizer, tmp_path_factory.mktemp("tiny-qwen3"))


@pytest.fixture(scope="session")
def phrasebank_data_dir(tmp_path_factory: pytest.TempPathFactory, phrasebank_allagree: Path) -> Path:
    """The data stage's output (train/validation/test.jsonl) from 300 rows of the real PhraseBank AllAgree file."""
    from finsent.config import load_config
    from finsent.data import build_dataset

    out = tmp_path_factory.mktemp("phrasebank-run")
    source = f"{{name: financial_phrasebank, path: '{phrasebank_allagree}', max_rows: 300}}"
    cfg = load_config(None, [f"output_dir={out}", f"data.sources=[{source}]"])
    return Path(build_dataset(cfg).output_dir)


@pytest.fixture(scope="session")
def tiny_adapter_dir(tmp_path_factory: pytest.TempPathFactory, tiny_model_dir: Path) -> Path:
    """A LoRA adapter on the tiny Qwen3 whose merge changes the weights (nonzero init), saved with its tokenizer."""
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
