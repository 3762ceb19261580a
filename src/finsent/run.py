"""``finsent run``: a recipe's stages in order, skipping finished ones and resuming interrupted ones.

Usage: ``finsent run --config recipes/tiny-cpu.yaml`` or ``run_recipe(load_config("tiny-cpu"))``.
Each stage's fingerprint hashes its own section, the shared prompt and the fingerprint of the stage before it, so a
changed config re-runs the stage it touches and every stage after it, and nothing else. Launched on several processes
(``accelerate launch``, ``torchrun``), every rank trains SFT and GRPO together while the main process alone runs the
other stages and writes ``run.json``; the ranks wait for each other between stages.
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from accelerate import PartialState
from accelerate.utils import parse_flag_from_env

from finsent.checks import validate_recipe
from finsent.config import STAGES, RecipeConfig, config_hash
from finsent.io import atomic_write_json
from finsent.registry import STAGE_FUNCTIONS

logger = logging.getLogger(__name__)

_DISTRIBUTED_STAGES = ("sft", "grpo")  # the others run on the main process only


@dataclass(frozen=True)
class StageOutcome:
    """What ``run_recipe`` did with one stage."""

    stage: str
    status: Literal["ran", "resumed", "skipped"]
    output_dir: str
    seconds: float
    result: Any = None
    is_main_process: bool = True  # under accelerate or torchrun, one process reports (the others ran alongside)


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
    # Without CUDA the ranks talk over gloo, which accelerate sets up only for cpu=True: take it from accelerate's
    # own switch (set by `accelerate launch --cpu`), as TrainingArguments does, so both see the same processes.
    process = PartialState(cpu=parse_flag_from_env("ACCELERATE_USE_CPU"))
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
        is_done = same_config and previous.get("status") == "done" and (out / "result.json").is_file()
        process.wait_for_everyone()  # every rank has decided before the main process changes a file
        if is_done:
            logger.info("%s: finished with this config, skipped (%s)", stage, out)
            outcomes.append(StageOutcome(stage, "skipped", str(out), 0.0, None, process.is_main_process))
            continue
        resuming = same_config and previous.get("status") == "started"
        if hasattr(section, "resume"):
            section.resume = resuming
        state[stage] = {"fingerprint": fingerprints[stage], "status": "started"}
        if process.is_main_process:
            if not resuming:
                _remove_stale_checkpoints(out)
            atomic_write_json(state_path, state)
        process.wait_for_everyone()
        logger.info("%s: %s -> %s", stage, "resuming" if resuming else "running", out)
        start = time.perf_counter()
        result = None
        if stage in _DISTRIBUTED_STAGES or process.is_main_process:
            result = STAGE_FUNCTIONS.get(stage)(cfg)
        process.wait_for_everyone()
        state[stage]["status"] = "done"
        if process.is_main_process:
            atomic_write_json(state_path, state)
        seconds = time.perf_counter() - start
        status = "resumed" if resuming else "ran"
        outcomes.append(StageOutcome(stage, status, str(out), seconds, result, process.is_main_process))
    return outcomes


def _remove_stale_checkpoints(out: Path) -> None:
    # Checkpoints written under another config must not be resumed from later.
    for checkpoint in sorted(out.glob("checkpoint-*")):
        logger.info("removing %s, written under another config", checkpoint)
        shutil.rmtree(checkpoint)
    (out / "result.json").unlink(missing_ok=True)
