"""SIGKILL at seeded random points of real `finsent` processes, then a re-run: nothing lost, nothing duplicated, and
outputs equal to an uninterrupted run's (data, predictions and export exactly; training within 1e-5).

A kill point is a progress mark drawn with ``random.Random(SEED)`` (``tests/processes.py``): the n-th record in the
teacher's log or the prediction file, the n-th checkpoint, the n-th export artifact. The process is killed the moment
its output shows that mark, so each point is a place in the work, not a time that a slow machine could shift.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from fake_openai_server import FakeOpenAIServer, Reply, text_of
from finsent.cli import main
from processes import finsent, kill_at, lines, marks, read_jsonl, run

pytestmark = pytest.mark.slow


def test_data_generation(tmp_path):
    """The OpenAI-compatible teacher through a local server, killed mid-log three times."""

    def slow(payload: dict, seen: int) -> Reply:
        # Replies are a function of the text only, so any interleaving of runs keeps the same examples.
        return Reply(delay_s=0.01, content=None if len(text_of(payload)) % 5 else "no tags at all")

    with FakeOpenAIServer(slow) as server:
        teacher = f"data.teacher={{name: openai, model: fake, base_urls: ['{server.url}'], max_concurrency: 2}}"
        source = "data.sources=[{name: demo, num_examples: 240}]"
        base = ["data", "--config", "tiny-cpu", source, teacher]
        run(finsent(*base, f"output_dir={tmp_path / 'reference'}"))
        out = tmp_path / "killed"
        log = next((tmp_path / "reference" / "data").glob("generations-*.jsonl"))
        killed_log = out / "data" / log.name
        points = marks(1, lines(log) - 1, 3)
        for mark in points:
            assert kill_at(finsent(*base, f"output_dir={out}"), lambda: lines(killed_log), mark) < lines(log)
            assert not (out / "data" / "result.json").exists()
        run(finsent(*base, f"output_dir={out}"))

    ids = [row["id"] for row in read_jsonl(killed_log) if row["status"] != "failed"]
    assert len(set(ids)) == len(read_jsonl(log)), "a record was lost"
    for split in ("train", "validation", "test"):
        reference = (tmp_path / "reference" / "data" / f"{split}.jsonl").read_bytes()
        assert (out / "data" / f"{split}.jsonl").read_bytes() == reference, split


def test_batch_predict(tmp_path, tiny_model_dir):
    texts = [f"Quarterly revenue changed by {i} percent against the prior year." for i in range(40)]
    source = tmp_path / "in.jsonl"
    source.write_text("".join(json.dumps({"id": f"r{i}", "text": t}) + "\n" for i, t in enumerate(texts)))
    base = ["predict", "--model", str(tiny_model_dir), "--input", str(source), "--batch-size", "2"]
    reference, out = tmp_path / "reference.jsonl", tmp_path / "killed.jsonl"
    run(finsent(*base, "--max-new-tokens", "8", "--output", str(reference)))
    for mark in marks(1, len(texts) - 1, 3):
        kill_at(finsent(*base, "--max-new-tokens", "8", "--output", str(out)), lambda: lines(out), mark)
    run(finsent(*base, "--max-new-tokens", "8", "--output", str(out)))

    def answers(path: Path) -> list[tuple]:
        return [(r["id"], r["label"], r["raw"], r["status"]) for r in read_jsonl(path)]

    assert sorted(answers(out)) == sorted(answers(reference))  # every id once, with the same greedy answer


def checkpoints(out: Path) -> int:
    steps = [int(p.name.split("-")[1]) for p in out.glob("checkpoint-*") if (p / "trainer_state.json").is_file()]
    return max(steps, default=0)


def assert_same_adapter(reference: Path, resumed: Path) -> None:
    left_alone, after_kills = load_file(reference / "adapter_model.safetensors"), load_file(resumed)
    assert left_alone.keys() == after_kills.keys()
    for name, tensor in left_alone.items():
        assert torch.allclose(tensor, after_kills[name], atol=1e-5), name


@pytest.mark.parametrize("stage", ["sft", "grpo"])
def test_training(tmp_path, stage):
    """The killed runs go through `finsent run`, which must notice the interrupted stage and resume it."""
    steps = {"sft": 8, "grpo": 6}[stage]
    settings = [f"{stage}.trainer.max_steps={steps}", f"{stage}.trainer.save_steps=1"]
    reference, out = tmp_path / "reference", tmp_path / "killed"
    assert main(["data", "--config", "tiny-cpu", f"output_dir={reference}"]) == 0
    if stage == "grpo":  # both GRPO runs start from this SFT adapter
        assert main(["sft", "--config", "tiny-cpu", f"output_dir={reference}"]) == 0
    shutil.copytree(reference, out)
    run(finsent(stage, "--config", "tiny-cpu", f"output_dir={reference}", *settings))
    stage_dir = out / stage
    run_stage = finsent("run", "--config", "tiny-cpu", f"output_dir={out}", "--stages", stage, *settings)
    for mark in marks(1, steps - 1, 2):
        if checkpoints(stage_dir) < mark:
            kill_at(run_stage, lambda: checkpoints(stage_dir), mark)
            assert not (stage_dir / "result.json").exists()
    run(run_stage)
    assert json.loads((out / "run.json").read_text())[stage]["status"] == "done"
    assert json.loads((stage_dir / "result.json").read_text())["resumed_from"]
    assert_same_adapter(reference / stage, stage_dir / "adapter_model.safetensors")


def test_export(tmp_path, tiny_adapter_dir):
    pytest.importorskip("llama_cpp", reason="GGUF export needs finsent[gguf]")
    settings = [
        f"export.model={tiny_adapter_dir}",
        "export.quantizations=[Q8_0, Q5_K_M, Q4_K_M]",
        "export.compare_examples=0",  # the comparison reads what export wrote; the kill points are in the writing
        "export.gate_prompts=2",
        "data.sources=[{name: demo, num_examples: 60}]",
    ]
    reference, out = tmp_path / "reference", tmp_path / "killed"
    assert main(["data", "--config", "tiny-cpu", f"output_dir={reference}", *settings]) == 0
    shutil.copytree(reference, out)
    run(finsent("export", "--config", "tiny-cpu", f"output_dir={reference}", *settings))
    ggufs = sorted(p.name for p in (reference / "export" / "gguf").glob("*.gguf"))

    def artifacts() -> int:
        return len(list((out / "export" / "gguf").glob("*.gguf")))

    for mark in marks(1, len(ggufs) - 1, 2):
        if artifacts() < mark:
            kill_at(finsent("export", "--config", "tiny-cpu", f"output_dir={out}", *settings), artifacts, mark)
            assert not (out / "export" / "result.json").exists()
    run(finsent("export", "--config", "tiny-cpu", f"output_dir={out}", *settings))
    assert not list((out / "export").rglob("*.tmp"))  # what a kill left half-written is replaced

    def digest(path: Path) -> str:
        return hashlib.sha256(path.read_bytes()).hexdigest()

    assert sorted(p.name for p in (out / "export" / "gguf").glob("*.gguf")) == ggufs
    for name in ggufs:
        assert digest(out / "export" / "gguf" / name) == digest(reference / "export" / "gguf" / name), name
    merged = "merged/model.safetensors"
    assert digest(out / "export" / merged) == digest(reference / "export" / merged)
