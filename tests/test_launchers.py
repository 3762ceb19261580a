"""The launchers: accelerate configs, the SLURM script (dry runs: no SLURM here), and the launch path on CPU."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
SLURM = REPO / "launchers" / "slurm" / "finsent.slurm"
BIN = Path(sys.executable).parent


@pytest.mark.parametrize(
    ("name", "distributed_type"),
    [
        ("single_gpu", "NO"),
        ("multi_gpu", "MULTI_GPU"),
        ("zero2", "DEEPSPEED"),
        ("zero3", "DEEPSPEED"),
        ("fsdp", "FSDP"),
    ],
)
def test_accelerate_configs(name, distributed_type):
    config = yaml.safe_load((REPO / "launchers" / "accelerate" / f"{name}.yaml").read_text())
    assert config["distributed_type"] == distributed_type
    assert config["mixed_precision"] == "bf16"
    if name.startswith("zero"):
        assert config["deepspeed_config"]["zero_stage"] == int(name[-1])


def run_slurm(*args, env=None, cwd=None):
    return subprocess.run(["bash", str(SLURM), *args], capture_output=True, text=True, env=env, cwd=cwd)


def test_slurm_help_and_argument_errors():
    help_run = run_slurm("--help")
    assert help_run.returncode == 0
    for flag in ("--stage", "--recipe", "--accelerate", "--resume", "--token-file", "--scratch"):
        assert flag in help_run.stdout
    assert run_slurm("--recipe", "r.yaml").returncode == 2
    bad = run_slurm("--stage", "train", "--recipe", "r.yaml")
    assert bad.returncode == 2 and "expected data, sft, grpo or eval, got 'train'" in bad.stderr
    assert "no accelerate config" in run_slurm("--stage", "sft", "--recipe", "r", "--accelerate", "zero9").stderr


def test_slurm_submit_step_creates_the_logs_directory(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("SLURM_")}
    done = run_slurm(
        "--stage",
        "sft",
        "--recipe",
        "recipes/qwen3-4b-sentiment.yaml",
        "--logs",
        "out/logs",
        "--dry-run",
        env=env,
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "out" / "logs").is_dir()
    assert done.stdout.startswith("sbatch ") and "--output=out/logs/%x-%j.out" in done.stdout


def test_slurm_job_step_launches_accelerate_with_caches_on_scratch(tmp_path):
    token = tmp_path / "token"
    token.write_text("hf_secret")
    env = {**os.environ, "SLURM_JOB_ID": "42", "SLURM_NNODES": "2"}
    done = run_slurm(
        "--stage",
        "grpo",
        "--recipe",
        "recipes/qwen3-4b-sentiment.yaml",
        "--accelerate",
        "zero3",
        "--scratch",
        str(tmp_path / "scratch"),
        "--token-file",
        str(token),
        "--resume",
        "--dry-run",
        "--",
        "grpo.trainer.max_steps=10",
        env=env,
    )
    assert done.returncode == 0, done.stderr
    command = done.stdout.splitlines()[-1]
    assert f"--config_file {REPO}/launchers/accelerate/zero3.yaml" in command
    assert "--num_machines 2 --num_processes 16 --machine_rank $SLURM_PROCID" in command
    assert "-m finsent grpo --config recipes/qwen3-4b-sentiment.yaml --resume grpo.trainer.max_steps=10" in command
    assert "hf_secret" not in done.stdout + done.stderr
    assert (tmp_path / "scratch" / "huggingface").is_dir() and (tmp_path / "scratch" / "vllm").is_dir()


@pytest.mark.slow
def test_launch_path_on_cpu_accelerate_and_two_process_torchrun(tmp_path, phrasebank_data_dir):
    """``accelerate launch --config_file launchers/accelerate/single_gpu.yaml --cpu -m finsent sft`` and a real
    two-process DDP run (gloo) through ``torchrun -m finsent``: the stage code is the same."""
    overrides = [
        f"output_dir={tmp_path}",
        f"data.output_dir={phrasebank_data_dir}",
        "sft.trainer.max_steps=2",
        "sft.trainer.save_steps=2",
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    single = subprocess.run(
        [
            str(BIN / "accelerate"),
            "launch",
            "--config_file",
            str(REPO / "launchers/accelerate/single_gpu.yaml"),
            "--cpu",
            "--mixed_precision",
            "no",
            "-m",
            "finsent",
            "sft",
            "--config",
            "tiny-cpu",
            *overrides,
            "sft.output_dir=" + str(tmp_path / "single"),
        ],
        capture_output=True,
        text=True,
        env=env,
    )
    assert single.returncode == 0, single.stderr[-3000:]
    torchrun = shutil.which("torchrun", path=str(BIN))
    ddp = subprocess.run(
        [
            torchrun,
            "--nproc_per_node",
            "2",
            "-m",
            "finsent",
            "sft",
            "--config",
            "tiny-cpu",
            *overrides,
            "sft.output_dir=" + str(tmp_path / "ddp"),
            "sft.trainer.use_cpu=true",
        ],
        capture_output=True,
        text=True,
        env=env,
    )
    assert ddp.returncode == 0, ddp.stderr[-3000:]
    epochs = {
        name: json.loads((tmp_path / name / "result.json").read_text())["metrics"]["epoch"]
        for name in ("single", "ddp")
    }
    # Two ranks see twice the rows per step: twice the share of an epoch in the same two steps.
    assert epochs["ddp"] == pytest.approx(2 * epochs["single"], rel=0.05)


@pytest.mark.slow
def test_finsent_run_trains_sft_and_grpo_on_two_ddp_processes_over_gloo(tmp_path):
    """`accelerate launch --config_file launchers/accelerate/multi_gpu.yaml --num_processes 2` with accelerate's CPU
    switch: two ranks on gloo train the tiny SFT and a short GRPO through `finsent run`. The main process alone runs
    the data stage and prints the summary; the adapter saved loads and predicts.

    (`accelerate launch --cpu --num_processes 2` starts one process: accelerate runs several CPU processes only
    through mpirun. Its torch launcher, the multi_gpu config, starts two, and ACCELERATE_USE_CPU puts them on gloo.)
    """
    from finsent.config import ModelConfig
    from finsent.serve.backends import load_backend
    from finsent.serve.predict import predict_texts
    from finsent.tasks import TASKS

    steps, batch = 2, 4
    done = subprocess.run(
        [
            str(BIN / "accelerate"),
            "launch",
            "--config_file",
            str(REPO / "launchers/accelerate/multi_gpu.yaml"),
            "--num_processes",
            "2",
            "--mixed_precision",
            "no",
            "-m",
            "finsent",
            "run",
            "--config",
            "tiny-cpu",
            "--stages",
            "data,sft,grpo",
            f"output_dir={tmp_path}",
            "data.sources=[{name: demo, num_examples: 60}]",
            f"sft.trainer.max_steps={steps}",
            f"sft.trainer.per_device_train_batch_size={batch}",
            "sft.trainer.packing=false",  # one row per conversation, so the epoch counts the ranks
            f"grpo.trainer.max_steps={steps}",
        ],
        capture_output=True,
        text=True,
        env={**os.environ, "OMP_NUM_THREADS": "1", "ACCELERATE_USE_CPU": "true"},
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stderr.count("finsent.run: sft: running") == 2  # both ranks trained
    assert done.stderr.count("finsent.data.sources: demo:") == 1  # the main process alone read and wrote the data
    assert done.stdout.count("finsent run:") == 1
    state = json.loads((tmp_path / "run.json").read_text())
    assert {stage: s["status"] for stage, s in state.items()} == {"data": "done", "sft": "done", "grpo": "done"}
    generations = next((tmp_path / "data").glob("generations-*.jsonl")).read_text().splitlines()
    sent = json.loads((tmp_path / "data" / "report.json").read_text())["funnel"]["sent to teacher"]
    assert len({json.loads(line)["id"] for line in generations}) == len(generations) == sent
    rows = len((tmp_path / "data" / "train.jsonl").read_text().splitlines())
    sft = json.loads((tmp_path / "sft" / "result.json").read_text())
    # Two ranks split each epoch: twice the share of an epoch per step that one process would take.
    assert sft["metrics"]["epoch"] == pytest.approx(steps / -(-rows // (2 * batch)))
    grpo = json.loads((tmp_path / "grpo" / "result.json").read_text())
    assert grpo["metrics"]["train_runtime"] > 0 and (tmp_path / "grpo" / "config.yaml").is_file()
    backend = load_backend(ModelConfig(path=str(tmp_path / "grpo"), max_new_tokens=8))
    predictions = predict_texts(backend, ["Net sales rose 12% to EUR 85 million."], TASKS.get("sentiment"))
    assert predictions[0].status in ("ok", "fallback", "missing") and predictions[0].completion_tokens > 0
