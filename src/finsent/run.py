"""``finsent run``: a recipe's stages in order, skipping finished ones and resuming interrupted ones.

Usage: ``finsent run --config recipes/tiny-cpu.yaml`` or ``run_recipe(load_config("tiny-cpu"))``.
Each stage's fingerprint hashes its own section, the shared prompt and the fingerprint of the stage before it, so a
changed config re-runs the stage it touches and every stage after it, and nothing else.
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from finsent.checks import validate_recipe
from finsent.config import STAGES, RecipeConfig, config_hash
from finsent.io import atomic_write_json
from finsent.registry import Registry

logger = logging.getLogger(__name__)

# Each stage's function, loaded when the stage runs (so the CLI's start stays fast).
STAGE_FUNCTIONS: Registry[Callable[[RecipeConfig], Any]] = Registry("stage")
STAGE_FUNCTIONS.add("data", "finsent.data:build_dataset")
STAGE_FUNCTIONS.add("sft", "finsent.sft:train_sft")
STAGE_FUNCTIONS.add("grpo", "finsent.grpo:train_grpo")
STAGE_FUNCTIONS.add("export", "finsent.export:export_model")
STAGE_FUNCTIONS.add("eval", "finsent.eval:evaluate_model")


@dataclass(frozen=True)
class StageOutcome:
    """What ``run_recipe`` did with one stage."""

    stage: str
    status: Literal["ran", "resumed", "skipped"]
    output_dir: str
    seconds: float
    result: Any = None


def stage_fingerprints(cfg: RecipeConfig) -> dict[str, str]:
    """Return each stage's fingerprint: its section, the task and prompt, and the fingerprint of the stage before."""
    upstream = f"{cfg.task}:{config_hash(cfg.prompt)}"
    fingerprints = {}
    for stage in STAGES:
        upstream = hashlib.sha256(f"{upstream}:{config_hash(getattr(cfg, stage))}".encode()).hexdigest()[:16]
        fingerprints[stage] = upstream
    return fingerprints


def run_recipe(cfg: RecipeConfig, stages: list[str] | None = None) -> list[StageOutcome]:
    """Run ``stages`` (default: the recipe's) in order; a finished stage with the same fingerprint is skipped."""
    selected = [s for s in STAGES if s in (stages or cfg.stages)]
    validate_recipe(cfg, selected)  # every stage's names and combinations, before the first one starts
    state_path = Path(cfg.output_dir) / "run.json"
    state: dict[str, Any] = json.loads(state_path.read_text()) if state_path.is_file() else {}
    fingerprints = stage_fingerprints(cfg)
    outcomes = []
    for stage in selected:
        section = getattr(cfg, stage)
        out = Path(section.output_dir)
        previous = state.get(stage, {})
        same_config = previous.get("fingerprint") == fingerprints[stage]
        if same_config and previous.get("status") == "done" and (out / "result.json").is_file():
            logger.info("%s: finished with this config, skipped (%s)", stage, out)
            outcomes.append(StageOutcome(stage, "skipped", str(out), 0.0))
            continue
        resuming = same_config and previous.get("status") == "started"
        if not resuming:
            _remove_stale_checkpoints(out)
        if hasattr(section, "resume"):
            section.resume = resuming
        state[stage] = {"fingerprint": fingerprints[stage], "status": "started"}
        atomic_write_json(state_path, state)
        logger.info("%s: %s -> %s", stage, "resuming" if resuming else "running", out)
        start = time.perf_counter()
        result = STAGE_FUNCTIONS.get(stage)(cfg)
        state[stage]["status"] = "done"
        atomic_write_json(state_path, state)
        seconds = time.perf_counter() - start
        outcomes.append(StageOutcome(stage, "resumed" if resuming else "ran", str(out), seconds, result))
    return outcomes


def _remove_stale_checkpoints(out: Path) -> None:
    # Checkpoints written under another config must not be resumed from later.
    for checkpoint in sorted(out.glob("checkpoint-*")):
        logger.info("removing %s, written under another config", checkpoint)
        shutil.rmtree(checkpoint)
    (out / "result.json").unlink(missing_ok=True)
