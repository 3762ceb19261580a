"""generate_reasoning against a real local server with injected faults, killed with SIGKILL and resumed."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from fake_openai_server import FakeOpenAIServer, Reply, default_content, scripted, text_of
from finsent.completion import PromptConfig, render_completion
from finsent.config import SourceConfig, TeacherConfig, ValidationConfig
from finsent.data.readers import Example, RowErrors, example_id
from finsent.data.reasoning import build_teacher_messages, generate_reasoning, read_records
from finsent.data.sources import load_source
from finsent.data.teachers import TeacherOutput, TeacherRequest
from finsent.errors import ConfigError, DataError
from finsent.tasks import TASKS

TIMEOUT_S = 0.3

SENTIMENT = TASKS.get("sentiment")


def _examples(labeled: dict[str, str]) -> list[Example]:
    return [Example(example_id("test", text), text, label, "test") for text, label in labeled.items()]


def _openai_cfg(url: str, **overrides: Any) -> TeacherConfig:
    settings: dict[str, Any] = dict(
        name="openai", model="fake", base_urls=[url], timeout_s=TIMEOUT_S, max_retries=2, max_concurrency=4,
        attempts_per_example=2, temperature=0.6, temperature_step=0.2,
    )  # fmt: skip
    settings.update(overrides)
    return TeacherConfig(**settings)


def _lines(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def _delivered_tokens(server: FakeOpenAIServer) -> tuple[int, int]:
    """Tokens of the replies the client can have read: answered in time, with a readable body."""
    prompt = completion = 0
    for entry in server.log:
        reply = entry.reply
        if reply.status == 200 and reply.raw_body is None and not reply.is_reset and reply.delay_s < TIMEOUT_S:
            content = reply.content if reply.content is not None else default_content(entry.payload)
            prompt += 10
            completion += len(content.split())
    return prompt, completion


def test_faults_are_retried_rejected_or_failed_and_failed_ones_rerun(tmp_path: Path) -> None:
    other = (
        "<reasoning>The statement points the other way for an investor overall.</reasoning><answer>negative</answer>"
    )
    thought = (
        "<reasoning>Profit rose, which investors welcome as a sign of health.</reasoning><answer>positive</answer>"
    )
    script = {
        "Sales rose 5 % in the quarter.": [],
        "Rate limited: profit rose.": [Reply(status=429, headers={"Retry-After": "0"})],
        "Server error: profit rose.": [Reply(status=500)],
        "Slow reply: profit rose.": [Reply(delay_s=1.0)],
        "Broken JSON: profit rose.": [Reply(raw_body=b'{"choices": [{"mess')],
        "Connection reset: profit rose.": [Reply(is_reset=True)],
        "Thinking model: profit rose.": [Reply(content=f"<think>Let me see.</think>{thought}")],
        "Fixed on the second round.": [Reply(content="Positive, clearly.")],
        "Empty content every time.": [Reply(content="")] * 10,
        "No tags every time, sadly.": [Reply(content="The answer is positive.")] * 10,
        "Always the wrong label here.": [Reply(content=other)] * 10,
        "Server down for this one.": [Reply(status=503)] * 10,
        "Always too slow to answer.": [Reply(delay_s=1.0)] * 10,
    }  # fmt: skip
    examples = _examples(dict.fromkeys(script, "positive"))
    ids = {ex.text: ex.id for ex in examples}
    path = tmp_path / "generations.jsonl"
    with FakeOpenAIServer(scripted(script)) as server:
        cfg = _openai_cfg(server.url)
        first = generate_reasoning(examples, cfg, SENTIMENT, ValidationConfig(), path)
        counts_after_first = {text: server.count(text) for text in script}
        tokens = _delivered_tokens(server)

        server.respond = scripted({})  # the outage is over
        second = generate_reasoning(examples, cfg, SENTIMENT, ValidationConfig(), path)

    assert first.counts == {"kept": 8, "rejected": 3, "failed": 2}
    assert first.rejections == {"format:empty": 1, "format:no_answer_tag": 1, "answer_mismatch": 1}
    assert {text: first.records[i].reason for text, i in ids.items() if first.records[i].status == "failed"} == {
        "Server down for this one.": "http_503", "Always too slow to answer.": "timeout",
    }  # fmt: skip
    assert counts_after_first == {
        "Sales rose 5 % in the quarter.": 1, "Rate limited: profit rose.": 2, "Server error: profit rose.": 2,
        "Slow reply: profit rose.": 2, "Broken JSON: profit rose.": 2, "Connection reset: profit rose.": 2,
        "Thinking model: profit rose.": 1, "Fixed on the second round.": 2, "Empty content every time.": 2,
        "No tags every time, sadly.": 2, "Always the wrong label here.": 2, "Server down for this one.": 3,
        "Always too slow to answer.": 3,
    }  # fmt: skip
    assert (first.prompt_tokens, first.completion_tokens) == tokens
    assert first.prompt_tokens > 0

    fixed = first.records[ids["Fixed on the second round."]]
    assert (fixed.status, fixed.attempts, fixed.temperature) == ("kept", 2, 0.8)
    temperatures = [e.payload["temperature"] for e in server.log if e.text == "Fixed on the second round."]
    assert temperatures == [0.6, 0.8]
    assert first.records[ids["Thinking model: profit rose."]].completion == thought
    assert {r.teacher for r in first.records.values()} == {"openai"}
    assert first.records[ids["Empty content every time."]].completion == ""

    # The re-run sends only the two failed examples, once each, and leaves one line per id.
    resent = {text: server.count(text) - counts_after_first[text] for text in script}
    assert {text: n for text, n in resent.items() if n} == {
        "Server down for this one.": 1,
        "Always too slow to answer.": 1,
    }
    assert second.counts == {"kept": 10, "rejected": 3}
    rows = _lines(path)
    assert sorted(row["id"] for row in rows) == sorted(ids.values())
    assert {row["id"]: row["status"] for row in rows} == {i: r.status for i, r in second.records.items()}


def test_guided_and_blind_messages_use_the_student_prompt_and_few_shot_turns() -> None:
    prompt = PromptConfig(system="Be an analyst.", user_template="Headline: {text}")
    shot = {"text": "Profit fell 9 %.", "label": "negative", "reasoning": "A 9 % fall in profit is bad news."}
    guided = TeacherConfig(few_shot=[shot], guided_hint="Gold: {label}.")
    blind = TeacherConfig(mode="blind", few_shot=[shot], guided_hint="Gold: {label}.")

    assert build_teacher_messages("Sales rose.", "positive", guided, prompt) == [
        {"role": "system", "content": "Be an analyst."},
        {"role": "user", "content": "Headline: Profit fell 9 %.\n\nGold: negative."},
        {"role": "assistant", "content": render_completion(shot["reasoning"], "negative")},
        {"role": "user", "content": "Headline: Sales rose.\n\nGold: positive."},
    ]
    assert build_teacher_messages("Sales rose.", "positive", blind, prompt)[1:] == [
        {"role": "user", "content": "Headline: Profit fell 9 %."},
        {"role": "assistant", "content": render_completion(shot["reasoning"], "negative")},
        {"role": "user", "content": "Headline: Sales rose."},
    ]


def test_blind_mode_keeps_only_answers_that_match_gold(tmp_path: Path) -> None:
    # Without the hint the fake server always answers neutral.
    examples = _examples({"The AGM is held in May.": "neutral", "Net sales rose 20 %.": "positive"})
    with FakeOpenAIServer() as server:
        result = generate_reasoning(
            examples, _openai_cfg(server.url, mode="blind"), SENTIMENT, ValidationConfig(), tmp_path / "g.jsonl"
        )

    assert [result.records[ex.id].status for ex in examples] == ["kept", "rejected"]
    assert result.rejections == {"answer_mismatch": 1}
    assert all("correct label" not in e.payload["messages"][-1]["content"] for e in server.log)
    assert server.log[0].payload["messages"][0]["content"] == PromptConfig().system


def test_lexicon_run_resumes_after_a_torn_last_line(tmp_path: Path, phrasebank_allagree: Path) -> None:
    examples = load_source(SourceConfig("financial_phrasebank", str(phrasebank_allagree), max_rows=40), RowErrors())
    path = tmp_path / "generations.jsonl"
    full = generate_reasoning(examples, TeacherConfig(), SENTIMENT, ValidationConfig(), tmp_path / "full.jsonl")
    lines = (tmp_path / "full.jsonl").read_text(encoding="utf-8").splitlines(keepends=True)
    path.write_text("".join(lines[:10]) + lines[10][:25], encoding="utf-8")  # killed mid-write

    resumed = generate_reasoning(examples, TeacherConfig(), SENTIMENT, ValidationConfig(), path)

    assert resumed.counts == full.counts == {"kept": 40}
    assert resumed.records == full.records
    assert [row["id"] for row in _lines(path)] == [json.loads(line)["id"] for line in lines]
    assert {row["teacher"] for row in _lines(path)} == {"lexicon"}


def test_each_record_is_on_disk_before_the_next_reply(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Fakes the teacher, to look at the file between two replies: what a SIGKILL at that moment would leave."""
    path = tmp_path / "generations.jsonl"
    seen_lines: list[int] = []

    class Peeking:
        def generate(self, requests: list[TeacherRequest], temperature: float) -> Iterator[tuple[int, TeacherOutput]]:
            for index, request in enumerate(requests):
                seen_lines.append(path.read_bytes().count(b"\n") if path.exists() else 0)
                yield index, TeacherOutput(default_content({"messages": request.messages}), None)

    monkeypatch.setattr("finsent.data.reasoning.load_teacher", lambda cfg: Peeking())
    examples = _examples({f"Net sales rose {n} % in the quarter.": "positive" for n in range(5)})

    generate_reasoning(examples, TeacherConfig(), SENTIMENT, ValidationConfig(), path)

    assert seen_lines == [0, 1, 2, 3, 4]


