"""Balance by gold label, and the stratified, seeded split."""

from __future__ import annotations

import math
import random
from collections import Counter, defaultdict
from collections.abc import Sequence
from typing import TypeVar

from finsent.config import BalanceConfig, SplitConfig
from finsent.data.readers import Example

Row = TypeVar("Row", bound=Example)


def label_counts(examples: Sequence[Example]) -> dict[str, int]:
    """Return examples per label, most frequent first."""
    return dict(Counter(ex.label for ex in examples).most_common())


def balance_targets(counts: dict[str, int], cfg: BalanceConfig) -> dict[str, int]:
    """Return how many examples of each label to keep (never more than there are)."""
    if cfg.strategy == "none" or not counts:
        return dict(counts)
    if cfg.strategy == "downsample":
        smallest = min(counts.values())
        return {label: smallest for label in counts}
    if cfg.strategy == "targets":
        return {label: min(n, cfg.targets.get(label, n)) for label, n in counts.items()}
    # ratios: the largest total whose per-label shares all fit in what is there.
    total = min(counts.get(label, 0) / share for label, share in cfg.ratios.items() if share > 0)
    return {label: min(counts.get(label, 0), math.floor(total * cfg.ratios.get(label, 0))) for label in counts}


def balance_examples(examples: Sequence[Row], cfg: BalanceConfig, seed: int) -> list[Row]:
    """Downsample each label to its target with a seeded draw; the input order is kept."""
    targets = balance_targets(label_counts(examples), cfg)
    by_label: dict[str, list[int]] = defaultdict(list)
    for i, ex in enumerate(examples):
        by_label[ex.label].append(i)
    rng = random.Random(seed)
    keep: set[int] = set()
    for label, indices in sorted(by_label.items()):
        keep.update(rng.sample(indices, targets[label]) if targets[label] < len(indices) else indices)
    return [ex for i, ex in enumerate(examples) if i in keep]


def stratified_split(examples: Sequence[Row], cfg: SplitConfig, seed: int) -> dict[str, list[Row]]:
    """Split into train/validation/test with each label's share kept; seeded and order-independent per label."""
    by_label: dict[str, list[Row]] = defaultdict(list)
    for ex in sorted(examples, key=lambda ex: ex.id):
        by_label[ex.label].append(ex)
    rng = random.Random(seed)
    splits: dict[str, list[Row]] = {"train": [], "validation": [], "test": []}
    for label in sorted(by_label):
        rows = by_label[label]
        rng.shuffle(rows)
        n_test = round(len(rows) * cfg.test)
        n_validation = round(len(rows) * cfg.validation)
        splits["test"].extend(rows[:n_test])
        splits["validation"].extend(rows[n_test : n_test + n_validation])
        splits["train"].extend(rows[n_test + n_validation :])
    for rows in splits.values():
        rng.shuffle(rows)
    return splits


def upsample(rows: Sequence[Row], seed: int) -> list[Row]:
    """Repeat rows of rarer labels (drawn with replacement) until every label matches the most frequent one."""
    counts = label_counts(rows)
    if not counts:
        return list(rows)
    largest = max(counts.values())
    rng = random.Random(seed)
    extra: list[Row] = []
    for label, n in sorted(counts.items()):
        pool = [row for row in rows if row.label == label]
        extra.extend(rng.choices(pool, k=largest - n))
    combined = [*rows, *extra]
    rng.shuffle(combined)
    return combined
