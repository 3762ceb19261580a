"""Backends for real: transformers on the tiny Qwen3, openai against a local HTTP server (llamacpp on the GGUFs the
export writes: tests/export/test_gguf.py)."""

import importlib.util
import math

import pytest
import torch

from fake_openai_server import FakeOpenAIServer, Reply
from finsent.completion import LABELS, PromptConfig, build_messages
from finsent.config import ModelConfig
from finsent.errors import ConfigError, FinsentError
from finsent.serve.backends import (
    BACKENDS,
    Completion,
    Sampling,
    first_token_probabilities,
    label_continuations,
    load_backend,
)
from finsent.tasks import TASKS

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


def test_transformers_label_probabilities_are_the_softmax_of_the_label_logits(tiny_model_dir):
    """Each Qwen3 sentiment label is one token after ``<answer>``: the probabilities are the softmax of those three
    logits at the position after the tag, computed here by hand from one plain forward pass."""
    backend = load_backend(ModelConfig(path=str(tiny_model_dir), max_new_tokens=4, batch_size=4))
    prompts = [build_messages(text, PromptConfig()) for text in ("Sales rose 12%.", "Shares fell after the warning.")]
    rendered = [backend.render(p) for p in prompts]
    completions = ["<reasoning>Sales grew.</reasoning><answer>", "<reasoning>x</reasoning><answer>neg"]
    probabilities = backend.label_probabilities(rendered, completions, LABELS)
    tokenizer, model = backend.tokenizer, backend.model
    label_ids = [tokenizer(label, add_special_tokens=False)["input_ids"] for label in LABELS]
    assert all(len(ids) == 1 for ids in label_ids)
    for text, completion, found in zip(rendered, completions, probabilities, strict=True):
        context = text + completion[: completion.index("<answer>") + len("<answer>")]
        ids = tokenizer(context, add_special_tokens=False, return_tensors="pt")["input_ids"]
        with torch.no_grad():
            logits = model(input_ids=ids).logits[0, -1]
        expected = torch.softmax(logits[[ids[0] for ids in label_ids]], dim=0).tolist()
        assert list(found) == list(LABELS)
        assert [found[label] for label in LABELS] == pytest.approx(expected, abs=1e-5)
        assert sum(found.values()) == pytest.approx(1.0, abs=1e-9)


def test_transformers_scores_every_token_of_multi_token_labels(tiny_model_dir):
    """Transaction categories are several tokens (``bills_utilities`` merges with the tag's ``>``): the cached
    second pass must give what one forward pass per label gives."""
    backend = load_backend(ModelConfig(path=str(tiny_model_dir), max_new_tokens=4, batch_size=4))
    labels = TASKS.get("transactions").labels
    rendered = [backend.render(text) for text in ("SHELL OIL 45.10", "NETFLIX.COM 15.49 monthly")]
    completions = ["<reasoning>Fuel.</reasoning><answer>", "<reasoning>Streaming.</reasoning><answer>x"]
    found = backend.label_probabilities(rendered, completions, labels)
    for text, completion, probabilities in zip(rendered, completions, found, strict=True):
        context = text + completion[: completion.index("<answer>") + len("<answer>")]
        full = [backend._tokenize(context + label) for label in labels]
        shared = min(next(i for i, (a, b) in enumerate(zip(f, full[0], strict=False)) if a != b) for f in full[1:])
        assert max(len(f) - shared for f in full) > 1  # some label needs the second pass
        scores = []
        for ids in full:
            with torch.no_grad():
                log_probs = backend.model(input_ids=torch.tensor([ids])).logits[0].log_softmax(-1)
            scores.append(sum(log_probs[i - 1, ids[i]].item() for i in range(shared, len(ids))))
        expected = torch.softmax(torch.tensor(scores, dtype=torch.float64), dim=0).tolist()
        assert [probabilities[label] for label in labels] == pytest.approx(expected, abs=1e-5)
    # Batched scoring (left-padded prefixes of different lengths) equals scoring each alone.
    alone = [backend.label_probabilities([r], [c], labels)[0] for r, c in zip(rendered, completions, strict=True)]
    for batched, single in zip(found, alone, strict=True):
        assert [batched[label] for label in labels] == pytest.approx([single[label] for label in labels], abs=1e-5)


