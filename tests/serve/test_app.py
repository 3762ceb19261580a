"""The HTTP service for real: uvicorn on 127.0.0.1:0 in a thread, called with httpx, over the tiny Qwen3."""

import json
import logging
import threading
import time

import pytest

from app_server import serving
from finsent.completion import DEFAULT_SYSTEM_PROMPT, LABELS
from finsent.config import ModelConfig, ServeConfig, load_config
from finsent.data import build_dataset
from finsent.errors import ConfigError, FinsentError
from finsent.serve.app import chat_messages, chat_sampling, create_app
from finsent.serve.backends import GREEDY, Sampling, load_backend
from finsent.tasks import TASKS, TRANSACTION_CATEGORIES
from warm_model import warm_tiny_qwen3


class Gated:
    """Wraps a backend: records each call's batch size and holds the first call until ``release`` is set."""

    def __init__(self, inner):
        self.inner = inner
        self.sizes = []
        self.called = threading.Event()
        self.release = threading.Event()

    def complete(self, prompts, sampling=GREEDY):
        self.sizes.append(len(prompts))
        if len(self.sizes) == 1:
            self.called.set()
            self.release.wait(timeout=30)
        return self.inner.complete(prompts, sampling)


@pytest.fixture(scope="module")
def tiny(tiny_model_dir):
    return load_backend(ModelConfig(path=str(tiny_model_dir), max_new_tokens=8, batch_size=8))


def wait_in_flight(client, n):
    for _ in range(500):
        if client.get("/health").json()["in_flight"] == n:
            return
        time.sleep(0.01)
    raise AssertionError(f"never {n} requests in flight")


def test_sentiment_one_and_batch_health_openapi_and_page(tiny):
    with serving(tiny) as client:
        one = client.post("/v1/sentiment", json={"text": "Net sales rose 12% to EUR 85 million."})
        assert one.status_code == 200, one.text
        body = one.json()
        assert body.keys() == {
            "label",
            "display_name",
            "reasoning",
            "status",
            "probabilities",
            "confidence",
            "model_label",
            "latency_ms",
        }
        assert body["label"] in (*LABELS, None) and body["status"] in ("ok", "fallback", "missing")
        assert body["latency_ms"] > 0 and one.headers["x-request-id"]
        batch = client.post("/v1/sentiment", json={"texts": ["Shares fell.", "Profit doubled.", "No change."]})
        assert batch.status_code == 200 and len(batch.json()["results"]) == 3
        health = client.get("/health").json()
        assert health == {
            "status": "ok",
            "model": "finsent",
            "in_flight": 0,
            "use_micro_batching": True,
            "temperature": 1.0,
            "min_confidence": 0.0,
        }
        spec = client.get("/openapi.json").json()
        assert {"/v1/sentiment", "/v1/chat/completions", "/v1/models", "/health"} <= spec["paths"].keys()
        page = client.get("/")
        assert page.headers["content-type"].startswith("text/html") and '<textarea id="text"' in page.text


def test_chat_completions_serves_the_openai_backend(tiny, tiny_model_dir):
    """finsent's own OpenAI client talks to the service, which answers with the tiny model."""
    with serving(tiny) as client:
        served = ModelConfig(
            path="finsent-tiny", backend="openai", base_url=f"{client.base_url}/v1", batch_size=2, max_new_tokens=8
        )
        prompts = [[{"role": "user", "content": "Sales rose."}], [{"role": "user", "content": "Sales fell."}]]
        completions = load_backend(served).complete(prompts)
        trained = [chat_messages(p, DEFAULT_SYSTEM_PROMPT, use_caller_system_prompt=False) for p in prompts]
        direct = tiny.complete(trained, Sampling(max_new_tokens=8))
        assert [c.text for c in completions] == [c.text for c in direct]  # greedy: the same words either way
        reply = client.post("/v1/chat/completions", json={"model": "m", "messages": prompts[0], "temperature": 0})
        body = reply.json()
        assert body["object"] == "chat.completion" and body["model"] == "m"
        assert body["choices"][0]["message"]["role"] == "assistant" and body["usage"]["completion_tokens"] > 0
        usage = body["usage"]
        assert usage["prompt_tokens"] > 0
        assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]


