"""Instruction data: the length filter and task-type mixtures of the data stage (task ``instruct``).

Lengths count the whole conversation (system prompt, user message, answer). With ``data.tokenizer`` they are exact
token counts of the chat template's rendering; without one they are estimated as characters / 4 (English BPE
averages about four characters a token) plus ``TEMPLATE_TOKENS_PER_MESSAGE`` for the template's markers, so set a
tokenizer when the limit is tight. Mixtures sample each task type to its share of ``total`` with a seeded draw.
"""

from __future__ import annotations

import logging
import math
import random
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, replace

from tqdm.auto import tqdm

from finsent.completion import PromptConfig, build_messages
from finsent.config import MixtureConfig
from finsent.data.readers import InstructExample
from finsent.modeling import load_tokenizer

logger = logging.getLogger(__name__)

CHARS_PER_TOKEN = 4
TEMPLATE_TOKENS_PER_MESSAGE = 5  # <|im_start|>, the role, a newline, <|im_end|>, a newline
_BATCH = 256


@dataclass(frozen=True)
class LengthResult:
    """The examples under the limit, how many were too long, and how they were counted."""

    kept: list[InstructExample]
    removed: int
    max_tokens: int
    counted_with: str  # a tokenizer id or path, or "estimate"
    longest_kept: int


@dataclass(frozen=True)
class MixtureResult:
    """The sampled examples and, per task type, the rows there were, the target and the rows kept."""

    kept: list[InstructExample]
    counts: dict[str, dict[str, int]]
    left_out: dict[str, int]  # task types the weights do not name


def conversation(example: InstructExample, prompt: PromptConfig) -> list[dict[str, str]]:
    """Return the chat of ``example``: its own system prompt (else the recipe's), the user message, the answer."""
    own = replace(prompt, system=example.system) if example.system else prompt
    return [*build_messages(example.text, own), {"role": "assistant", "content": example.answer}]


def filter_by_length(
    examples: Sequence[InstructExample], prompt: PromptConfig, max_tokens: int, tokenizer: str | None = None
) -> LengthResult:
    """Keep the examples whose whole conversation is shorter than ``max_tokens`` tokens."""
    chats = [conversation(ex, prompt) for ex in examples]
    if tokenizer is None:
        lengths = [
            math.ceil(sum(len(m["content"]) for m in chat) / CHARS_PER_TOKEN) + TEMPLATE_TOKENS_PER_MESSAGE * len(chat)
            for chat in chats
        ]
    else:
        lengths = _token_counts(chats, tokenizer)
    kept = [ex for ex, n in zip(examples, lengths, strict=True) if n < max_tokens]
    longest = max((n for n in lengths if n < max_tokens), default=0)
    logger.info("length filter: %d of %d under %d tokens", len(kept), len(examples), max_tokens)
    return LengthResult(kept, len(examples) - len(kept), max_tokens, tokenizer or "estimate", longest)


def _token_counts(chats: list[list[dict[str, str]]], tokenizer_id: str) -> list[int]:
    tokenizer = load_tokenizer(tokenizer_id)
    lengths = []
    for start in tqdm(range(0, len(chats), _BATCH), desc="count tokens", unit="batch"):
        texts = [
            tokenizer.apply_chat_template(chat, tokenize=False, enable_thinking=False)
            for chat in chats[start : start + _BATCH]
        ]
        lengths.extend(len(ids) for ids in tokenizer(texts, add_special_tokens=False)["input_ids"])
    return lengths


def mixture_targets(available: dict[str, int], cfg: MixtureConfig) -> dict[str, int]:
    """Return rows to draw per named task type: ``total`` split by the weights (largest remainders), or, without a
    total, the largest total whose shares all fit in what is there."""
    weight_sum = sum(cfg.weights.values())
    shares = {task_type: w / weight_sum for task_type, w in cfg.weights.items()}
    total = cfg.total
    if total is None:
        total = math.floor(min(available.get(t, 0) / s for t, s in shares.items() if s > 0))
    exact = {t: total * s for t, s in shares.items()}
    targets = {t: math.floor(v) for t, v in exact.items()}
    for t in sorted(exact, key=lambda t: (targets[t] - exact[t], t))[: total - sum(targets.values())]:
        targets[t] += 1
    return targets


def mix_examples(examples: Sequence[InstructExample], cfg: MixtureConfig, seed: int) -> MixtureResult:
    """Sample each task type named in ``cfg.weights`` to its target (seeded); keep the input order."""
    by_type: dict[str, list[int]] = defaultdict(list)
    for i, ex in enumerate(examples):
        by_type[ex.label].append(i)
    available = {t: len(rows) for t, rows in by_type.items()}
    targets = mixture_targets(available, cfg)
    rng = random.Random(seed)
    keep: set[int] = set()
    counts = {}
    for task_type in sorted(targets):
        rows = by_type.get(task_type, [])
        chosen = rng.sample(rows, targets[task_type]) if targets[task_type] < len(rows) else rows
        keep.update(chosen)
        counts[task_type] = {"available": len(rows), "target": targets[task_type], "kept": len(chosen)}
        if len(chosen) < targets[task_type]:
            logger.warning("mixture: %s has %d rows, short of its %d", task_type, len(rows), targets[task_type])
    left_out = dict(Counter({t: n for t, n in available.items() if t not in targets}).most_common())
    return MixtureResult([ex for i, ex in enumerate(examples) if i in keep], counts, left_out)
