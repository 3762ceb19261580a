"""Real ``finsent`` processes for the kill-point tests: run one, or SIGKILL it the moment its output shows a seeded
progress mark (a place in the work, not a time that a slow machine could shift)."""

from __future__ import annotations

import json
import random
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

SEED = 1234
TIMEOUT_S = 300


def finsent(*argv: str) -> list[str]:
    return [sys.executable, "-m", "finsent", *argv]


def run(argv: list[str]) -> None:
    done = subprocess.run(argv, capture_output=True, text=True, timeout=TIMEOUT_S)
    assert done.returncode == 0, done.stderr[-3000:]


def kill_at(argv: list[str], progress: Callable[[], int], mark: int) -> int:
    """Start ``argv``, SIGKILL it as soon as ``progress()`` reaches ``mark``; return the progress at the kill."""
    process = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + TIMEOUT_S
    while progress() < mark:
        if process.poll() is not None:
            raise AssertionError(f"ended before kill point {mark}: {process.stderr.read().decode()[-3000:]}")
        assert time.monotonic() < deadline, f"kill point {mark} not reached in {TIMEOUT_S} s"
        time.sleep(0.005)
    process.send_signal(signal.SIGKILL)
    assert process.wait() == -signal.SIGKILL
    process.stderr.close()
    return progress()


def lines(path: Path) -> int:
    return path.read_bytes().count(b"\n") if path.is_file() else 0


def marks(low: int, high: int, k: int) -> list[int]:
    """``k`` distinct seeded kill points in ``[low, high]``."""
    return sorted(random.Random(SEED).sample(range(low, high + 1), k))


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]
