"""Benchmark ``prepare_sft_dataset`` against its floor and against TRL's ``SFTTrainer`` dataset preparation.

raw (the floor): the chat template renders every conversation, then the Rust tokenizer batch-encodes them to ids.
ours: ``prepare_sft_dataset`` with packing, from a ``datasets.Dataset`` with a ``messages`` column.
TRL: ``SFTTrainer._prepare_dataset`` with ``packing=True``, timed alone on a trainer built around a tiny Qwen3, on the
same conversations as prompt/completion rows with ``enable_thinking=False``: TRL's way to the same assistant-only
loss; its rows differ from ours only in also training the "\n" after <|im_end|> (tested). Its
``assistant_only_loss=True`` cannot patch this revision of the Qwen3 template and raises.
Conversations are synthetic, seeded and ~220 Qwen3 tokens each, like the seeds' measurement. Each time is the best of
``--repeats`` interleaved runs, and the load average is printed: on a shared machine other work moves them a lot.

Usage: python benchmarks/bench_pack.py --sizes 20000 177000
"""

from __future__ import annotations

import argparse
import os
import platform
import random
import tempfile
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path

import numpy as np
import tokenizers
import transformers
import trl
from datasets import Dataset
from datasets.utils.logging import disable_progress_bar
from transformers import AutoTokenizer, PreTrainedTokenizerBase

from finsent.completion import PromptConfig, build_messages, render_completion
from finsent.data.packing import prepare_sft_dataset

NO_THINK = {"enable_thinking": False}
TOKENIZER_DIR = Path(__file__).resolve().parents[2] / "shared" / "data" / "tokenizers" / "qwen3"
COMPANIES = ["Nokia", "Fiskars", "Componenta", "Aspo", "Ahlstrom", "Stora Enso", "UPM-Kymmene", "Elisa", "Outotec"]
METRICS = ["net sales", "operating profit", "net profit", "order intake", "EBITDA", "earnings per share", "revenue"]
MOVES = {"positive": ["rose", "increased", "jumped", "climbed"], "negative": ["fell", "decreased", "dropped", "slid"]}
PERIODS = ["in the third quarter", "in January-June", "for the full year", "compared with the previous quarter"]
CLAUSES = [
    "the company said in a statement on {day}",
    "beating the average analyst estimate of EUR {b} mn",
    "while the outlook for the rest of the year was left unchanged",
    "as demand from customers in {region} remained {tone}",
    "and the board proposed a dividend of EUR {c} per share",
]
REGIONS = ["Europe", "North America", "the Nordic countries", "Asia", "Russia"]
REASONS = [
    "The text reports that {metric} {move} by {pct}%, which is {judgement} for shareholders.",
    "A change of {pct}% in {metric} is material for a company of this size.",
    "Investors usually read movements in {metric} as a signal about future cash flows and dividends.",
    "The comparison with the previous period shows the direction of the business clearly.",
    "Nothing in the sentence offsets this, and no one-off items are mentioned that would explain it away.",
    "The figures are stated plainly, without hedging words such as expected or might.",
    "Management did not attach any warning about the coming quarters to this result.",
]


def make_conversations(n: int, seed: int = 0) -> list[list[dict[str, str]]]:
    """Return ``n`` seeded ChatML conversations: system prompt, a financial sentence, a reasoned answer."""
    rng = random.Random(seed)
    prompt = PromptConfig()
    conversations = []
    for _ in range(n):
        label = rng.choice(["positive", "negative", "neutral"])
        move = rng.choice(MOVES.get(label, ["was unchanged at", "stayed at"]))
        metric, pct = rng.choice(METRICS), rng.randint(1, 60)
        values = {
            "day": rng.choice(["Monday", "Tuesday", "Friday"]),
            "b": rng.randint(5, 900),
            "c": rng.randint(1, 90),
        }
        clauses = [
            c.format(region=rng.choice(REGIONS), tone=rng.choice(["strong", "weak"]), **values) for c in CLAUSES
        ]
        text = (
            f"{rng.choice(COMPANIES)} said its {metric} {move} {pct}% to EUR {rng.randint(2, 900)}.{rng.randint(0, 9)}"
            f" mn {rng.choice(PERIODS)}, " + ", ".join(rng.sample(clauses, rng.randint(1, 3))) + "."
        )
        judgement = {"positive": "good news", "negative": "bad news"}.get(label, "neither good nor bad news")
        reasons = [r.format(metric=metric, move=move, pct=pct, judgement=judgement) for r in REASONS]
        reasoning = " ".join([reasons[0], *rng.sample(reasons[1:], rng.randint(2, 5))])
        conversations.append(
            [*build_messages(text, prompt), {"role": "assistant", "content": render_completion(reasoning, label)}]
        )
    return conversations


def timed(function: Callable[[], object]) -> tuple[float, float]:
    """Return the wall-clock and the CPU seconds (all threads) that ``function()`` takes."""
    wall, cpu = time.perf_counter(), time.process_time()
    function()
    return time.perf_counter() - wall, time.process_time() - cpu


