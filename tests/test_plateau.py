"""The reward plateau callback, driven the way the Trainer drives it: append to ``TrainerState.log_history``, then
call the hooks with real ``TrainingArguments``, ``TrainerState`` and ``TrainerControl`` objects."""

import json

import pytest
from transformers import TrainerControl, TrainerState, TrainingArguments

from finsent.config import PlateauConfig
from finsent.plateau import RewardPlateauCallback, decide_plateau, reward_windows


@pytest.fixture(scope="module")
def args(tmp_path_factory):
    return TrainingArguments(output_dir=str(tmp_path_factory.mktemp("grpo")), report_to="none")


def grpo_logs(step, total, rng_std):
    """One GRPOTrainer log line: means, and std / zero-std keys that move a lot and must be ignored."""
    return {
        "loss": 0.01,
        "reward": total,
        "reward_std": rng_std,
        "rewards/correctness_reward/mean": total / 2,
        "rewards/correctness_reward/std": rng_std,
        "rewards/format_reward/mean": total / 2,
        "rewards/format_reward/std": rng_std / 2,
        "frac_reward_zero_std": min(1.0, step / 100),
        "completions/mean_length": 40.0,
    }


def run(callback, args, totals, *, save_every=0, state=None):
    """Log ``totals`` step by step as the Trainer would; return the state and the step training stopped at."""
    state = state or TrainerState()
    control = TrainerControl()
    for step in range(state.global_step + 1, len(totals) + 1):
        state.global_step = step
        # std keys grow steadily: a callback that read them would see "improvement" and never stop
        logs = grpo_logs(step, totals[step - 1], rng_std=0.05 * step)
        state.log_history.append({**logs, "step": step})
        control = callback.on_log(args, state, control, logs=logs)
        if save_every and step % save_every == 0:
            control = callback.on_save(args, state, control)
        if control.should_training_stop:
            break
    callback.on_train_end(args, state, control)
    return state, step


def rising_then_flat(rise_steps, total_steps, top=3.0):
    return [min(top, 0.5 + (top - 0.5) * s / rise_steps) for s in range(1, total_steps + 1)]


def test_stops_on_a_flat_reward_and_ignores_std_keys(args, tmp_path):
    cfg = PlateauConfig(patience=3, min_delta=0.01, warmup_steps=20, window_steps=5)
    callback = RewardPlateauCallback(cfg, tmp_path)
    state, stopped_at = run(callback, args, rising_then_flat(rise_steps=40, total_steps=200))
    # rising until step 40: the window ending at 45 (mean 3.0) is the reference; 50, 55, 60 are stale
    assert stopped_at == 60
    assert callback.decision.compared == {
        "metric": "reward",
        "step": 60,
        "value": 3.0,
        "reference_step": 45,
        "reference_value": 3.0,
        "stale": 3,
        "min_delta": 0.01,
    }
    evidence = json.loads((tmp_path / "plateau.json").read_text())
    assert evidence["stopped_early"] and evidence["stop_step"] == 60 and evidence["best_step"] == 45
    assert evidence["reason"].startswith("reward plateau")
    assert set(evidence["trajectories"]) == {"reward", "rewards/correctness_reward/mean", "rewards/format_reward/mean"}
    assert len(evidence["trajectories"]["reward"]) == 60
    assert evidence["frac_reward_zero_std"][-1] == [60, 0.6]
    assert [w["end"] for w in evidence["windows"]] == list(range(5, 61, 5))
    for name in ("plateau.png", "zero_std_share.png"):
        assert (tmp_path / name).read_bytes()[:4] == b"\x89PNG"


def test_flat_reward_during_warmup_does_not_stop(args, tmp_path):
    cfg = PlateauConfig(patience=2, min_delta=0.01, warmup_steps=50, window_steps=5)
    _, stopped_at = run(RewardPlateauCallback(cfg, tmp_path), args, [1.0] * 50 + [2.0] * 50)
    # flat for 50 steps, but only windows ending after step 50 count: 55 sets the reference, 60 and 65 are stale
    assert stopped_at == 65


def test_a_steady_rise_above_min_delta_never_stops(args, tmp_path):
    cfg = PlateauConfig(patience=2, min_delta=0.01, warmup_steps=0, window_steps=5)
    totals = [0.02 * step for step in range(1, 101)]  # +0.1 per window
    callback = RewardPlateauCallback(cfg, tmp_path)
    state, stopped_at = run(callback, args, totals)
    assert stopped_at == 100 and not callback.decision.should_stop
    evidence = json.loads((tmp_path / "plateau.json").read_text())
    assert not evidence["stopped_early"] and evidence["stop_step"] is None and evidence["best_step"] == 100


