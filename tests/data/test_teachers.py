"""Teachers: the lexicon baseline on real PhraseBank sentences, the openai teacher against a real local HTTP server."""

from __future__ import annotations

import signal
import sys
import threading
import time
import types
from pathlib import Path

import pytest

from fake_openai_server import FakeOpenAIServer, Reply, scripted
from finsent.completion import parse_completion
from finsent.config import SourceConfig, TeacherConfig, ValidationConfig, load_config
from finsent.data.readers import RowErrors
from finsent.data.sources import load_source
from finsent.data.teachers import TEACHERS, TeacherRequest, load_teacher
from finsent.data.validate import validate_completion
from finsent.errors import ConfigError
from finsent.lexicon import find_cues, load_lexicon


def _phrasebank(path: Path) -> list[tuple[str, str]]:
    return [(ex.text, ex.label) for ex in load_source(SourceConfig("financial_phrasebank", str(path)), RowErrors())]


def _requests(texts: list[str], labels: list[str | None] | None = None) -> list[TeacherRequest]:
    labels = labels or [None] * len(texts)
    return [
        TeacherRequest(f"id{i}", [{"role": "user", "content": f"Text: {t}"}], t, g)
        for i, (t, g) in enumerate(zip(texts, labels, strict=True))
    ]


def _openai_cfg(*urls: str, **overrides: object) -> TeacherConfig:
    settings: dict[str, object] = dict(
        name="openai", model="fake", base_urls=list(urls), timeout_s=0.3, max_retries=3, max_concurrency=4,
    )  # fmt: skip
    settings.update(overrides)
    return TeacherConfig(**settings)  # type: ignore[arg-type]


# --- lexicon ------------------------------------------------------------------------------------------------------


def test_lexicon_teacher_explains_every_phrasebank_sentence_validly(phrasebank_allagree: Path) -> None:
    rows = _phrasebank(phrasebank_allagree)
    teacher = load_teacher(TeacherConfig(name="lexicon"))
    requests = _requests([text for text, _ in rows], [label for _, label in rows])

    outputs = dict(teacher.generate(requests, 0.6))

    assert sorted(outputs) == list(range(len(rows)))
    rejected = {
        i: reason
        for i, out in outputs.items()
        if (reason := validate_completion(out.text or "", rows[i][0], rows[i][1], ValidationConfig()))
    }
    assert rejected == {}
    reasonings = [parse_completion(out.text or "").reasoning for out in outputs.values()]
    assert len({r.split(".")[0] for r in reasonings}) >= 6, "templates should vary"
    # Cue words are quoted from the text, figures are cited verbatim.
    lexicon = load_lexicon("finsent")
    for (text, _), reasoning in zip(rows, reasonings, strict=True):
        for cue in find_cues(text, lexicon).positive[:1]:
            assert f'"{cue}"' in reasoning
    i = next(i for i, (text, _) in enumerate(rows) if "5.2 %" in text)
    assert "5.2 %" in reasonings[i]


def test_lexicon_teacher_is_seeded_per_request_and_round() -> None:
    teacher = load_teacher(TeacherConfig(name="lexicon"))
    requests = _requests([f"Operating profit rose {n} % and sales grew strongly." for n in range(30)])

    first = [out.text for _, out in teacher.generate(requests, 0.6)]

    assert first == [out.text for _, out in teacher.generate(requests, 0.6)]
    assert first != [out.text for _, out in teacher.generate(requests, 0.8)]


def test_lexicon_teacher_blind_answers_with_cue_polarity() -> None:
    teacher = load_teacher(TeacherConfig(name="lexicon", mode="blind"))
    texts = ["Net sales fell 8 % after a loss.", "Operating profit rose to EUR 5 mn.", "The meeting is in May."]

    answers = [parse_completion(out.text or "").label for _, out in teacher.generate(_requests(texts), 0.6)]

    assert answers == ["negative", "positive", "neutral"]


def test_unknown_lexicon_is_a_config_error() -> None:
    expected = r"data\.teacher\.lexicon: expected one of finsent\|loughran_mcdonald, got 'vader'"
    with pytest.raises(ConfigError, match=expected):
        load_config("tiny-cpu", ["data.teacher.lexicon=vader"])


def test_lexicon_teacher_uses_the_configured_word_lists() -> None:
    # "obsolete" is a Loughran-McDonald negative word but not in finsent's short list.
    text = "The company said its older product line is now obsolete."
    polarity = {}
    for lexicon in ("finsent", "loughran_mcdonald"):
        teacher = load_teacher(TeacherConfig(name="lexicon", lexicon=lexicon, mode="blind"))
        [(_, out)] = list(teacher.generate(_requests([text]), 0.6))
        polarity[lexicon] = parse_completion(out.text or "").label
    assert polarity == {"finsent": "neutral", "loughran_mcdonald": "negative"}


