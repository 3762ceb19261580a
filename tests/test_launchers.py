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