def test_rises_smaller_than_min_delta_are_a_plateau(args, tmp_path):
    cfg = PlateauConfig(patience=4, min_delta=0.05, warmup_steps=0, window_steps=5)
    totals = [1.0 + 0.001 * step for step in range(1, 201)]  # +0.005 per window: below min_delta
    _, stopped_at = run(RewardPlateauCallback(cfg, tmp_path), args, totals)
    assert stopped_at == 25


def test_no_stop_when_disabled_but_evidence_written(args, tmp_path):
    cfg = PlateauConfig(use_early_stopping=False, patience=2, warmup_steps=0, window_steps=5)
    callback = RewardPlateauCallback(cfg, tmp_path)
    _, stopped_at = run(callback, args, [1.0] * 40)
    assert stopped_at == 40 and callback.decision.should_stop
    evidence = json.loads((tmp_path / "plateau.json").read_text())
    assert not evidence["stopped_early"] and evidence["reason"].startswith("reward plateau")


def test_decision_from_a_resumed_log_history_matches_an_uninterrupted_run(args, tmp_path):
    """A resumed run loads log_history from the checkpoint; a fresh callback must decide exactly as before."""
    cfg = PlateauConfig(patience=3, warmup_steps=10, window_steps=5)
    totals = rising_then_flat(30, 200)
    state, uninterrupted = run(RewardPlateauCallback(cfg, tmp_path / "a"), args, totals)
    resumed_state = TrainerState(global_step=27, log_history=[e for e in state.log_history if e["step"] <= 27])
    _, resumed = run(RewardPlateauCallback(cfg, tmp_path / "b"), args, totals, state=resumed_state)
    assert resumed == uninterrupted
    assert json.loads((tmp_path / "a" / "plateau.json").read_text()) == json.loads(
        (tmp_path / "b" / "plateau.json").read_text()
    )


def test_best_checkpoint_is_marked_so_rotation_keeps_it(args, tmp_path):
    cfg = PlateauConfig(patience=50, warmup_steps=0, window_steps=5)
    totals = [1.0] * 10 + [2.0] * 10 + [1.5] * 30  # best window mean at steps 11-20
    state, _ = run(RewardPlateauCallback(cfg, tmp_path), args, totals, save_every=10)
    assert state.best_global_step == 20 and state.best_metric == 2.0
    assert state.best_model_checkpoint.endswith("checkpoint-20")
    assert json.loads((tmp_path / "plateau.json").read_text())["best_checkpoint"] == state.best_model_checkpoint


class _Model:
    training = True

    def eval(self):
        self.training = False

    def train(self, mode=True):
        self.training = mode


def test_stops_when_validation_accuracy_falls_while_reward_rises(args, tmp_path):
    """Reward can saturate while task accuracy falls: the accuracy check stops training anyway."""
    accuracies = iter([0.5, 0.6, 0.55, 0.5, 0.45, 0.4])
    seen_modes = []

    def accuracy_fn(model, tokenizer):
        seen_modes.append(model.training)
        return next(accuracies)

    cfg = PlateauConfig(
        patience=100, warmup_steps=0, window_steps=5, accuracy_every_steps=10, accuracy_patience=3, metric="accuracy"
    )
    callback = RewardPlateauCallback(cfg, tmp_path, accuracy_fn=accuracy_fn)
    state, control, model = TrainerState(), TrainerControl(), _Model()
    for step in range(1, 101):
        state.global_step = step
        logs = grpo_logs(step, 0.03 * step, rng_std=0.1)
        state.log_history.append({**logs, "step": step})
        control = callback.on_log(args, state, control, logs=logs)
        control = callback.on_step_end(args, state, control, model=model, processing_class=None)
        if control.should_training_stop:
            break
    callback.on_train_end(args, state, control)
    assert step == 50 and seen_modes == [False] * 5 and model.training
    evidence = json.loads((tmp_path / "plateau.json").read_text())
    assert evidence["reason"].startswith("validation accuracy stopped improving")
    assert evidence["best_step"] == 20 and evidence["best_value"] == 0.6
    assert evidence["validation_accuracy"] == [[10, 0.5], [20, 0.6], [30, 0.55], [40, 0.5], [50, 0.45]]


def test_windows_are_closed_only_when_full():
    points = [(1, 1.0), (2, 2.0), (3, 3.0), (4, 4.0), (5, 5.0)]
    assert [(w.end, w.value) for w in reward_windows(points, 2)] == [(2, 1.5), (4, 3.5)]


def test_decision_ignores_eval_and_std_keys_entirely():
    history = [
        {
            "step": s,
            "reward_std": float(s),
            "eval_reward": float(s),
            "frac_reward_zero_std": s / 10,
            "rewards/x/std": float(s),
        }
        for s in range(1, 50)
    ]
    decision = decide_plateau(history, PlateauConfig(patience=1, warmup_steps=0, window_steps=5))
    assert decision.windows == [] and not decision.should_stop