def test_unknown_teacher_lists_known_names() -> None:
    match = r"teacher\.name: unknown teacher 'opneai'.*lexicon, openai, rules, vllm.*'openai'"
    with pytest.raises(ConfigError, match=match):
        load_teacher(TeacherConfig(name="opneai"))


# --- openai -------------------------------------------------------------------------------------------------------


THOUGHT = "<reasoning>Sales rose 4 %.</reasoning><answer>positive</answer>"


def test_openai_teacher_retries_each_fault_then_succeeds(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FAKE_KEY", "sk-test")
    script = {
        "rate limited": [Reply(status=429, headers={"Retry-After": "0.2"})],
        "server error": [Reply(status=500), Reply(status=503)],
        "slow": [Reply(delay_s=1.0)],
        "broken json": [Reply(raw_body=b'{"choices": [')],
        "reset": [Reply(is_reset=True)],
        "thinks": [Reply(content=f"<think>Hmm, sales.</think>{THOUGHT}")],
    }  # fmt: skip
    with FakeOpenAIServer(scripted(script)) as server:
        teacher = load_teacher(_openai_cfg(server.url, api_key_env="FAKE_KEY"))

        outputs = dict(teacher.generate(_requests(list(script)), 0.7))

    by_text = {text: outputs[i] for i, text in enumerate(script)}
    assert all(out.error is None for out in outputs.values())
    assert {text: server.count(text) for text in script} == {
        "rate limited": 2, "server error": 3, "slow": 2, "broken json": 2, "reset": 2, "thinks": 1,
    }  # fmt: skip
    assert by_text["thinks"].text == THOUGHT
    assert by_text["rate limited"].prompt_tokens == 10
    assert by_text["rate limited"].completion_tokens == len((by_text["rate limited"].text or "").split())
    assert {e.payload["authorization"] for e in server.log} == {"Bearer sk-test"}
    assert {e.payload["temperature"] for e in server.log} == {0.7}
    assert {e.payload["model"] for e in server.log} == {"fake"}


def test_openai_teacher_gives_up_after_max_retries_and_not_on_client_errors() -> None:
    script = {
        "down": [Reply(status=502)] * 10, "slow": [Reply(delay_s=1.0)] * 10, "bad request": [Reply(status=400)],
        "broken json": [Reply(raw_body=b'{"choices": [')] * 10, "no choices": [Reply(raw_body=b'{"id": "x"}')] * 10,
        "reset": [Reply(is_reset=True)] * 10,
    }  # fmt: skip
    with FakeOpenAIServer(scripted(script)) as server:
        teacher = load_teacher(_openai_cfg(server.url, max_retries=2))

        outputs = dict(teacher.generate(_requests(list(script)), 0.6))

    assert [(out.text, out.error) for _, out in sorted(outputs.items())] == [
        (None, "http_502"), (None, "timeout"), (None, "http_400"), (None, "invalid_body"), (None, "invalid_body"),
        (None, "connection_error"),
    ]  # fmt: skip
    assert [server.count(text) for text in script] == [3, 3, 1, 3, 3, 3]


def test_openai_teacher_waits_out_retry_after_unless_it_exceeds_two_minutes() -> None:
    script = {
        "wait 1 s": [Reply(status=429, headers={"Retry-After": "1"})],
        "wait 1 h": [Reply(status=429, headers={"Retry-After": "3600"})] * 10,
    }
    with FakeOpenAIServer(scripted(script)) as server:
        teacher = load_teacher(_openai_cfg(server.url))

        outputs = dict(teacher.generate(_requests(list(script)), 0.6))

    assert (outputs[0].error, outputs[1].error, outputs[1].text) == (None, "http_429", None)
    assert [server.count(text) for text in script] == [2, 1], "the openai client gives up on a wait over 2 min"
    first, second = [e.at for e in server.log if e.text == "wait 1 s"]
    # A lower bound only (it cannot flake): the client's own first backoff is at most 0.5 s.
    assert second - first >= 0.95, "Retry-After: 1 must be waited out"


def test_openai_teacher_spreads_requests_over_base_urls() -> None:
    with FakeOpenAIServer() as one, FakeOpenAIServer() as two:
        teacher = load_teacher(_openai_cfg(one.url, two.url + "/"))

        outputs = list(teacher.generate(_requests([f"Sales rose {n} %." for n in range(10)]), 0.6))

    assert len(outputs) == 10
    assert len(one.log) == len(two.log) == 5


def test_openai_teacher_yields_as_results_complete() -> None:
    script = {"slow": [Reply(delay_s=0.6)], "fast": []}
    with FakeOpenAIServer(scripted(script)) as server:
        teacher = load_teacher(_openai_cfg(server.url, timeout_s=5.0))

        order = [index for index, _ in teacher.generate(_requests(["slow", "fast"]), 0.6)]

    assert order == [1, 0]


def _teacher_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "finsent-openai-teacher"]


