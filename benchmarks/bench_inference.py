"""Benchmark CPU generation: llama.cpp Q4_K_M and Q5_K_M GGUFs against transformers on the same model.

Sizes: a seeded random Qwen3 (hidden 512, 4 layers, the real 151k-token Qwen3 vocabulary; K-quant sized rows) saved
with the Qwen3 tokenizer from ../shared/data, or any model dir with --model. The GGUFs come from finsent's export
path (llama.cpp's converter and quantizer). Every side answers the same chat prompts greedily, one at a time, with
the same thread count; the reference is transformers (float32, the CPU default), the ratio is llama.cpp / reference.
Run: python benchmarks/bench_inference.py [--model DIR] [--prompts 8] [--max-new-tokens 64] [--rounds 3]
"""

from __future__ import annotations

import argparse
import os
import platform
import tempfile
import time
from pathlib import Path

import torch

from finsent.completion import PromptConfig, build_messages
from finsent.config import ModelConfig
from finsent.export.gguf import check_gguf_tools, convert_to_gguf, quantize_gguf
from finsent.serve.backends import Backend, LlamaCppBackend, load_transformers
from finsent.training import TINY_QWEN3, build_tiny_qwen3

SHARED_DATA = Path(os.environ.get("FINSENT_SHARED_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))
TEXTS = [
    "Net sales rose 12% to EUR 85 million in the first quarter.",
    "The company cut 300 jobs after a second consecutive annual loss.",
    "Operating profit was EUR 4.1 million, unchanged from a year earlier.",
    "Shares jumped 8% after the group raised its full-year guidance.",
    "The board proposed a dividend of EUR 0.40 per share.",
    "Order intake fell 20% as customers delayed investments.",
    "The bank said credit losses remained low in the period.",
    "Pretax profit more than doubled on strong demand in Asia.",
]


def random_qwen3(out: Path, tokenizer_dir: Path, **sizes: int) -> Path:
    """Save a seeded random Qwen3 of ``sizes`` (tied embeddings) with the tokenizer from ``tokenizer_dir``."""
    from transformers import AutoTokenizer

    return build_tiny_qwen3(AutoTokenizer.from_pretrained(tokenizer_dir), out, {**TINY_QWEN3, **sizes})


def tokens_per_s(backend: Backend, prompts: list) -> tuple[float, int]:
    """Return generated tokens per second over ``prompts`` (one at a time, after one warm-up) and the token count."""
    backend.complete(prompts[:1])
    start = time.perf_counter()
    tokens = sum(backend.complete([prompt])[0].completion_tokens for prompt in prompts)
    return tokens / (time.perf_counter() - start), tokens


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, help="Model dir (default: a random Qwen3, hidden 512, 4 layers).")
    parser.add_argument("--prompts", type=int, default=8, help="Prompts per side.")
    parser.add_argument("--max-new-tokens", type=int, default=64, help="Tokens generated per prompt (at most).")
    parser.add_argument("--rounds", type=int, default=3, help="Rounds over every side; the best counts.")
    args = parser.parse_args()
    check_gguf_tools()
    prompts = [build_messages(TEXTS[i % len(TEXTS)], PromptConfig()) for i in range(args.prompts)]

    with tempfile.TemporaryDirectory(prefix="bench-inference-") as tmp:
        work = Path(tmp)
        model_dir = args.model or random_qwen3(
            work / "model",
            SHARED_DATA / "tokenizers" / "qwen3",
            hidden_size=512,
            intermediate_size=1536,
            num_hidden_layers=4,
            num_attention_heads=8,
            num_key_value_heads=4,
            head_dim=64,
        )
        start = time.perf_counter()
        bf16 = convert_to_gguf(model_dir, work / "model-BF16.gguf", "bf16")
        ggufs = {kind: quantize_gguf(bf16, work / f"model-{kind}.gguf", kind) for kind in ("Q5_K_M", "Q4_K_M")}
        export_s = time.perf_counter() - start

        backends: dict[str, tuple[Backend, float]] = {}
        for kind, path in ggufs.items():
            config = ModelConfig(path=str(path), backend="llamacpp", max_new_tokens=args.max_new_tokens, n_ctx=1024)
            backends[f"llama.cpp {kind}"] = (LlamaCppBackend(config), path.stat().st_size / 2**20)
        threads = backends["llama.cpp Q4_K_M"][0].llm.n_threads
        torch.set_num_threads(threads)  # the same threads as llama.cpp's default (half the cores)
        reference = load_transformers(
            ModelConfig(path=str(model_dir), device="cpu", max_new_tokens=args.max_new_tokens, batch_size=1)
        )
        params = sum(p.numel() for p in reference.model.parameters())
        size = sum(p.stat().st_size for p in Path(model_dir).glob("*.safetensors")) / 2**20
        backends["transformers float32"] = (reference, size)
        # Rounds interleave the sides, and the best round counts: other processes on the machine only slow one down.
        rates: dict[str, list[float]] = {name: [] for name in backends}
        tokens: dict[str, int] = {}
        for _ in range(args.rounds):
            for name, (backend, _) in backends.items():
                rate, tokens[name] = tokens_per_s(backend, prompts)
                rates[name].append(rate)

    ref_rate = max(rates["transformers float32"])
    print(f"bench_inference: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, {threads} threads")
    print(
        f"model: {model_dir if args.model else 'random Qwen3'} ({params / 1e6:.1f}M parameters), "
        f"{args.prompts} prompts x <= {args.max_new_tokens} new tokens, greedy, one prompt at a time, best of "
        f"{args.rounds} rounds; "
        f"GGUF conversion + 2 quantizations {export_s:.1f} s"
    )
    print()
    print("| side | file MiB | tokens | tokens/s | ratio vs transformers |")
    print("|:---|---:|---:|---:|---:|")
    for name, (_, mib) in backends.items():
        rate = max(rates[name])
        print(f"| {name} | {mib:.1f} | {tokens[name]} | {rate:.1f} | {rate / ref_rate:.2f}x |")


if __name__ == "__main__":
    main()
