"""Backends for real: transformers on the tiny Qwen3, openai against a local HTTP server (llamacpp on the GGUFs the
export writes: tests/export/test_gguf.py)."""

import importlib.util

import pytest

from fake_openai_server import FakeOpenAIServer, Reply
from finsent.completion import PromptConfig, build_messages
from finsent.config import ModelConfig
from finsent.errors import ConfigError, FinsentError
from finsent.serve.backends import BACKENDS, Completion, load_backend

HAS_LLAMA_CPP = importlib.util.find_spec("llama_cpp") is not None


def test_registry_lists_three_backends():
    assert BACKENDS.names() == ["llamacpp", "openai", "transformers"]
    with pytest.raises(ConfigError, match="Did you mean 'openai'"):
        load_backend(ModelConfig(path="m", backend="opneai"))


def test_transformers_batched_greedy_equals_one_by_one(tiny_model_dir):
    """Left padding must not change what a prompt generates: batched output equals each prompt alone."""
    backend = load_backend(ModelConfig(path=str(tiny_model_dir), max_new_tokens=6, batch_size=3))
    prompts = [
        build_messages("Net sales rose 12% to EUR 85 million in the quarter.", PromptConfig()),
        build_messages("Shares fell.", PromptConfig()),
        "A bare text is one user message.",
    ]
    batched = backend.complete(prompts)
    assert len(batched) == 3 and all(isinstance(c, Completion) for c in batched)
    assert all(1 <= c.completion_tokens <= 6 and c.latency_ms > 0 for c in batched)
    assert [c.text for c in batched] == [backend.complete([p])[0].text for p in prompts]
    rendered = backend.render(prompts[1])
    assert rendered.endswith("<|im_start|>assistant\n<think>\n\n</think>\n\n")  # thinking off, as in training
    assert backend.complete([]) == []


def test_openai_backend_against_a_local_server(monkeypatch):
    monkeypatch.setenv("FINSENT_TEST_KEY", "sk-local")
    with FakeOpenAIServer() as server:
        cfg = ModelConfig(
            path="served-model",
            backend="openai",
            base_url=server.url,
            api_key_env="FINSENT_TEST_KEY",
            max_new_tokens=32,
            batch_size=2,
        )
        prompts = [build_messages(f"Text number {i} about quarterly sales.", PromptConfig()) for i in range(3)]
        completions = load_backend(cfg).complete(prompts)
        assert [c.text.endswith("<answer>neutral</answer>") for c in completions] == [True] * 3
        assert all(c.completion_tokens > 0 and c.latency_ms > 0 for c in completions)
        payload = server.log[0].payload
        assert payload["model"] == "served-model" and payload["max_tokens"] == 32 and payload["temperature"] == 0
        assert payload["authorization"] == "Bearer sk-local"
        assert sorted(entry.text for entry in server.log) == sorted(p[-1]["content"][6:] for p in prompts)


def test_openai_backend_names_the_url_and_status_on_a_server_error():
    with FakeOpenAIServer(lambda payload, seen: Reply(status=500, content="boom")) as server:
        backend = load_backend(ModelConfig(path="m", backend="openai", base_url=server.url, timeout_s=5))
        with pytest.raises(FinsentError, match=rf"{server.url}/chat/completions: HTTP 500: .*boom"):
            backend.complete(["hello"])
        assert len(server.log) == 4, "the openai client retries a 500 three times"


def test_openai_backend_names_the_url_on_a_reply_that_is_no_chat_completion():
    with FakeOpenAIServer(lambda payload, seen: Reply(raw_body=b'{"choices": [')) as server:
        backend = load_backend(ModelConfig(path="m", backend="openai", base_url=server.url, timeout_s=5))
        with pytest.raises(FinsentError, match=rf"{server.url}/chat/completions: not a chat-completions reply"):
            backend.complete(["hello"])


@pytest.mark.skipif(HAS_LLAMA_CPP, reason="llama_cpp is installed: the missing-dependency message cannot show")
def test_llamacpp_without_the_package_names_the_extra():
    with pytest.raises(ConfigError, match=r"finsent\[gguf\]"):
        load_backend(ModelConfig(path="model.gguf", backend="llamacpp"))