def test_openai_teacher_closed_early_cancels_in_flight_requests() -> None:
    texts = ["fast"] + [f"stuck {i}" for i in range(4)]
    script = {text: [Reply(delay_s=30.0)] for text in texts[1:]}
    with FakeOpenAIServer(scripted(script)) as server:
        generator = load_teacher(_openai_cfg(server.url, timeout_s=10.0)).generate(_requests(texts), 0.6)
        index, _ = next(generator)
        closer = threading.Thread(target=generator.close)
        closer.start()
        closer.join(timeout=10.0)

        assert index == 0
        assert not closer.is_alive(), "closing the generator must not wait for the slow replies"
        assert _teacher_threads() == []


@pytest.fixture
def python_sigint_handler():
    """Python's own Ctrl-C handler, also where the tests were started with SIGINT ignored (`make test &`)."""
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, previous)


@pytest.mark.skipif(sys.platform == "win32", reason="needs POSIX signals")
def test_openai_teacher_keyboard_interrupt_while_waiting_does_not_hang(python_sigint_handler) -> None:
    with FakeOpenAIServer(scripted({"stuck": [Reply(delay_s=30.0)]})) as server:
        generator = load_teacher(_openai_cfg(server.url, timeout_s=10.0)).generate(_requests(["stuck"]), 0.6)
        timer = threading.Timer(0.3, signal.pthread_kill, args=(threading.main_thread().ident, signal.SIGINT))
        start = time.monotonic()
        timer.start()
        with pytest.raises(KeyboardInterrupt):
            next(generator)
        waited = time.monotonic() - start

        assert waited < 10, "Ctrl-C must interrupt the wait, not wait for the 30 s reply"
        assert _teacher_threads() == []


def test_openai_teacher_needs_a_model_name() -> None:
    with pytest.raises(ConfigError, match=r"teacher\.model: expected the model name"):
        load_teacher(TeacherConfig(name="openai"))


# --- vllm ---------------------------------------------------------------------------------------------------------


def test_vllm_teacher_without_vllm_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "vllm", None)  # import vllm raises ModuleNotFoundError, installed or not

    with pytest.raises(
        ConfigError, match=r"teacher\.name: the vllm teacher needs vLLM: pip install 'finsent\[vllm\]'"
    ):
        load_teacher(TeacherConfig(name="vllm", model="Qwen/Qwen3-4B"))


def test_vllm_teacher_maps_requests_to_llm_chat(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fakes the ``vllm`` module (no GPU here): checks the LLM/SamplingParams arguments and the output mapping."""
    calls: dict[str, list] = {"init": [], "chat": []}

    class LLM:
        def __init__(self, **kwargs: object) -> None:
            calls["init"].append(kwargs)

        def chat(self, messages: list, params: dict, use_tqdm: bool) -> list:
            calls["chat"].append((messages, params))
            replies = [f"<think>x</think>reply to {m[-1]['content']}" for m in messages]
            completions = [types.SimpleNamespace(text=reply, token_ids=[1] * 3) for reply in replies]
            return [types.SimpleNamespace(prompt_token_ids=[1] * 7, outputs=[c]) for c in completions]

    monkeypatch.setitem(sys.modules, "vllm", types.SimpleNamespace(LLM=LLM, SamplingParams=dict))
    cfg = TeacherConfig(name="vllm", model="tiny", max_concurrency=2, top_p=0.9, max_tokens=64, seed=3)

    outputs = list(load_teacher(cfg).generate(_requests(["a", "b", "c"]), 0.8))

    assert calls["init"] == [{"model": "tiny", "tensor_parallel_size": 1, "gpu_memory_utilization": 0.9, "seed": 3}]
    assert [len(messages) for messages, _ in calls["chat"]] == [2, 1]
    assert calls["chat"][0][1] == {"temperature": 0.8, "top_p": 0.9, "max_tokens": 64}
    assert [(i, out.text, out.prompt_tokens, out.completion_tokens) for i, out in outputs] == [
        (0, "reply to Text: a", 7, 3), (1, "reply to Text: b", 7, 3), (2, "reply to Text: c", 7, 3),
    ]  # fmt: skip


def test_registry_lists_all_teachers() -> None:
    assert TEACHERS.names() == ["lexicon", "openai", "rules", "vllm"]
    assert all(TEACHERS.help(name) for name in TEACHERS.names())