def test_the_official_openai_client_lists_models_completes_and_streams(tiny):
    """The unmodified ``openai`` client: /v1/models, a completion and the same completion streamed (SSE chunks);
    a caller's max_tokens and temperature are clamped to the recipe's serve limits, so the reply is greedy."""
    openai = pytest.importorskip("openai", reason="openai not installed: pip install 'finsent[dev]'")
    with serving(tiny, max_tokens=6) as client:
        api = openai.OpenAI(base_url=f"{client.base_url}/v1", api_key="unused", max_retries=0)
        assert [(m.id, m.object) for m in api.models.list()] == [("finsent", "model")]
        messages = [{"role": "system", "content": "Answer like a pirate."}, {"role": "user", "content": "Sales rose."}]
        asked = {"model": "finsent", "messages": messages, "max_tokens": 1000, "temperature": 1.5}
        reply = api.chat.completions.create(**asked)
        chunks = list(api.chat.completions.create(**asked, stream=True))
    with serving(tiny, max_tokens=6, use_caller_system_prompt=True) as client:
        api = openai.OpenAI(base_url=f"{client.base_url}/v1", api_key="unused", max_retries=0)
        allowed = api.chat.completions.create(**asked)
    trained = chat_messages(messages, DEFAULT_SYSTEM_PROMPT, use_caller_system_prompt=False)
    expected = tiny.complete([trained], Sampling(max_new_tokens=6))[0]  # greedy, 6 tokens, the trained system prompt
    own = tiny.complete([messages], Sampling(max_new_tokens=6))[0]
    assert reply.object == "chat.completion" and reply.choices[0].message.content == expected.text
    assert reply.usage.completion_tokens == expected.completion_tokens <= 6
    # The prompt's length shows which system message the model saw: the trained one unless the recipe allows.
    assert reply.usage.prompt_tokens == expected.prompt_tokens != own.prompt_tokens == allowed.usage.prompt_tokens
    assert reply.choices[0].finish_reason == expected.finish_reason
    assert [c.object for c in chunks] == ["chat.completion.chunk"] * 3 and len({c.id for c in chunks}) == 1
    assert chunks[0].choices[0].delta.role == "assistant"
    assert "".join(c.choices[0].delta.content or "" for c in chunks) == expected.text
    assert [c.choices[0].finish_reason for c in chunks] == [None, None, expected.finish_reason]


def test_chat_sampling_is_clamped_and_the_system_message_kept_unless_allowed():
    cfg = ServeConfig(max_tokens=64, max_temperature=0.7)
    assert chat_sampling(10_000, 1.5, cfg) == Sampling(max_new_tokens=64, temperature=0.7)
    assert chat_sampling(8, 0.2, cfg) == Sampling(max_new_tokens=8, temperature=0.2)
    assert chat_sampling(None, None, cfg) == Sampling(max_new_tokens=64, temperature=0.0)
    assert chat_sampling(8, 1.0, ServeConfig()) == Sampling(max_new_tokens=8, temperature=0.0)  # default: greedy
    user = {"role": "user", "content": "Sales rose."}
    own = {"role": "system", "content": "Answer like a pirate."}
    trained = {"role": "system", "content": "TRAINED"}
    assert chat_messages([own, user], "TRAINED", use_caller_system_prompt=False) == [trained, user]
    assert chat_messages([user], "TRAINED", use_caller_system_prompt=False) == [trained, user]
    assert chat_messages([own, user], "TRAINED", use_caller_system_prompt=True) == [own, user]
    assert chat_messages([user], "TRAINED", use_caller_system_prompt=True) == [trained, user]
    with pytest.raises(ConfigError, match="max_temperature: expected a number >= 0, got -1"):
        ServeConfig(max_temperature=-1)


