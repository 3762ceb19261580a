"""One registry per extension point: sources, teachers, rewards, backends, baselines, trackers."""

from __future__ import annotations

import difflib
import importlib
from collections.abc import Callable
from typing import Generic, TypeVar

from finsent.errors import ConfigError

T = TypeVar("T")


class Registry(Generic[T]):
    """Maps stable snake_case names to objects; entries may be lazy ``"module:attr"`` strings."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._entries: dict[str, T | str] = {}
        self._help: dict[str, str] = {}

    def register(self, name: str, help: str | None = None) -> Callable[[T], T]:
        """Decorator: register ``obj`` under ``name``; its docstring's first line is the help."""

        def decorator(obj: T) -> T:
            self.add(name, obj, help)
            return obj

        return decorator

    def add(self, name: str, obj: T | str, help: str | None = None) -> None:
        """Register ``obj`` (or a lazy ``"module:attr"`` path) under ``name``."""
        if name in self._entries:
            raise ValueError(f"{self.kind} {name!r} is already registered")
        self._entries[name] = obj
        doc = help if help is not None else (getattr(obj, "__doc__", None) or "")
        self._help[name] = doc.strip().splitlines()[0] if doc.strip() else ""

    def get(self, name: str) -> T:
        """Return the entry for ``name``, importing lazy entries; unknown names list the known ones."""
        if name not in self._entries:
            raise ConfigError(self.unknown_message(name))
        entry = self._entries[name]
        if isinstance(entry, str):
            module_name, _, attr = entry.partition(":")
            entry = getattr(importlib.import_module(module_name), attr)
            self._entries[name] = entry
        return entry  # type: ignore[return-value]

    def unknown_message(self, name: str) -> str:
        close = difflib.get_close_matches(name, self.names(), n=1)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        return f"unknown {self.kind} {name!r}; known: {', '.join(self.names())}.{hint}"

    def names(self) -> list[str]:
        return sorted(self._entries)

    def help(self, name: str) -> str:
        return self._help.get(name, "")

    def __contains__(self, name: object) -> bool:
        return name in self._entries


# The registries themselves, by the name `finsent ls` takes; lazy, so naming one imports only its module (and
# recipe checks can look names up without importing the stages that own them).
REGISTRIES: Registry[Registry[object]] = Registry("registry")
REGISTRIES.add("sources", "finsent.data.sources:SOURCES", help="Where labeled text and instructions come from.")
REGISTRIES.add("teachers", "finsent.data.teachers:TEACHERS", help="Who writes the chain of thought.")
REGISTRIES.add("rewards", "finsent.rewards:REWARDS", help="GRPO reward functions.")
REGISTRIES.add("trackers", "finsent.tracking:TRACKERS", help="Where metrics and plots go.")
REGISTRIES.add("baselines", "finsent.eval.baselines:BASELINES", help="Models that need no GPU and set the floor.")
REGISTRIES.add("backends", "finsent.serve.backends:BACKENDS", help="What runs a model for eval, predict and serve.")
REGISTRIES.add("protocols", "finsent.eval.protocols:PROTOCOLS", help="Test sets cut as published results cut them.")
REGISTRIES.add("tasks", "finsent.tasks:TASKS", help="What a recipe trains for.")

# Each stage's function, loaded when the stage runs (so `finsent --help` stays fast); `finsent run` chains them.
STAGE_FUNCTIONS: Registry[Callable[..., object]] = Registry("stage")
STAGE_FUNCTIONS.add("data", "finsent.data:build_dataset")
STAGE_FUNCTIONS.add("sft", "finsent.sft:train_sft")
STAGE_FUNCTIONS.add("grpo", "finsent.grpo:train_grpo")
STAGE_FUNCTIONS.add("export", "finsent.export:export_model")
STAGE_FUNCTIONS.add("eval", "finsent.eval:evaluate_model")
