"""Benchmark the HTTP service: requests/s and latency at concurrency 1, 8 and 32, micro-batching on against off.

Sizes: ``finsent serve`` runs in its own process on 127.0.0.1 over the transformers backend, with the tiny random
Qwen3 of the tests (hidden 16, the real Qwen3 tokenizer) or any model dir given with --model; this process sends
POST /v1/sentiment requests from ``concurrency`` connections, at most --requests per level and --max-seconds each.
The reference is the same server with micro-batching off (one prompt per generate call); the ratio is on / off.
Run: python benchmarks/bench_serve.py [--model DIR] [--requests 64] [--max-seconds 60] [--max-new-tokens 16]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np

from bench_inference import SHARED_DATA, TEXTS, random_qwen3

LEVELS = (1, 8, 32)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_server(
    model: Path, port: int, use_micro_batching: bool, max_new_tokens: int, threads: int
) -> subprocess.Popen:
    """Start ``finsent serve`` in a new process with ``threads`` torch threads and wait for /health."""
    command = [sys.executable, "-m", "finsent", "serve", "--model", str(model), "--port", str(port)]
    command += ["--max-new-tokens", str(max_new_tokens), f"serve.use_micro_batching={str(use_micro_batching).lower()}"]
    command += ["serve.micro_batch_size=32", "serve.max_concurrency=256"]
    # On a small shared machine, OpenMP teams wider than the free cores stall at every barrier when a thread is
    # descheduled (a generate call after an idle gap then took 600 ms instead of 20 here): keep the server narrow.
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
    server = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env)
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise SystemExit(f"finsent serve exited:\n{server.stderr.read() if server.stderr else ''}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).is_success:
                return server
        except httpx.HTTPError:
            time.sleep(0.2)
    server.kill()
    raise SystemExit("finsent serve did not answer /health within 180 s")


async def load(url: str, concurrency: int, requests: int, max_seconds: float) -> tuple[int, float, list[float]]:
    """Send up to ``requests`` requests from ``concurrency`` workers for at most ``max_seconds``; return the count,
    the wall time and each latency in ms."""
    latencies: list[float] = []
    issued = 0
    deadline = time.perf_counter() + max_seconds

    async def worker(client: httpx.AsyncClient) -> None:
        nonlocal issued
        while issued < requests and time.perf_counter() < deadline:
            text = TEXTS[issued % len(TEXTS)]
            issued += 1
            start = time.perf_counter()
            response = await client.post("/v1/sentiment", json={"text": text})
            response.raise_for_status()
            latencies.append((time.perf_counter() - start) * 1000)

    limits = httpx.Limits(max_connections=concurrency)
    async with httpx.AsyncClient(base_url=url, timeout=300, limits=limits) as client:
        await client.post("/v1/sentiment", json={"text": TEXTS[0]})  # warm-up
        start = time.perf_counter()
        await asyncio.gather(*(worker(client) for _ in range(concurrency)))
        return len(latencies), time.perf_counter() - start, latencies


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, help="Model dir (default: the tests' tiny random Qwen3).")
    parser.add_argument("--requests", type=int, default=64, help="Most requests per concurrency level.")
    parser.add_argument("--max-seconds", type=float, default=60, help="Longest time per level.")
    parser.add_argument("--max-new-tokens", type=int, default=16, help="Tokens generated per request (at most).")
    parser.add_argument("--server-threads", type=int, default=1, help="torch threads in the server process.")
    args = parser.parse_args()

    results: dict[tuple[int, bool], tuple[int, float, list[float]]] = {}
    with tempfile.TemporaryDirectory(prefix="bench-serve-") as tmp:
        model = args.model or random_qwen3(Path(tmp) / "tiny", SHARED_DATA / "tokenizers" / "qwen3")  # TINY_QWEN3
        for use_micro_batching in (True, False):
            port = free_port()
            server = start_server(model, port, use_micro_batching, args.max_new_tokens, args.server_threads)
            try:
                for level in LEVELS:
                    url = f"http://127.0.0.1:{port}"
                    results[level, use_micro_batching] = asyncio.run(load(url, level, args.requests, args.max_seconds))
            finally:
                server.terminate()
                server.wait(timeout=30)

    machine = platform.processor() or platform.machine()
    print(
        f"bench_serve: {machine}, {os.cpu_count()} CPUs shared by the server ({args.server_threads} torch "
        "threads) and this client"
    )
    print(
        f"model: {args.model or 'tiny random Qwen3 (hidden 16, 2 layers, Qwen3 tokenizer)'}, transformers backend, "
        f"<= {args.max_new_tokens} new tokens, <= {args.requests} requests or {args.max_seconds:g} s per level"
    )
    print()
    print("| concurrency | micro-batching | requests | req/s | p50 ms | p95 ms |")
    print("|---:|:---|---:|---:|---:|---:|")
    for (level, use_micro_batching), (count, wall_s, latencies) in sorted(results.items(), key=lambda kv: kv[0]):
        p50, p95 = np.percentile(latencies, [50, 95])
        state = "on" if use_micro_batching else "off"
        print(f"| {level} | {state} | {count} | {count / wall_s:.1f} | {p50:.0f} | {p95:.0f} |")
    print()
    print("| concurrency | req/s on | req/s off (reference) | ratio on/off |")
    print("|---:|---:|---:|---:|")
    for level in LEVELS:
        on, off = (results[level, flag][0] / results[level, flag][1] for flag in (True, False))
        print(f"| {level} | {on:.1f} | {off:.1f} | {on / off:.2f}x |")


if __name__ == "__main__":
    main()