def test_api_key_is_required_when_configured(tiny, monkeypatch):
    monkeypatch.setenv("FINSENT_TEST_API_KEY", "s3cret")
    with serving(tiny, api_key_env="FINSENT_TEST_API_KEY") as client:
        payload = {"text": "Sales rose."}
        for headers in ({}, {"Authorization": "Bearer wrong"}, {"X-API-Key": "s3cre"}):
            reply = client.post("/v1/sentiment", json=payload, headers=headers)
            assert reply.status_code == 401 and reply.json()["detail"] == "missing or wrong API key"
            assert reply.headers["www-authenticate"] == "Bearer"
        chat = client.post("/v1/chat/completions", json={"messages": [{"role": "user", "content": "x"}]})
        assert chat.status_code == 401 and client.get("/v1/models").status_code == 401
        assert client.post("/v1/sentiment", json=payload, headers={"Authorization": "Bearer s3cret"}).is_success
        assert client.post("/v1/sentiment", json=payload, headers={"X-API-Key": "s3cret"}).is_success
        assert client.get("/health").is_success  # liveness needs no key
    monkeypatch.delenv("FINSENT_TEST_API_KEY")
    with pytest.raises(ConfigError, match="serve.api_key_env: the API key variable FINSENT_TEST_API_KEY is not set"):
        create_app(tiny, ServeConfig(api_key_env="FINSENT_TEST_API_KEY"), TASKS.get("sentiment"))


def test_body_size_limit_answers_413_declared_or_streamed(tiny):
    with serving(tiny, max_body_bytes=200) as client:
        big = json.dumps({"text": "x" * 300}).encode()
        reply = client.post("/v1/sentiment", content=big, headers={"Content-Type": "application/json"})
        assert reply.status_code == 413
        assert reply.json()["detail"] == "request body over 200 bytes (serve.max_body_bytes)"
        chunked = client.post("/v1/sentiment", content=iter([big[:150], big[150:]]))  # no Content-Length
        assert chunked.status_code == 413
        assert client.post("/v1/sentiment", json={"text": "Fits."}).is_success


def test_batch_size_text_length_and_malformed_bodies_answer_422(tiny):
    with serving(tiny, max_batch_size=2, max_text_chars=20) as client:

        def detail(payload=None, **kwargs):
            reply = client.post("/v1/sentiment", json=payload, **kwargs)
            assert reply.status_code == 422, reply.text
            return json.dumps(reply.json()["detail"])

        assert "List should have at most 2 items" in detail({"texts": ["a b c", "d e f", "g h i"]})
        assert "String should have at most 20 characters" in detail({"text": "x" * 21})
        assert "give either text (one) or texts (a batch)" in detail({"text": "a", "texts": ["b"]})
        assert "give either text (one) or texts (a batch)" in detail({})
        assert "JSON decode error" in detail(content=b'{"text": ', headers={"Content-Type": "application/json"})
        chat = client.post("/v1/chat/completions", json={"messages": [{"role": "user", "content": "x" * 21}]})
        assert chat.status_code == 422
        too_many = {"messages": [{"role": "user", "content": "x"}], "max_tokens": 0}
        assert client.post("/v1/chat/completions", json=too_many).status_code == 422


def post_in_thread(client, text):
    thread = threading.Thread(target=client.post, args=("/v1/sentiment",), kwargs={"json": {"text": text}})
    thread.start()
    return thread


def test_micro_batching_gathers_waiting_requests_into_one_call(tiny):
    for use_micro_batching, sizes in ((True, [1, 3]), (False, [1, 1, 1, 1])):
        gated = Gated(tiny)
        with serving(gated, use_micro_batching=use_micro_batching, micro_batch_size=8) as client:
            threads = [post_in_thread(client, "Sales rose.")]
            assert gated.called.wait(timeout=30)  # the first request's backend call holds the worker
            threads += [post_in_thread(client, text) for text in ("Loss widened.", "Orders grew.", "Guidance kept.")]
            wait_in_flight(client, 4)
            gated.release.set()
            for thread in threads:
                thread.join(timeout=60)
        assert gated.sizes == sizes, use_micro_batching


