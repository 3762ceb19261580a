"""Calibration end to end on a tiny Qwen3 that writes the answer format (warmed up on real PhraseBank rows): eval fits
a temperature on the validation split and saves it beside the model, predict and serve apply it and abstain below a
threshold, and the baselines are scored the same way."""

import json
from pathlib import Path

import numpy as np
import pytest

from app_server import serving
from finsent.calibration import ABSTAIN, apply_temperature, load_calibration
from finsent.cli import main
from finsent.completion import LABELS
from finsent.config import ModelConfig, load_config
from finsent.eval import evaluate_model
from finsent.serve.backends import load_backend
from finsent.serve.predict import Confidence, confidence_for, predict_file
from finsent.tasks import TASKS
from warm_model import warm_tiny_qwen3

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def warm_model(phrasebank_data_dir, tmp_path_factory) -> Path:
    return warm_tiny_qwen3(phrasebank_data_dir / "train.jsonl", tmp_path_factory.mktemp("warm-qwen3"))


@pytest.fixture(scope="module")
def report(warm_model, phrasebank_data_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("calibrated-eval")
    cfg = load_config(
        None,
        [
            f"output_dir={out}",
            f"data.output_dir={phrasebank_data_dir}",
            f"eval.models=[{{name: warm, path: '{warm_model}', max_new_tokens: 64, batch_size: 16}}]",
            "eval.baselines=[lexicon, tfidf]",
            f"eval.train={{name: jsonl, path: '{phrasebank_data_dir / 'train.jsonl'}'}}",
            "eval.bootstrap_resamples=200",
        ],
    )
    return evaluate_model(cfg)


def test_eval_reports_calibration_for_the_model_and_the_baselines(report, warm_model, phrasebank_data_dir):
    rows = {row["model"]: row for row in json.loads(Path(report.paths["metrics"]).read_text())}
    assert set(rows) == {"warm", "lexicon", "tfidf"}
    validation_rows = len((phrasebank_data_dir / "validation.jsonl").read_text().splitlines())
    for name, row in rows.items():
        calibration = row["calibration"]
        assert calibration is not None, name
        assert calibration["fitted_on"]["fitted_on"] == "data_validation"
        assert calibration["fitted_on"]["num_rows"] <= validation_rows
        assert calibration["fitted_on"]["nll_after"] <= calibration["fitted_on"]["nll_before"]
        for key in ("raw", "scaled"):
            scores = calibration[key]
            # ECE is biased upward on few rows, and so is its bootstrap: the interval need not hold the estimate.
            assert 0 <= scores["ece_ci"][0] <= scores["ece_ci"][1] <= 1 and 0 <= scores["ece"] <= 1
            assert scores["brier_ci"][0] <= scores["brier"] <= scores["brier_ci"][1]
            assert sum(b["count"] for b in scores["reliability"]) == row["n"]
            assert [share for share, _ in scores["coverage"]][-1] == 1.0
            assert scores["coverage"][-1][1] == pytest.approx(row["accuracy"], abs=1e-4)  # all rows: plain accuracy
            per_label = scores["per_label"]
            assert sum(v["mean_probability"] for v in per_label.values()) == pytest.approx(1, abs=1e-3)
            assert [v["gold_share"] * row["n"] for v in per_label.values()] == pytest.approx(
                [row["per_label"][label]["support"] for label in LABELS]
            )
        assert (Path(report.output_dir) / row["reliability_png"]).read_bytes()[:4] == b"\x89PNG"
    assert rows["warm"]["format_compliance"] > 0.5  # the warm model writes <answer>, so its labels can be scored
    html = Path(report.paths["report_html"]).read_text()
    assert "Calibration" in html and "scaled ECE" in html


def test_the_temperature_is_saved_beside_the_model_and_read_back(report, warm_model):
    rows = {row["model"]: row for row in report.rows}
    saved = json.loads((warm_model / "calibration.json").read_text())
    assert saved["temperature"] == rows["warm"]["calibration"]["temperature"] > 0
    assert json.loads(Path(report.paths["calibration_warm"]).read_text()) == saved
    assert load_calibration(ModelConfig(path=str(warm_model))).temperature == saved["temperature"]
    # The eval's own predictions hold the model's raw probabilities, one per label, summing to 1.
    predictions = [
        json.loads(line)
        for path in (Path(report.output_dir) / "predictions").glob("warm__data_test__*.jsonl")
        for line in path.read_text().splitlines()
    ]
    scored = [p for p in predictions if p["probabilities"]]
    assert len(scored) >= len(predictions) / 2
    for p in scored:
        assert list(p["probabilities"]) == list(LABELS) and sum(p["probabilities"].values()) == pytest.approx(1)
        assert p["confidence"] == p["probabilities"][p["label"]] if p["label"] else p["confidence"] is None


def test_predict_applies_the_saved_temperature_and_abstains_as_set(report, warm_model, phrasebank_data_dir, tmp_path):
    texts = [json.loads(line)["text"] for line in (phrasebank_data_dir / "test.jsonl").read_text().splitlines()]
    source = tmp_path / "in.jsonl"
    source.write_text("".join(json.dumps({"text": t}) + "\n" for t in texts))
    task = TASKS.get("sentiment")
    model = ModelConfig(path=str(warm_model), max_new_tokens=64, batch_size=16)
    backend = load_backend(model)
    calibrated = confidence_for(model)
    temperature = calibrated.calibration.temperature
    raw = predict_file(backend, source, tmp_path / "raw.jsonl", task, batch_size=16).predictions
    scaled = predict_file(backend, source, tmp_path / "scaled.jsonl", task, batch_size=16, confidence=calibrated)
    for before, after in zip(raw, scaled.predictions, strict=True):
        if before.probabilities:
            assert after.probabilities == pytest.approx(apply_temperature(before.probabilities, temperature))
    confidences = np.array([p.confidence if p.confidence is not None else -1.0 for p in scaled.predictions])
    for threshold in (float(np.median(confidences[confidences >= 0])), 0.0, 1.01):
        confidence = Confidence(calibration=calibrated.calibration, min_confidence=threshold)
        out = tmp_path / f"abstain-{threshold}.jsonl"
        rows = predict_file(backend, source, out, task, batch_size=16, confidence=confidence).predictions
        abstained = [p.label == ABSTAIN for p in rows]
        # Exactly the rows less sure than the threshold abstain (no label or no probabilities: less sure than any).
        assert abstained == [threshold > 0 and c < threshold for c in confidences]
        assert all(p.model_label == q.label for p, q in zip(rows, scaled.predictions, strict=True))
        coverage = 1 - np.mean(abstained)
        assert coverage == pytest.approx(np.mean(confidences >= threshold) if threshold > 0 else 1.0)
    assert 0 < 1 - np.mean([c < float(np.median(confidences[confidences >= 0])) for c in confidences]) < 1


def test_the_cli_prints_probabilities_and_counts_abstentions(report, warm_model, tmp_path, capsys):
    assert main(["predict", "--model", str(warm_model), "--max-new-tokens", "64", "Operating profit rose."]) == 0
    printed = capsys.readouterr().out
    assert "probabilities:" in printed and "temperature" in printed
    source = tmp_path / "in.csv"
    source.write_text("text\nOperating profit rose.\nShares fell sharply.\nThe meeting is on Monday.\n")
    argv = ["predict", "--model", str(warm_model), "--input", str(source), "--output", str(tmp_path / "o.jsonl")]
    assert main([*argv, "--max-new-tokens", "64", "--min-confidence", "1.0"]) == 0
    assert "abstained 3 (below 1)" in capsys.readouterr().out
    assert main([*argv, "--min-confidence", "2"]) == 2
    assert "--min-confidence: expected a probability in [0, 1], got 2.0" in capsys.readouterr().err


def test_serve_returns_calibrated_probabilities_and_abstains(report, warm_model):
    model = ModelConfig(path=str(warm_model), max_new_tokens=64, batch_size=8)
    calibration = load_calibration(model)
    texts = ["Operating profit rose to EUR 13.1 mn.", "Shares fell after the warning.", "The meeting is on Monday."]
    with serving(load_backend(model), calibration=calibration) as client:
        plain = client.post("/v1/sentiment", json={"texts": texts}).json()["results"]
        assert client.get("/health").json()["temperature"] == calibration.temperature
    scored = [r for r in plain if r["probabilities"]]
    assert scored and all(sum(r["probabilities"].values()) == pytest.approx(1) for r in scored)
    threshold = sorted(r["confidence"] for r in scored)[len(scored) // 2]
    with serving(load_backend(model), calibration=calibration, min_confidence=threshold) as client:
        gated = client.post("/v1/sentiment", json={"texts": texts}).json()["results"]
    for before, after in zip(plain, gated, strict=True):
        is_sure = before["confidence"] is not None and before["confidence"] >= threshold
        assert after["label"] == (before["label"] if is_sure else ABSTAIN)
        assert after["model_label"] == before["label"] and after["probabilities"] == before["probabilities"]
