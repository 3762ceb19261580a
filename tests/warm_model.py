"""A tiny Qwen3 warmed up in plain torch on a ChatML file: seconds on a CPU, and close enough to the contract that
its answers parse, for tests of what follows training (GRPO, serving) rather than of training itself."""

import random
from pathlib import Path

import torch
from transformers import AutoModelForCausalLM

from finsent.training import build_tiny_qwen3, chat_texts, read_jsonl, train_chatml_tokenizer


def warm_tiny_qwen3(train_file: Path, out: Path, steps: int = 150, lr: float = 2e-2) -> Path:
    """Fully fine-tune a tiny Qwen3 with a small in-process tokenizer on ``train_file``'s assistant turns."""
    tokenizer = train_chatml_tokenizer(chat_texts(str(train_file)), vocab_size=1024)
    out = build_tiny_qwen3(tokenizer, out)
    model = AutoModelForCausalLM.from_pretrained(out)
    sequences = []
    for row in read_jsonl(str(train_file)):
        prompt = tokenizer.apply_chat_template(row["messages"][:2], add_generation_prompt=True, tokenize=False)
        full = tokenizer.apply_chat_template(row["messages"], tokenize=False)
        ids = tokenizer(full, add_special_tokens=False)["input_ids"]
        sequences.append((ids, len(tokenizer(prompt, add_special_tokens=False)["input_ids"])))
    torch.manual_seed(0)
    rng = random.Random(0)
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr)
    for _ in range(steps):
        batch = rng.sample(sequences, min(8, len(sequences)))
        width = max(len(ids) for ids, _ in batch)
        input_ids = torch.full((len(batch), width), tokenizer.pad_token_id)
        labels = torch.full((len(batch), width), -100)
        for i, (ids, prompt_len) in enumerate(batch):
            input_ids[i, : len(ids)] = torch.tensor(ids)
            labels[i, prompt_len : len(ids)] = torch.tensor(ids[prompt_len:])
        model(input_ids=input_ids, labels=labels).loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    model.save_pretrained(out)
    return out