def test_concurrency_limit_503_timeout_504_backend_error_502(tiny):
    gated = Gated(tiny)
    with serving(gated, max_concurrency=1, request_timeout_s=0.3) as client:
        first = client.post("/v1/sentiment", json={"text": "Held until the gate opens."})
        assert first.status_code == 504
        assert first.json()["detail"] == "no answer within 0.3 s (serve.request_timeout_s)"
        gated.release.set()
    gated = Gated(tiny)
    with serving(gated, max_concurrency=1) as client:
        thread = post_in_thread(client, "First.")
        wait_in_flight(client, 1)
        busy = client.post("/v1/sentiment", json={"text": "Second."})
        assert busy.status_code == 503 and busy.headers["retry-after"] == "1"
        assert "server busy: 1 requests in flight (serve.max_concurrency)" in busy.json()["detail"]
        gated.release.set()
        thread.join(timeout=60)

    class Failing:
        def complete(self, prompts, sampling=GREEDY):
            raise FinsentError("http://upstream/v1/chat/completions: HTTP 500: boom")

    with serving(Failing()) as client:
        failed = client.post("/v1/sentiment", json={"text": "Anything."})
        assert failed.status_code == 502 and "HTTP 500: boom" in failed.json()["detail"]
        assert client.get("/health").is_success  # the worker survives a failed batch


def test_access_log_is_one_json_record_per_request(tiny, caplog):
    with caplog.at_level(logging.INFO, logger="finsent.serve.access"), serving(tiny, max_body_bytes=100) as client:
        client.post("/v1/sentiment", json={"text": "Sales rose."}, headers={"X-Request-ID": "req-1"})
        client.post("/v1/sentiment", content=b"x" * 200)
        client.get("/health")
    records = [json.loads(r.getMessage()) for r in caplog.records if r.name == "finsent.serve.access"]
    assert [(r["method"], r["path"], r["status"]) for r in records] == [
        ("POST", "/v1/sentiment", 200),
        ("POST", "/v1/sentiment", 413),
        ("GET", "/health", 200),
    ]
    assert records[0]["request_id"] == "req-1" and records[0]["latency_ms"] > 0 and records[0]["client"] == "127.0.0.1"


class Recording:
    """Wraps a backend and keeps every prompt it is asked to complete."""

    def __init__(self, inner):
        self.inner = inner
        self.prompts = []

    def complete(self, prompts, sampling=GREEDY):
        self.prompts.extend(prompts)
        return self.inner.complete(prompts, sampling)


def test_a_served_transactions_model_answers_categories_and_sees_masked_text(tmp_path):
    """The tiny model warmed up (plain torch, seconds) on synthetic transactions, served for task transactions:
    answers are parsed against the 12 categories with their display names, not against the sentiment labels, and
    the model sees the masked text it was trained on."""
    cfg = load_config("tiny-cpu-transactions", [f"output_dir={tmp_path}", "data.sources.0.num_examples=60"])
    build_dataset(cfg)
    task = cfg.get_task()
    model = warm_tiny_qwen3(tmp_path / "data" / "train.jsonl", tmp_path / "model")
    backend = Recording(load_backend(ModelConfig(path=str(model), max_new_tokens=64, batch_size=8)))
    texts = ["SQ *STARBUCKS #1234 SEATTLE WA 6.50", "CARD 4921 1234 5678 9012 SHELL OIL 45.10", "NETFLIX.COM 15.49"]
    with serving(backend, task) as client:
        response = client.post("/v1/sentiment", json={"texts": texts})
    assert response.status_code == 200, response.text
    results = response.json()["results"]
    assert [r["status"] for r in results].count("ok") >= 2
    assert all(r["label"] in task.labels for r in results)
    assert [r["display_name"] for r in results] == [task.display(r["label"]) for r in results]
    assert {r["display_name"] for r in results} <= {c.name for c in TRANSACTION_CATEGORIES}
    seen = [messages[-1]["content"] for messages in backend.prompts]
    assert seen[1] == "Transaction: CARD [CARD] SHELL OIL 45.10" and seen[0] == f"Transaction: {texts[0]}"
    assert backend.prompts[0][0]["content"] == task.prompt.system