def render_and_encode(
    conversations: list[list[dict[str, str]]], tokenizer: PreTrainedTokenizerBase
) -> list[list[int]]:
    """Return the ids of every conversation: the chat template renders them, the Rust tokenizer batch-encodes them."""
    texts = tokenizer.apply_chat_template(conversations, tokenize=False, enable_thinking=False)
    return [encoding.ids for encoding in tokenizer.backend_tokenizer.encode_batch(texts, add_special_tokens=False)]


def build_trl_trainer(tokenizer: PreTrainedTokenizerBase, max_length: int, output_dir: str) -> trl.SFTTrainer:
    """Return an ``SFTTrainer`` on a tiny Qwen3, built on a few rows so that only the timed call prepares data."""
    config = transformers.Qwen3Config(
        vocab_size=len(tokenizer), hidden_size=16, intermediate_size=32, num_hidden_layers=2, num_attention_heads=2,
        num_key_value_heads=1, head_dim=8, pad_token_id=tokenizer.pad_token_id,
    )  # fmt: skip
    args = trl.SFTConfig(
        output_dir=output_dir,
        packing=True,
        max_length=max_length,
        bf16=False,
        use_cpu=True,
        report_to="none",
    )
    warmup = to_prompt_completion(make_conversations(8, seed=1))
    return trl.SFTTrainer(
        transformers.Qwen3ForCausalLM(config), args=args, train_dataset=warmup, processing_class=tokenizer
    )


def to_prompt_completion(conversations: list[list[dict[str, str]]]) -> Dataset:
    """Return TRL's prompt/completion form of the conversations, which masks the prompt out of the loss."""
    return Dataset.from_dict(
        {
            "prompt": [messages[:-1] for messages in conversations],
            "completion": [messages[-1:] for messages in conversations],
            "chat_template_kwargs": [{"enable_thinking": False}] * len(conversations),
        }
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[20_000, 177_000])
    parser.add_argument("--max-length", type=int, default=1024)
    parser.add_argument("--repeats", type=int, default=3, help="runs of each, interleaved; the best counts")
    parser.add_argument("--trl-max", type=int, default=20_000, help="TRL runs on at most this many, scaled up")
    parser.add_argument("--tokenizer", type=Path, default=TOKENIZER_DIR)
    args = parser.parse_args()
    disable_progress_bar()
    transformers.logging.set_verbosity_error()
    tokenizer = AutoTokenizer.from_pretrained(args.tokenizer)

    print(f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, python {platform.python_version()}")
    print(
        f"transformers {transformers.__version__}, tokenizers {tokenizers.__version__}, trl {trl.__version__}, "
        f"TOKENIZERS_PARALLELISM={os.environ.get('TOKENIZERS_PARALLELISM', 'unset')}, max_length {args.max_length}"
    )
    print(f"load average at start {os.getloadavg()[0]:.1f}", flush=True)
    header = (
        f"{'examples':>9} {'tokens':>11} {'raw s':>7} {'ours s':>7} {'TRL s':>8} {'ours/raw':>9} {'TRL/ours':>9}"
        f" | CPU s: {'ours/raw':>8} {'TRL/ours':>8}"
    )
    rows = []
    with tempfile.TemporaryDirectory() as output_dir:
        trainer = build_trl_trainer(tokenizer, args.max_length, output_dir)
        for size in args.sizes:
            conversations = make_conversations(size)
            dataset = Dataset.from_dict({"messages": conversations})
            measured = min(size, args.trl_max)
            trl_dataset = to_prompt_completion(conversations[:measured])
            tokens = sum(map(len, render_and_encode(conversations, tokenizer)))  # also warms the template cache
            runs = {
                "raw": partial(render_and_encode, conversations, tokenizer),
                "ours": partial(
                    prepare_sft_dataset, dataset, tokenizer, args.max_length, chat_template_kwargs=NO_THINK
                ),
                "trl": partial(trainer._prepare_dataset, trl_dataset, tokenizer, trainer.args, True, None, "train"),
            }
            times: dict[str, list[tuple[float, float]]] = {name: [] for name in runs}
            # Interleaved, so that the three see the same load on a shared machine.
            for _ in range(args.repeats):
                for name, run in runs.items():
                    times[name].append(timed(run))
            (raw, raw_cpu), (ours, ours_cpu), (trl_s, trl_cpu) = (np.min(times[k], axis=0) for k in runs)
            trl_s, trl_cpu = trl_s * size / measured, trl_cpu * size / measured
            note = "*" if measured < size else " "
            rows.append(
                f"{size:>9,} {tokens:>11,} {raw:>7.2f} {ours:>7.2f} {trl_s:>7.1f}{note} {ours / raw:>9.2f}"
                f" {trl_s / ours:>9.1f} |        {ours_cpu / raw_cpu:>8.2f} {trl_cpu / ours_cpu:>8.1f}"
            )
            print(f"... {size:,} done (load average {os.getloadavg()[0]:.1f})", flush=True)
    print(header)
    print("\n".join(rows))
    print(f"goals: ours/raw <= 1.2, TRL/ours >= 3. Each time is the best of {args.repeats} interleaved runs.")
    if any("*" in row for row in rows):
        print(f"* TRL timed on the first {args.trl_max:,} examples and scaled linearly to the size.")


if __name__ == "__main__":
    main()
