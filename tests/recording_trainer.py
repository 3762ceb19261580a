"""Wrap a real TRL trainer class to keep each instance and its trainable weights at the start, and to stop a run
as a given step begins (after that step's checkpoint is on disk), as a kill would."""

from __future__ import annotations

from typing import Any

import pytest
import torch
from transformers import TrainerCallback


class Killed(Exception):
    pass


class KillAt(TrainerCallback):
    """Stands in for a kill: raises as step ``step + 1`` begins, after checkpoint-``step`` is on disk."""

    def __init__(self, step: int) -> None:
        self.step = step

    def on_step_begin(self, args, state, control, **kwargs):
        if state.global_step >= self.step:
            raise Killed


def record_trainers(monkeypatch: pytest.MonkeyPatch, module: Any, name: str) -> tuple[list, list[int]]:
    """Replace ``module.name`` (a trainer class) with a recording subclass; return (trainers, kill steps to use)."""
    trainers: list = []
    kill_at: list[int] = []
    base = getattr(module, name)

    class Recording(base):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            self.initial = {n: p.detach().clone() for n, p in self.model.named_parameters() if p.requires_grad}
            if kill_at:
                self.add_callback(KillAt(kill_at.pop()))
            trainers.append(self)

    monkeypatch.setattr(module, name, Recording)
    return trainers, kill_at


def assert_every_trainable_parameter_changed(trainer: Any) -> None:
    """Fail naming the parameters a recorded trainer left at their initial values."""
    assert trainer.initial, "the trainer had no trainable parameters"
    unchanged = [
        n for n, p in trainer.model.named_parameters() if n in trainer.initial and torch.equal(p, trainer.initial[n])
    ]
    assert not unchanged, f"parameters that did not change: {unchanged}"
