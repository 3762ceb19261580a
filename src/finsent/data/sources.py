"""Readers for labeled financial text: each yields ``Example`` records with labels in the shared label set.

``finsent ls sources`` lists them. Every reader names file, line (or row) and field in its errors, and with
``on_error: skip`` counts skipped rows by reason instead of stopping.
"""

from __future__ import annotations

import hashlib
import unicodedata
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, Literal

from finsent.config import SourceConfig
from finsent.errors import DataError
from finsent.registry import Registry


@dataclass(frozen=True)
class Example:
    """One labeled text. ``id`` is stable: a hash of the source name and the normalized text."""

    id: str
    text: str
    label: str
    source: str
    meta: dict[str, Any] = field(default_factory=dict, hash=False, compare=False)


def normalize_text(text: str) -> str:
    """Return the form used for ids and exact dedup: NFKC, case-folded, whitespace collapsed."""
    return " ".join(unicodedata.normalize("NFKC", text).casefold().split())


def example_id(source: str, text: str) -> str:
    """Return the stable id of ``text`` from ``source`` (16 hex digits)."""
    return hashlib.sha1(f"{source}\x00{normalize_text(text)}".encode()).hexdigest()[:16]


@dataclass
class RowErrors:
    """Bad-row policy of one run: raise the first error, or skip and count by reason."""

    on_error: Literal["raise", "skip"] = "raise"
    counts: Counter[str] = field(default_factory=Counter)
    samples: list[str] = field(default_factory=list)

    def report(self, reason: str, error: DataError) -> None:
        """Raise ``error``, or (skip) count it under ``reason`` and keep the first few messages."""
        if self.on_error == "raise":
            raise error
        self.counts[reason] += 1
        if len(self.samples) < 20:
            self.samples.append(str(error))


SourceReader = Callable[[SourceConfig, RowErrors], Iterator[Example]]
SOURCES: Registry[SourceReader] = Registry("source")
SOURCES.add("demo", "finsent.data.demo:read_demo", help="Synthetic, seeded financial headlines (offline default).")


def load_source(cfg: SourceConfig, errors: RowErrors) -> list[Example]:
    """Read one source into examples; ``hub:<id>`` names go through ``datasets.load_dataset``."""
    reader = SOURCES.get("hub" if cfg.name.startswith("hub:") else cfg.name)
    return list(reader(cfg, errors))
