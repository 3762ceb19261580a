"""File prediction: every row once, in order, resumed after a crash without duplicates or losses."""

import csv
import json

import pytest

from fake_openai_server import FakeOpenAIServer, Reply, scripted
from finsent.config import ModelConfig
from finsent.errors import DataError
from finsent.serve.backends import load_backend
from finsent.serve.predict import predict_file, predict_texts, read_inputs
from finsent.tasks import TASKS

TEXTS = [f"Company {i} said net sales rose {i}% in the quarter." for i in range(7)]


def write_csv(path, texts, with_ids=False):
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["id", "text"] if with_ids else ["text"])
        for i, text in enumerate(texts):
            writer.writerow([f"row-{i}", text] if with_ids else [text])
    return path


def test_tiny_model_resumes_after_a_cut_without_duplicates_or_losses(tiny_model_dir, tmp_path):
    backend = load_backend(ModelConfig(path=str(tiny_model_dir), max_new_tokens=4, batch_size=3))
    calls = []
    complete = backend.complete
    backend.complete = lambda prompts, sampling: calls.append(len(prompts)) or complete(prompts, sampling)  # count
    source, out = write_csv(tmp_path / "in.csv", TEXTS), tmp_path / "out.jsonl"

    first = predict_file(backend, source, out, TASKS.get("sentiment"), batch_size=3)
    assert (first.num_new, first.num_resumed, sum(calls)) == (7, 0, 7)
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["id"] for r in rows] == [str(i) for i in range(1, 8)]
    assert set(rows[0]) >= {"id", "label", "reasoning", "raw", "status", "latency_ms", "completion_tokens"}

    # A crash in the middle of writing row 5: rows 1-4 stay, row 5 is half a line.
    lines = out.read_text().splitlines(keepends=True)
    out.write_text("".join(lines[:4]) + lines[4][: len(lines[4]) // 2])
    calls.clear()
    second = predict_file(backend, source, out, TASKS.get("sentiment"), batch_size=3)
    assert (second.num_new, second.num_resumed, sum(calls)) == (3, 4, 3)
    again = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["id"] for r in again] == [str(i) for i in range(1, 8)]
    assert again[:4] == rows[:4]
    assert [p.raw for p in second.predictions] == [r["raw"] for r in rows]  # greedy: the same answers again


def test_openai_file_prediction_keeps_ids_and_flags_broken_format(tmp_path):
    broken = TEXTS[2]
    script = {broken: [Reply(content="I think this is positive news.")]}
    with FakeOpenAIServer(scripted(script)) as server:
        backend = load_backend(ModelConfig(path="m", backend="openai", base_url=server.url, batch_size=4))
        source = tmp_path / "in.jsonl"
        source.write_text("".join(json.dumps({"id": f"r{i}", "text": t}) + "\n" for i, t in enumerate(TEXTS)))
        result = predict_file(backend, source, tmp_path / "out.jsonl", TASKS.get("sentiment"), batch_size=4)
        rerun = predict_file(backend, source, tmp_path / "out.jsonl", TASKS.get("sentiment"), batch_size=4)
        assert [server.count(t) for t in TEXTS] == [1] * 7  # the rerun asked for nothing
    assert rerun.num_resumed == 7 and rerun.predictions == result.predictions
    by_id = {p.id: p for p in result.predictions}
    assert by_id["r2"].label == "positive" and by_id["r2"].status == "fallback"  # right label, not format-compliant
    assert by_id["r0"].status == "ok" and by_id["r0"].label == "neutral"


def test_single_text_prediction(tiny_model_dir):
    backend = load_backend(ModelConfig(path=str(tiny_model_dir), max_new_tokens=4))
    (prediction,) = predict_texts(backend, ["Operating profit rose."], TASKS.get("sentiment"))
    assert prediction.text == "Operating profit rose." and prediction.completion_tokens <= 4
    assert prediction.status in ("ok", "fallback", "missing")


def test_bad_input_files_name_file_line_and_column(tmp_path):
    with pytest.raises(DataError, match=r"in.csv:3: text: expected non-empty text"):
        read_inputs(write_csv(tmp_path / "in.csv", ["fine", " "]))
    with pytest.raises(DataError, match=r"in.csv:3: id: duplicate"):
        path = tmp_path / "in.csv"
        path.write_text("id,text\na,one\na,two\n")
        read_inputs(path)
    path = tmp_path / "in.jsonl"
    path.write_text('{"text": "ok"}\n{"text": \n')
    with pytest.raises(DataError, match=r"in.jsonl:2: invalid JSON"):
        read_inputs(path)
    assert read_inputs(write_csv(tmp_path / "ids.csv", ["a", "b"], with_ids=True)) == [("row-0", "a"), ("row-1", "b")]
