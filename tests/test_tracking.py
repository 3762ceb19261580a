"""Trackers. The local tracker runs for real; wandb, mlflow and trackio are faked with a module in ``sys.modules``
because they need an account or a server, and tensorboard is faked because its package is not installed here."""

import json
import sys
import types

import pytest

from finsent.checks import validate_recipe
from finsent.config import TrackingConfig, load_config
from finsent.errors import ConfigError
from finsent.tracking import (
    TRACKERS,
    plot_name,
    read_metrics,
    start_tracking,
    start_trainer_tracking,
    trainer_report_to,
)


def test_local_tracker_writes_jsonl_and_one_plot_per_metric(tmp_path):
    tracker = start_tracking(TrackingConfig(), tmp_path)
    for step in range(1, 4):
        tracker.log({"loss": 2.0 / step, "rewards/format_reward/mean": 0.5, "note": "text is skipped"}, step)
    tracker.finish()
    rows = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert rows[0] == {"step": 1, "loss": 2.0, "rewards/format_reward/mean": 0.5}
    assert sorted(p.name for p in (tmp_path / "plots").iterdir()) == ["loss.png", "rewards-format_reward-mean.png"]
    assert (tmp_path / "plots" / "loss.png").read_bytes()[:4] == b"\x89PNG"


def test_a_step_logged_again_after_resume_keeps_the_last_value(tmp_path):
    tracker = start_tracking(TrackingConfig(), tmp_path)
    tracker.log({"loss": 3.0}, 1)
    tracker.log({"loss": 2.0}, 2)
    tracker.log({"loss": 2.5}, 2)  # the resumed run redoes step 2
    tracker.log({"loss": float("nan")}, 3)  # non-finite values are not written
    assert read_metrics(tmp_path / "metrics.jsonl") == {"loss": [(1, 3.0), (2, 2.5)]}


def test_report_to_names_the_cloud_trackers_only():
    assert trainer_report_to(TrackingConfig()) == ["none"]
    assert trainer_report_to(TrackingConfig(backends=["local", "wandb", "mlflow"])) == ["wandb", "mlflow"]


def test_unknown_backend_is_a_located_error(tmp_path):
    recipe = tmp_path / "r.yaml"
    recipe.write_text("output_dir: x\ntracking:\n  backends: [local, wandbb]\n")
    with pytest.raises(ConfigError) as err:
        validate_recipe(load_config(recipe))
    assert f"{recipe}:3: tracking.backends.1" in str(err.value)
    assert "Did you mean 'wandb'" in str(err.value)


def test_missing_package_names_the_extra(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "wandb", None)  # makes `import wandb` raise ImportError
    with pytest.raises(ConfigError, match=r"pip install 'finsent\[wandb\]'"):
        start_tracking(TrackingConfig(backends=["wandb"]), tmp_path)


class _Recorder:
    """Records calls as (name, args, kwargs)."""

    def __init__(self):
        self.calls = []

    def __getattr__(self, name):
        def call(*args, **kwargs):
            self.calls.append((name, args, kwargs))
            return self

        return call


def test_wandb_tracker_with_a_fake_module(tmp_path, monkeypatch):
    """Fakes ``wandb`` (needs an account): checks init arguments, logged steps and finish."""
    run = _Recorder()
    fake = types.SimpleNamespace(run=None, init=lambda **kwargs: run.calls.append(("init", (), kwargs)) or run)
    monkeypatch.setitem(sys.modules, "wandb", fake)
    tracker = start_tracking(TrackingConfig(backends=["wandb"], project="p", run_name="r"), tmp_path)
    tracker.log({"loss": 1.0}, 5)
    tracker.finish()
    assert run.calls == [
        ("init", (), {"project": "p", "name": "r", "dir": str(tmp_path)}),
        ("log", ({"loss": 1.0},), {"step": 5}),
        ("finish", (), {}),
    ]


def test_mlflow_and_trackio_trackers_with_fake_modules(tmp_path, monkeypatch):
    """Fakes ``mlflow`` and ``trackio`` (a tracking server or dashboard): checks the calls they receive."""
    mlflow, trackio = _Recorder(), _Recorder()
    mlflow.active_run = lambda: None
    monkeypatch.setitem(sys.modules, "mlflow", mlflow)
    monkeypatch.setitem(sys.modules, "trackio", trackio)
    tracker = start_tracking(TrackingConfig(backends=["mlflow", "trackio"], project="p"), tmp_path)
    tracker.log({"eval/accuracy": 0.5}, 2)
    tracker.finish()
    assert [c[0] for c in mlflow.calls] == ["set_experiment", "start_run", "log_metrics", "end_run"]
    assert mlflow.calls[2] == ("log_metrics", ({"eval/accuracy": 0.5},), {"step": 2})
    assert trackio.calls == [
        ("init", (), {"project": "p", "name": None}),
        ("log", ({"eval/accuracy": 0.5},), {"step": 2}),
        ("finish", (), {}),
    ]


def test_tensorboard_tracker_with_a_fake_writer(tmp_path, monkeypatch):
    """Fakes ``tensorboard`` and torch's SummaryWriter module (tensorboard is not installed here)."""
    writer = _Recorder()
    monkeypatch.setitem(sys.modules, "tensorboard", types.ModuleType("tensorboard"))
    monkeypatch.setitem(
        sys.modules,
        "torch.utils.tensorboard",
        types.SimpleNamespace(SummaryWriter=lambda log_dir: writer.calls.append(("new", log_dir)) or writer),
    )
    tracker = start_tracking(TrackingConfig(backends=["tensorboard"]), tmp_path)
    tracker.log({"loss": 1.5, "grad_norm": 0.1}, 3)
    tracker.finish()
    assert writer.calls == [
        ("new", str(tmp_path / "tensorboard")),
        ("add_scalar", ("loss", 1.5, 3), {}),
        ("add_scalar", ("grad_norm", 0.1, 3), {}),
        ("close", (), {}),
    ]


def test_every_tracker_has_help_and_plot_names_are_file_safe():
    assert all(TRACKERS.help(name) for name in TRACKERS.names())
    assert plot_name("rewards/format_reward/mean") == "rewards-format_reward-mean"
    assert plot_name("eval/accuracy (val)") == "eval-accuracy-val"


def test_training_opens_wandb_first_on_the_main_process_only(tmp_path, monkeypatch):
    """Fakes ``wandb``: a training stage opens the run (project, name) that the Trainer's integration reuses, and
    forwards the Trainer's logs to ``local`` only, so nothing is logged twice."""
    runs = []
    fake = types.SimpleNamespace(run=None, init=lambda **kwargs: runs.append(kwargs) or _Recorder())
    monkeypatch.setitem(sys.modules, "wandb", fake)
    cfg = TrackingConfig(backends=["local", "wandb"], project="p", run_name="r")
    local, opened = start_trainer_tracking(cfg, tmp_path, is_main_process=False)
    assert runs == [] and opened.trackers == [] and len(local.trackers) == 1
    local, opened = start_trainer_tracking(cfg, tmp_path)
    assert runs == [{"project": "p", "name": "r", "dir": str(tmp_path)}]
    assert [type(t).__name__ for t in local.trackers] == ["LocalTracker"]
    assert [type(t).__name__ for t in opened.trackers] == ["WandbTracker"]


def test_module_docstring_example_runs():
    import doctest

    import finsent.tracking

    assert doctest.testmod(finsent.tracking).failed == 0
