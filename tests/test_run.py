"""`finsent run`: finished stages skipped, changed ones (and what follows) re-run, interrupted ones resumed."""

import json
from pathlib import Path

from finsent.cli import main
from finsent.config import load_config
from finsent.run import run_recipe, stage_fingerprints


def overrides(tmp_path: Path, *extra: str) -> list[str]:
    return [
        f"output_dir={tmp_path}",
        "stages=[data, sft]",
        "data.sources=[{name: demo, num_examples: 60}]",
        "sft.trainer.max_steps=2",
        "sft.trainer.save_steps=1",
        *extra,
    ]


def test_fingerprints_change_from_the_edited_stage_on():
    base = stage_fingerprints(load_config("tiny-cpu"))
    changed = stage_fingerprints(load_config("tiny-cpu", ["grpo.trainer.max_steps=9"]))
    assert [stage for stage in base if base[stage] != changed[stage]] == ["grpo", "export", "eval"]
    prompt = stage_fingerprints(load_config("tiny-cpu", ["prompt.user_template='Headline: {text}'"]))
    assert all(base[stage] != prompt[stage] for stage in base)


def test_run_skips_finished_reruns_changed_and_resumes_interrupted(tmp_path):
    first = run_recipe(load_config("tiny-cpu", overrides(tmp_path)))
    assert [(o.stage, o.status) for o in first] == [("data", "ran"), ("sft", "ran")]
    adapter = Path(first[1].output_dir) / "adapter_model.safetensors"
    assert adapter.is_file()

    again = run_recipe(load_config("tiny-cpu", overrides(tmp_path)))
    assert [(o.stage, o.status) for o in again] == [("data", "skipped"), ("sft", "skipped")]

    changed = run_recipe(load_config("tiny-cpu", overrides(tmp_path, "sft.trainer.learning_rate=5.0e-4")))
    assert [(o.stage, o.status) for o in changed] == [("data", "skipped"), ("sft", "ran")]

    # An interrupted stage (started, no result.json) resumes from its last checkpoint.
    state_path = tmp_path / "run.json"
    state = json.loads(state_path.read_text())
    state["sft"]["status"] = "started"
    state_path.write_text(json.dumps(state))
    (tmp_path / "sft" / "result.json").unlink()
    resumed = run_recipe(load_config("tiny-cpu", overrides(tmp_path, "sft.trainer.learning_rate=5.0e-4")))
    assert [(o.stage, o.status) for o in resumed] == [("data", "skipped"), ("sft", "resumed")]
    assert resumed[1].result.resumed_from.endswith("checkpoint-2")


def test_cli_run_prints_the_stage_table(tmp_path, capsys):
    assert main(["run", "--config", "tiny-cpu", *overrides(tmp_path), "--stages", "data"]) == 0
    out = capsys.readouterr().out
    assert "finsent run" in out and "data" in out and "ran" in out