def test_labels_that_prefix_each_other_are_closed_by_the_answer_tag():
    def by_character(text: str) -> list[int]:
        return [ord(c) for c in text]

    shared, suffixes = label_continuations("<answer>", ["other", "others"], by_character)
    assert bytes(shared).decode() == "<answer>other"
    assert [bytes(s).decode() for s in suffixes] == ["</answer>", "s</answer>"]
    shared, suffixes = label_continuations("<answer>", ["up", "down"], by_character)
    assert bytes(shared).decode() == "<answer>" and [bytes(s).decode() for s in suffixes] == ["up", "down"]


def test_no_answer_tag_and_no_labels_asked_give_no_probabilities(tiny_model_dir):
    backend = load_backend(ModelConfig(path=str(tiny_model_dir), max_new_tokens=4, batch_size=4))
    rendered = [backend.render("Sales rose.")]
    assert backend.label_probabilities(rendered, ["<reasoning>cut off before the answer"], LABELS) == [None]
    # The random tiny model writes no <answer> tag: asked or not, nothing to score.
    asked = backend.complete(["Sales rose."], Sampling(max_new_tokens=4, score_labels=LABELS))[0]
    plain = backend.complete(["Sales rose."], Sampling(max_new_tokens=4))[0]
    assert asked.text == plain.text and asked.label_probabilities is None and plain.label_probabilities is None


def test_first_token_alternatives_are_credited_to_the_label_they_begin():
    """The OpenAI wire format: per token its text and its top alternatives with log-probabilities."""
    tokens = [
        ("<reasoning>up</reasoning><answer", [("<reasoning>up</reasoning><answer", 0.0)]),
        (">pos", [(">pos", math.log(0.6)), (">neg", math.log(0.2)), (">n", math.log(0.1)), (">x", math.log(0.1))]),
        ("itive</answer>", [("itive</answer>", 0.0)]),
    ]
    found = first_token_probabilities(tokens, LABELS)
    # ">n" begins both negative and neutral: it counts for neither; ">x" begins no label.
    assert found == pytest.approx({"positive": 0.75, "negative": 0.25, "neutral": 0.0})
    assert first_token_probabilities([("no tags at all", [("no", 0.0)])], LABELS) is None
    assert first_token_probabilities([("<answer>", [("<answer>", 0.0)])], LABELS) is None  # the answer never starts


def test_openai_backend_reads_label_probabilities_from_logprobs_and_says_when_there_are_none(caplog):
    """The fake server stands in for a model server: with a logprobs reply the backend reads the answer token's
    alternatives; a server that sends none gives no probabilities, and the backend says so once."""
    completion = "<reasoning>Sales rose.</reasoning><answer>positive</answer>"
    logprobs = {
        "content": [
            {"token": "<reasoning>Sales rose.</reasoning><answer>", "logprob": 0.0, "top_logprobs": []},
            {
                "token": "positive",
                "logprob": math.log(0.7),
                "top_logprobs": [
                    {"token": "positive", "logprob": math.log(0.7)},
                    {"token": "neutral", "logprob": math.log(0.2)},
                    {"token": "negative", "logprob": math.log(0.1)},
                ],
            },
            {"token": "</answer>", "logprob": 0.0, "top_logprobs": []},
        ]
    }
    with FakeOpenAIServer(lambda payload, seen: Reply(content=completion, logprobs=logprobs)) as server:
        backend = load_backend(ModelConfig(path="m", backend="openai", base_url=server.url))
        (found,) = backend.complete(["Sales rose."], Sampling(score_labels=LABELS))
        assert found.label_probabilities == pytest.approx({"positive": 0.7, "negative": 0.1, "neutral": 0.2})
        assert server.log[0].payload["logprobs"] is True and server.log[0].payload["top_logprobs"] == 20
        backend.complete(["Shares fell."])
        assert "logprobs" not in server.log[1].payload  # not asked for when no labels are scored
    with FakeOpenAIServer(lambda payload, seen: Reply(content=completion)) as server:
        backend = load_backend(ModelConfig(path="m", backend="openai", base_url=server.url))
        found = backend.complete(["a", "b"], Sampling(score_labels=LABELS))
        assert [c.label_probabilities for c in found] == [None, None]
        assert caplog.text.count("gave no logprobs") == 1
