"""A full disk and a read-only output directory: one clear error, exit code 2, nothing corrupt, and a re-run after
making room finishes with the same outputs as a run that never failed.

The full disk and the read-only file system are real: a small tmpfs mounted for the test (root only; skipped with
the reason elsewhere) and, everywhere, a file-size limit (RLIMIT_FSIZE) that makes the kernel refuse writes.
"""

from __future__ import annotations

import os
import resource
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from finsent.cli import main

DEMO = ["--config", "tiny-cpu", "data.sources=[{name: demo, num_examples: 300}]"]


def mount_tmpfs(target: Path, size: str, *options: str) -> None:
    target.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", ",".join([f"size={size}", *options]), "tmpfs", str(target)],
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({done.stderr.strip() or 'mount failed'}); needs root")


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 2 MiB file system of its own, so it can be filled without touching the machine's disk."""
    mount = tmp_path / "disk"
    mount_tmpfs(mount, "2m")
    yield mount
    subprocess.run(["umount", str(mount)], check=True)


def fill(disk: Path, leave_bytes: int) -> Path:
    """Fill ``disk`` with a file until ``leave_bytes`` or fewer are free; return that file."""
    filler = disk / "filler"
    with filler.open("wb") as handle:
        try:
            while True:
                free = _free_bytes(disk)
                if free <= leave_bytes:
                    break
                handle.write(b"\0" * min(free - leave_bytes, 1 << 16))
                handle.flush()
        except OSError:
            pass
    return filler


def _free_bytes(path: Path) -> int:
    stat = os.statvfs(path)
    return stat.f_bavail * stat.f_frsize


def data_files(out: Path) -> dict[str, bytes]:
    data = out / "data"
    return {name: (data / name).read_bytes() for name in ("train.jsonl", "validation.jsonl", "test.jsonl")}


def run_data(out: Path, capsys: pytest.CaptureFixture[str], *overrides: str) -> tuple[int, str]:
    code = main(["data", *DEMO, f"output_dir={out}", *overrides])
    return code, capsys.readouterr().err


def test_full_disk_mid_run_is_one_error_and_a_rerun_finishes_identically(tmp_path, small_disk, capsys):
    assert run_data(tmp_path / "reference", capsys)[0] == 0
    filler = fill(small_disk, leave_bytes=48 * 1024)  # room for the config and part of the teacher's log

    code, err = run_data(small_disk / "run", capsys)
    assert code == 2 and "Traceback" not in err
    assert "cannot write (No space left on device)" in err and "generations-" in err
    data = small_disk / "run" / "data"
    assert not (data / "result.json").exists() and not (data / "train.jsonl").exists()
    assert not list(data.glob("*.tmp"))

    filler.unlink()
    assert run_data(small_disk / "run", capsys)[0] == 0  # resumes from the log's complete lines
    assert data_files(small_disk / "run") == data_files(tmp_path / "reference")


def test_full_disk_while_rewriting_keeps_the_previous_outputs_whole(small_disk, capsys):
    out = small_disk / "run"
    assert run_data(out, capsys)[0] == 0
    before = data_files(out)
    fill(small_disk, leave_bytes=0)

    code, err = run_data(out, capsys, "data.split.test=0.2")  # same teacher log, new splits to write
    assert code == 2 and "No space left on device" in err and "Traceback" not in err
    assert data_files(out) == before
    assert not list((out / "data").glob("*.tmp"))


def test_read_only_output_directory(tmp_path, capsys):
    disk = tmp_path / "ro"
    mount_tmpfs(disk, "1m", "ro")
    try:
        code, err = run_data(disk / "run", capsys)
    finally:
        subprocess.run(["umount", str(disk)], check=True)
    assert code == 2 and "Traceback" not in err
    assert "Read-only file system" in err and str(disk / "run") in err


def _limit_file_size() -> None:
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # the write fails with EFBIG instead of killing the process
    resource.setrlimit(resource.RLIMIT_FSIZE, (40 * 1024, 40 * 1024))


def test_kernel_write_limit_in_a_real_process(tmp_path):
    """Runs anywhere, root or not: the kernel refuses writes past 40 KiB per file, as a full quota would."""
    out = tmp_path / "run"
    done = subprocess.run(
        [sys.executable, "-m", "finsent.cli", "data", *DEMO, f"output_dir={out}"],
        capture_output=True,
        text=True,
        preexec_fn=_limit_file_size,
        timeout=300,
    )
    assert done.returncode == 2, done.stderr[-2000:]
    assert "cannot write (File too large)" in done.stderr and "Traceback" not in done.stderr
    assert not (out / "data" / "result.json").exists()
