"""``validate_recipe``: the checks that span sections or need a registry, run before any work.

Each section checks its own fields as the recipe loads (``finsent.config``). What needs more than one section or
a registry is checked here: source, teacher, reward, tracker, backend, baseline and protocol names; a teacher or
baseline that answers another task; GRPO rewards on free-form answers. ``finsent validate``, ``finsent run`` and
every stage call it before they read data or load a model. Registries are looked up through ``REGISTRIES``, so
this module imports no stage. Every error names the recipe file and line of the key it is about.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from finsent.config import EvalSetConfig, RecipeConfig, SourceConfig
from finsent.errors import ConfigError
from finsent.registry import REGISTRIES
from finsent.tasks import Task

# Model teachers explain whatever task their prompt sets; offline teachers say which one they explain (``task``).
_MODEL_TEACHERS = ("openai", "vllm")


def validate_recipe(cfg: RecipeConfig, stages: Sequence[str] | None = None) -> None:
    """Fail on the first name or combination that ``stages`` (default: the recipe's) would reject later."""
    stages = cfg.stages if stages is None else stages
    task = cfg.get_task()
    if {"data", "sft", "grpo"} & set(stages):
        _check_names(cfg, "trackers", "tracking.backends", cfg.tracking.backends)
    if "data" in stages:
        _check_sources(cfg, "data.sources", cfg.data.sources)
        _check_sources(cfg, "data.dedup.decontaminate", cfg.data.dedup.decontaminate)
        _check_teacher(cfg, task)
    if "grpo" in stages:
        _check_grpo(cfg, task)
    if "eval" in stages:
        _check_eval(cfg, task)
    if "serve" in stages and cfg.serve.model is not None:
        _check_names(cfg, "backends", "serve.model.backend", [cfg.serve.model.backend], is_list=False)


def fail(cfg: RecipeConfig, key: str, message: str = "", *, expected: str | None = None, got: Any = None) -> None:
    """Raise a ConfigError at the recipe line that set ``key``."""
    path, line = cfg.locate(key)
    raise ConfigError(message, path=path, line=line, field=key, expected=expected, got=got)


def _check_names(cfg: RecipeConfig, registry: str, key: str, names: Iterable[str], *, is_list: bool = True) -> None:
    known = REGISTRIES.get(registry)
    for i, name in enumerate(names):
        if name not in known:
            fail(cfg, f"{key}.{i}" if is_list else key, known.unknown_message(name))


def _check_sources(cfg: RecipeConfig, key: str, sources: Sequence[SourceConfig]) -> None:
    known = REGISTRIES.get("sources")
    for i, source in enumerate(sources):
        if not source.name.startswith("hub:") and source.name not in known:
            fail(cfg, f"{key}.{i}.name", known.unknown_message(source.name))


def _check_teacher(cfg: RecipeConfig, task: Task) -> None:
    teachers = REGISTRIES.get("teachers")
    name = cfg.data.teacher.name
    if name not in teachers:
        fail(cfg, "data.teacher.name", teachers.unknown_message(name))
    explains = getattr(teachers.get(name), "task", None)
    if task.labels is not None and explains is not None and explains != task.name:
        fits = {n for n in teachers.names() if getattr(teachers.get(n), "task", None) == task.name}
        fail(
            cfg,
            "data.teacher.name",
            f"the {name} teacher explains {explains} only",
            expected="|".join(sorted(fits | set(_MODEL_TEACHERS))),
            got=name,
        )


def _check_grpo(cfg: RecipeConfig, task: Task) -> None:
    if task.labels is None:
        fail(cfg, "task", "GRPO rewards check labels; task instruct has free-form answers", got=task.name)
    _check_names(cfg, "rewards", "grpo.rewards", cfg.grpo.rewards)
    if task.name != "sentiment" and "consistency" in cfg.grpo.rewards:
        fail(
            cfg,
            "grpo.rewards",
            "reward consistency compares sentiment polarities",
            expected=f"rewards without consistency for task {task.name}",
            got=cfg.grpo.rewards,
        )


def _check_eval(cfg: RecipeConfig, task: Task) -> None:
    ev = cfg.eval
    if not ev.models and not ev.baselines:
        fail(cfg, "eval.models", "nothing to evaluate", expected="models or baselines", got=[])
    if task.labels is None and ev.baselines:
        fail(
            cfg,
            "eval.baselines",
            "baselines answer a label set; task instruct has free-form answers",
            expected="[] with task: instruct",
            got=ev.baselines,
        )
    for i, ts in enumerate(ev.test_sets):
        check_protocol(cfg, ts, f"eval.test_sets.{i}")
    _check_sources(cfg, "eval.test_sets", ev.test_sets)
    _check_sources(cfg, "eval.reference", ev.reference)
    if ev.train is not None:
        _check_sources(cfg, "eval", [ev.train])
    if ev.calibration_set is not None:
        _check_sources(cfg, "eval", [ev.calibration_set])
    for i, model in enumerate(ev.models):
        _check_names(cfg, "backends", f"eval.models.{i}.backend", [model.backend], is_list=False)
    baselines = REGISTRIES.get("baselines")
    _check_names(cfg, "baselines", "eval.baselines", ev.baselines)
    unsplit = [ts.display_name for ts in ev.test_sets if not _leaves_rows(ts)]
    for i, name in enumerate(ev.baselines):
        baseline = baselines.get(name)
        if baseline.task is not None and baseline.task != task.name:
            fail(cfg, f"eval.baselines.{i}", f"baseline {name} answers task {baseline.task} only", got=task.name)
        if baseline.uses_train and ev.train is None and unsplit:
            fail(
                cfg,
                "eval.train",
                f"baseline {name} learns from a train source, and the protocol of {unsplit[0]} leaves no rows over",
                expected="a source such as {name: twitter_financial_news, path: sent_train.csv}",
            )


def check_protocol(cfg: RecipeConfig, ts: EvalSetConfig, key: str) -> None:
    """Fail when a test set's protocol is unknown or is defined on another source."""
    protocols = REGISTRIES.get("protocols")
    if ts.protocol not in protocols:
        fail(cfg, f"{key}.protocol", protocols.unknown_message(ts.protocol))
    protocol = protocols.get(ts.protocol)
    if protocol.source and ts.name != protocol.source and not ts.name.startswith("hub:"):
        fail(
            cfg,
            f"{key}.name",
            f"protocol {ts.protocol} is defined on another source",
            expected=protocol.source,
            got=ts.name,
        )


def _leaves_rows(ts: EvalSetConfig) -> bool:
    """Whether the test set's protocol leaves rows of its file over (for baselines to train on)."""
    return ts.protocol == "holdout" or REGISTRIES.get("protocols").get(ts.protocol).test_size is not None