def test_corrupt_line_in_the_middle_names_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "generations.jsonl"
    good = {"id": "a", "status": "kept", "reason": None, "completion": "x", "attempts": 1, "prompt_tokens": 0,
            "completion_tokens": 0, "teacher": "lexicon", "temperature": 0.6}  # fmt: skip
    path.write_text(json.dumps(good) + "\n{not json\n" + json.dumps({**good, "id": "b"}) + "\n", encoding="utf-8")
    with pytest.raises(DataError, match=rf"{path}:2: invalid JSON"):
        read_records(path)

    path.write_text(json.dumps({**good, "status": "done"}) + "\n", encoding="utf-8")
    with pytest.raises(DataError, match=rf"{path}:1: status: expected kept\|rejected\|failed, got 'done'"):
        read_records(path)


def test_bad_teacher_config_is_reported_before_any_request(tmp_path: Path) -> None:
    examples = _examples({"Net sales rose 20 %.": "positive"})
    bad_shot = TeacherConfig(few_shot=[{"text": "t", "label": "bullish", "reasoning": "r"}])
    with pytest.raises(ConfigError, match=r"teacher\.few_shot\.0\.label: expected positive\|negative\|neutral"):
        generate_reasoning(examples, bad_shot, SENTIMENT, ValidationConfig(), tmp_path / "g.jsonl")
    with pytest.raises(ConfigError, match=r"teacher\.guided_hint: expected a template whose only field is \{label\}"):
        generate_reasoning(
            examples,
            TeacherConfig(guided_hint="Gold: {gold}"),
            SENTIMENT,
            ValidationConfig(),
            tmp_path / "g.jsonl",
        )
    assert not (tmp_path / "g.jsonl").exists()


