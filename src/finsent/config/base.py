"""What every config section shares: the line map that errors cite, and the small field checks."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from finsent.errors import ConfigError

KeyPath = tuple[str | int, ...]
Location = tuple[str, int | None]
DEFAULTS = "<defaults>"  # the source of a recipe built from the dataclass defaults alone


@dataclass(frozen=True)
class LineMap:
    """Where each key of a loaded recipe was written: the file (or ``<command line>``) and the line."""

    source: str | None = None  # the recipe file; None for the built-in defaults
    locations: Mapping[KeyPath, Location] = field(default_factory=dict)

    def where(self, key_path: KeyPath) -> Location:
        """Return the file and line of ``key_path``, or of its nearest enclosing key that has one."""
        for i in range(len(key_path), -1, -1):
            if key_path[:i] in self.locations:
                return self.locations[key_path[:i]]
        return self.source or DEFAULTS, None

    def locate(self, dotted: str) -> tuple[str | None, int | None]:
        """Return the file and line that set ``dotted`` (e.g. ``sft.trainer.learning_rate``); (None, None) when the
        recipe came from the defaults alone."""
        path, line = self.where(parse_key_path(dotted))
        return (None, None) if path == DEFAULTS else (path, line)


def parse_key_path(dotted: str) -> KeyPath:
    """Return ``a.0.b`` as ``("a", 0, "b")``."""
    return tuple(int(part) if part.isdigit() else part for part in dotted.split("."))


def check_unique(names: Iterable[str | None], list_field: str, item_field: str | None, expected: str) -> None:
    """Fail on the first name seen twice, naming its index in ``list_field``."""
    seen: set[str | None] = set()
    for i, name in enumerate(names):
        if name in seen:
            where = f"{list_field}.{i}" + (f".{item_field}" if item_field else "")
            raise ConfigError("duplicate", field=where, expected=expected, got=name)
        seen.add(name)


def check_at_least(section: Any, names: Iterable[str], minimum: int) -> None:
    """Fail on the first of the int fields ``names`` of ``section`` below ``minimum``."""
    for name in names:
        value = getattr(section, name)
        if value < minimum:
            raise ConfigError("", field=name, expected=f"an int >= {minimum}", got=value)
