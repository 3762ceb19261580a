"""Named test-set protocols, so results can stand beside published numbers (``finsent ls protocols``).

Seeded splits reproduce ``datasets.Dataset.train_test_split(test_size, seed)``: a permutation from
``np.random.default_rng(seed)``, the first ``ceil(test_size * n)`` rows of it are the test set. With rows in file
order, as FinGPT's benchmark loads them from the hub, the test rows are the published ones.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass

import numpy as np

from finsent.config import EvalSetConfig
from finsent.data.readers import Example
from finsent.registry import Registry

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Anchor:
    """A published score to print beside ours when the protocol matches."""

    model: str
    metric: str
    value: float
    source: str


@dataclass(frozen=True)
class Protocol:
    """How a test set is cut from its source, and what the published numbers on it are."""

    source: str | None  # the reader the protocol is defined on; None: any
    test_size: float | None  # None: the whole file is the test set
    seed: int | None
    expected_rows: int | None  # rows the source has when read as published
    neutral_band: float | None = None  # FiQA's score band mapped to neutral
    anchors: tuple[Anchor, ...] = ()
    is_row_exact: bool = True  # the split picks the published test rows when the reader keeps file order


@dataclass(frozen=True)
class EvalSplit:
    """The test rows of one test set, the rest of its file (what a same-file baseline trains on) and a note."""

    name: str
    protocol: str
    test: list[Example]
    rest: list[Example]
    anchors: tuple[Anchor, ...]
    note: str


_FINGPT = "FinGPT benchmark (github.com/AI4Finance-Foundation/FinGPT), weighted F1"
PROTOCOLS: Registry[Protocol] = Registry("protocol")
PROTOCOLS.add("whole", Protocol(None, None, None, None), help="Every row of the file is a test row.")
PROTOCOLS.add(
    "holdout",
    Protocol(None, None, None, None),
    help="Seeded split: test_size of the rows are test rows (split_seed), the rest can train baselines.",
)
PROTOCOLS.add(
    "fpb_50agree",
    Protocol(
        "financial_phrasebank",
        0.25,
        42,
        4846,
        anchors=(
            Anchor("FinGPT v3.3", "weighted_f1", 0.882, _FINGPT),
            Anchor("FinBERT", "weighted_f1", 0.880, _FINGPT),
        ),
    ),
    help="Financial PhraseBank Sentences_50Agree, seeded 75/25 split (seed 42), as FinGPT and FinBERT report.",
)
PROTOCOLS.add(
    "fpb_allagree",
    Protocol("financial_phrasebank", 0.25, 42, 2264),
    help="Financial PhraseBank Sentences_AllAgree, seeded 75/25 split (seed 42).",
)
PROTOCOLS.add(
    "fiqa_sa",
    Protocol(
        "fiqa_sa",
        0.226,
        42,
        None,
        neutral_band=0.1,
        anchors=(Anchor("FinGPT v3.3", "weighted_f1", 0.874, _FINGPT),),
        is_row_exact=False,
    ),
    help="FiQA-SA headlines and posts, scores in [-0.1, 0.1) neutral, seeded 22.6% test split (seed 42).",
)
PROTOCOLS.add(
    "tfns_validation",
    Protocol(
        "twitter_financial_news", None, None, 2388, anchors=(Anchor("FinGPT v3.3", "weighted_f1", 0.903, _FINGPT),)
    ),
    help="Twitter financial news sentiment: the whole validation split (sent_valid.csv).",
)


def split_indices(n: int, test_size: float, seed: int) -> tuple[list[int], list[int]]:
    """Return (train, test) row positions exactly as ``datasets.Dataset.train_test_split(test_size, seed=seed)``."""
    n_test = math.ceil(test_size * n)
    permutation = np.random.default_rng(seed).permutation(n)
    return permutation[n_test:].tolist(), permutation[:n_test].tolist()


def apply_protocol(cfg: EvalSetConfig, examples: list[Example]) -> EvalSplit:
    """Cut the test rows of ``examples`` (in file order) by the test set's protocol; note what breaks comparability."""
    protocol = PROTOCOLS.get(cfg.protocol)
    test_size = cfg.test_size if cfg.protocol == "holdout" else protocol.test_size
    seed = cfg.split_seed if cfg.protocol == "holdout" else protocol.seed
    if test_size is None:
        test, rest = list(examples), []
    else:
        train_idx, test_idx = split_indices(len(examples), test_size, seed)
        test, rest = [examples[i] for i in test_idx], [examples[i] for i in train_idx]
    problems = []
    if protocol.expected_rows is not None and len(examples) != protocol.expected_rows:
        problems.append(f"the source has {len(examples)} rows, the protocol {protocol.expected_rows}")
    if protocol.neutral_band is not None and cfg.neutral_band != protocol.neutral_band:
        problems.append(f"neutral_band is {cfg.neutral_band}, the protocol {protocol.neutral_band}")
    if cfg.max_rows is not None:
        problems.append("max_rows samples the source")
    if problems:
        logger.warning("%s: not comparable with published numbers: %s", cfg.display_name, "; ".join(problems))
        note = "not comparable with published numbers: " + "; ".join(problems)
        anchors: tuple[Anchor, ...] = ()
    else:
        anchors = protocol.anchors
        note = (
            ""
            if protocol.is_row_exact or not anchors
            else ("same shares and seed as published; rows follow this reader's order, so the test rows may differ")
        )
    return EvalSplit(cfg.display_name or cfg.protocol, cfg.protocol, test, rest, anchors, note)