_RUN = """
import json, sys
from pathlib import Path
from finsent.config import TeacherConfig, ValidationConfig
from finsent.data.reasoning import generate_reasoning
from finsent.data.readers import Example
from finsent.tasks import TASKS

url, examples_path, out = sys.argv[1:]
examples = [Example(**row) for row in json.loads(Path(examples_path).read_text())]
cfg = TeacherConfig(name="openai", model="fake", base_urls=[url], max_concurrency=2, timeout_s=5.0)
generate_reasoning(examples, cfg, TASKS.get("sentiment"), ValidationConfig(), Path(out))
"""


def _deterministic(payload: dict[str, Any], seen: int) -> Reply:
    # Replies depend only on the text, so an interrupted run and a clean one must keep the same examples.
    if zlib.crc32(text_of(payload).encode()) % 4 == 0:
        return Reply(content="Looks positive to me.", delay_s=0.02)
    return Reply(delay_s=0.02)


def test_sigkill_mid_run_then_resume_matches_an_uninterrupted_run(tmp_path: Path, phrasebank_allagree: Path) -> None:
    examples = load_source(SourceConfig("financial_phrasebank", str(phrasebank_allagree), max_rows=60), RowErrors())
    examples_path = tmp_path / "examples.json"
    examples_path.write_text(json.dumps([{"id": e.id, "text": e.text, "label": e.label, "source": e.source}
                                         for e in examples]))  # fmt: skip
    script = tmp_path / "run.py"
    script.write_text(_RUN)
    killed = tmp_path / "killed.jsonl"
    cfg = TeacherConfig(name="openai", model="fake", max_concurrency=2, timeout_s=5.0)

    with FakeOpenAIServer(_deterministic) as server:
        cfg.base_urls = [server.url]
        clean = generate_reasoning(examples, cfg, SENTIMENT, ValidationConfig(), tmp_path / "clean.jsonl")
        process = subprocess.Popen([sys.executable, str(script), server.url, str(examples_path), str(killed)])
        deadline = time.monotonic() + 60
        while process.poll() is None and time.monotonic() < deadline:
            if killed.exists() and killed.read_bytes().count(b"\n") >= 10:
                break
            time.sleep(0.01)
        assert process.poll() is None, "the run ended before it could be killed"
        process.send_signal(signal.SIGKILL)
        process.wait()
        written = killed.read_bytes().count(b"\n")
        finished = {json.loads(line)["id"] for line in killed.read_bytes().splitlines()[:written]}
        before_resume = len(server.log)
        resumed = generate_reasoning(examples, cfg, SENTIMENT, ValidationConfig(), killed)
        resent = {e.text for e in server.log[before_resume:]}

    assert process.returncode == -signal.SIGKILL
    assert 10 <= written < len(examples)
    assert resent.isdisjoint(ex.text for ex in examples if ex.id in finished), "finished examples were sent again"
    rows = _lines(killed)
    assert len(rows) == len({row["id"] for row in rows}) == len(examples)
    assert {row["id"] for row in rows} == {ex.id for ex in examples}
    kept = {i: r.completion for i, r in resumed.records.items() if r.status == "kept"}
    assert kept == {i: r.completion for i, r in clean.records.items() if r.status == "kept"}
    assert 0 < len(kept) < len(examples)
    assert resumed.counts == clean.counts
