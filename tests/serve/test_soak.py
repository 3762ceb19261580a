"""A soak of the real service: `finsent serve` in its own process on 127.0.0.1, eight clients for a bounded time
sending a mix of good, unauthorised and malformed requests. Every answer must be the expected one (zero errors) and
the server's resident memory may not grow by more than ``RSS_GROWTH_BOUND_MIB`` after the warm-up.

The model served is a tiny Qwen3 warmed up on PhraseBank rows, so that its answers have an ``<answer>`` tag and the
service scores the labels' probabilities (a second forward pass per batch) on every good request."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

import httpx
import pytest

from warm_model import warm_tiny_qwen3

SOAK_S = 20.0
WARMUP_S = 5.0
CLIENTS = 8
RSS_GROWTH_BOUND_MIB = 32.0
KEY = "soak-test-key"
LOCK = threading.Lock()
pytestmark = pytest.mark.slow


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


# (endpoint, what httpx sends, whether with the key, the expected status)
REQUESTS = [
    ("sentiment", {"json": {"text": "Operating profit rose to EUR 13.1 mn from EUR 8.7 mn."}}, True, 200),
    ("sentiment", {"json": {"texts": ["Sales fell 5 %.", "The board met on Tuesday.", "Shares jumped."]}}, True, 200),
    ("sentiment", {"json": {"text": "Profit rose."}}, False, 401),
    ("sentiment", {"content": b'{"text": "broken', "headers": {"content-type": "application/json"}}, True, 422),
    ("sentiment", {"json": {"texts": ["x"] * 1000}}, True, 422),
    ("health", {}, False, 200),
]


def client_loop(base_url: str, until: float, seed: int, outcomes: Counter, failures: list[str]) -> None:
    with httpx.Client(base_url=base_url, timeout=60) as client:
        i = seed
        while time.monotonic() < until:
            kind, kwargs, with_key, expected = REQUESTS[i % len(REQUESTS)]
            i += 1
            headers = {**kwargs.get("headers", {}), **({"x-api-key": KEY} if with_key else {})}
            send = {k: v for k, v in kwargs.items() if k != "headers"}
            try:
                if kind == "health":
                    response = client.get("/health")
                else:
                    response = client.post("/v1/sentiment", headers=headers, **send)
            except httpx.HTTPError as err:
                failures.append(f"{kind}: {type(err).__name__}: {err}")
                continue
            with LOCK:
                outcomes[response.status_code] += 1
            if response.status_code != expected:
                failures.append(f"{kind}: expected {expected}, got {response.status_code} {response.text[:200]}")
            elif expected == 200 and kind == "sentiment":
                body = response.json()
                results = body.get("results", [body])
                if any(r["status"] not in ("ok", "fallback", "missing") for r in results):
                    failures.append(f"bad result {body}")
                with LOCK:
                    outcomes["scored"] += sum(r["probabilities"] is not None for r in results)


def test_soak(phrasebank_data_dir, tmp_path, record_property):
    model = warm_tiny_qwen3(phrasebank_data_dir / "train.jsonl", tmp_path / "model")
    port = free_port()
    env = {**os.environ, "FINSENT_SOAK_KEY": KEY}
    argv = [sys.executable, "-m", "finsent", "serve", "--model", str(model), "--port", str(port)]
    argv += ["--api-key-env", "FINSENT_SOAK_KEY", "--max-new-tokens", "64"]
    log = (tmp_path / "serve.log").open("w")
    server = subprocess.Popen(argv, env=env, stdout=log, stderr=subprocess.STDOUT)
    base_url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            assert server.poll() is None, (tmp_path / "serve.log").read_text()[-3000:]
            assert time.monotonic() < deadline, "the service did not come up"
            try:
                if httpx.get(f"{base_url}/health", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.2)

        outcomes: Counter[int] = Counter()
        failures: list[str] = []
        start = time.monotonic()
        threads = [
            threading.Thread(target=client_loop, args=(base_url, start + SOAK_S, seed, outcomes, failures))
            for seed in range(CLIENTS)
        ]
        for thread in threads:
            thread.start()
        samples: list[tuple[float, float]] = []
        while any(thread.is_alive() for thread in threads):
            samples.append((time.monotonic() - start, rss_mib(server.pid)))
            time.sleep(0.25)
        for thread in threads:
            thread.join()
    finally:
        server.terminate()
        server.wait(timeout=30)
        log.close()

    scored = outcomes.pop("scored")
    total = sum(outcomes.values())
    assert not failures, failures[:5]
    assert outcomes[200] > 100 and outcomes[401] and outcomes[422], outcomes
    assert scored > outcomes[200], f"label probabilities in only {scored} answers"  # a batch request has 3 texts
    after_warmup = [rss for at, rss in samples if at >= WARMUP_S]
    growth = max(after_warmup) - after_warmup[0]
    summary = (
        f"{total} requests in {SOAK_S:g} s, {dict(outcomes)}, {scored} answers scored, "
        f"RSS {after_warmup[0]:.0f} -> max {max(after_warmup):.0f} MiB "
        f"(growth {growth:.1f} MiB, bound {RSS_GROWTH_BOUND_MIB:g})"
    )
    record_property("soak", summary)  # in the JUnit XML (pytest --junitxml), for the reliability figures
    assert growth < RSS_GROWTH_BOUND_MIB, summary
