"""Temperature scaling, abstention and the calibration file: fitted on probabilities whose miscalibration is known."""

import json
import math

import numpy as np
import pytest

from finsent.calibration import (
    UNCALIBRATED,
    Calibration,
    apply_temperature,
    calibration_file,
    confidence_of,
    fit_temperature,
    load_calibration,
    save_calibration,
    should_abstain,
    temperature_scale,
)
from finsent.config import ModelConfig
from finsent.errors import DataError
from finsent.eval.metrics import calibration_metrics, row_confidences

LABELS = ("positive", "negative", "neutral")


def overconfident(n: int, true_temperature: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Rows whose gold labels are drawn from softmax(z) while the probabilities reported are softmax(z * T): a model
    ``true_temperature`` times too sure of itself, which a fitted temperature of about T must undo."""
    rng = np.random.default_rng(seed)
    logits = rng.normal(0, 1.5, size=(n, 3))
    truth = temperature_scale(np.exp(logits), 1.0)
    gold = np.array([rng.choice(3, p=row) for row in truth])
    return temperature_scale(np.exp(logits), 1 / true_temperature), gold


def ece_of(probabilities: np.ndarray, gold: np.ndarray) -> float:
    rows = [dict(zip(LABELS, row, strict=True)) for row in probabilities]
    predicted = [LABELS[int(i)] for i in probabilities.argmax(axis=1)]
    gold_labels = [LABELS[int(i)] for i in gold]
    return calibration_metrics(row_confidences(gold_labels, predicted, rows, LABELS)).ece


def test_temperature_scaling_lowers_the_held_out_ece_of_an_overconfident_model():
    validation, validation_gold = overconfident(2000, 3.0, seed=0)
    held_out, held_out_gold = overconfident(2000, 3.0, seed=1)
    calibration = fit_temperature(validation, validation_gold, "validation")
    assert calibration.temperature == pytest.approx(3.0, rel=0.15)
    assert calibration.nll_after < calibration.nll_before and calibration.num_rows == 2000
    before = ece_of(held_out, held_out_gold)
    after = ece_of(temperature_scale(held_out, calibration.temperature), held_out_gold)
    assert before > 0.1 and after < before / 3


def test_a_calibrated_model_keeps_a_temperature_near_one():
    probabilities, gold = overconfident(3000, 1.0, seed=2)
    assert fit_temperature(probabilities, gold, "validation").temperature == pytest.approx(1.0, abs=0.1)


def test_apply_temperature_is_a_softmax_of_scaled_log_probabilities_and_keeps_the_order():
    probabilities = {"positive": 0.7, "negative": 0.2, "neutral": 0.1}
    softer = apply_temperature(probabilities, 2.0)
    logits = np.log([0.7, 0.2, 0.1]) / 2.0
    expected = np.exp(logits) / np.exp(logits).sum()
    assert [softer[label] for label in LABELS] == pytest.approx(expected.tolist())
    assert math.isclose(sum(softer.values()), 1.0)
    assert sorted(softer, key=softer.get) == sorted(probabilities, key=probabilities.get)
    assert apply_temperature(probabilities, 1.0) == probabilities
    assert apply_temperature(probabilities, 0.5)["positive"] > 0.7  # below 1 sharpens


def test_abstention_rules():
    assert confidence_of("positive", {"positive": 0.6, "negative": 0.4}) == 0.6
    assert confidence_of(None, {"positive": 1.0}) is None and confidence_of("positive", None) is None
    assert not should_abstain(0.1, 0.0)  # 0: never abstain
    assert should_abstain(0.59, 0.6) and not should_abstain(0.6, 0.6)
    assert should_abstain(None, 0.5)  # no probabilities and a threshold set: not sure enough


def test_calibration_file_sits_beside_the_model(tmp_path):
    adapter = tmp_path / "sft"
    adapter.mkdir()
    assert calibration_file(ModelConfig(path=str(adapter))) == adapter / "calibration.json"
    assert calibration_file(ModelConfig(path="Qwen/Qwen3-4B", adapter=str(adapter))) == adapter / "calibration.json"
    assert calibration_file(ModelConfig(path="Qwen/Qwen3-4B")) is None  # a hub id: nowhere to write beside it
    gguf = tmp_path / "finsent-Q5_K_M.gguf"
    assert calibration_file(ModelConfig(path=str(gguf), backend="llamacpp")) == tmp_path / (
        "finsent-Q5_K_M.gguf.calibration.json"
    )
    assert calibration_file(ModelConfig(path="m", backend="openai")) is None
    named = tmp_path / "mine.json"
    assert calibration_file(ModelConfig(path="m", backend="openai", calibration=str(named))) == named


def test_save_and_load_round_trip_and_errors_name_the_file(tmp_path):
    model = ModelConfig(path=str(tmp_path))
    assert load_calibration(model) == UNCALIBRATED  # nothing saved yet
    saved = Calibration(1.7, "data_validation", 225, 0.9, 0.7)
    save_calibration(saved, tmp_path / "calibration.json")
    assert load_calibration(model) == saved
    (tmp_path / "calibration.json").write_text(json.dumps({"temperature": -1}))
    with pytest.raises(DataError, match=r"calibration\.json: temperature: expected a number > 0, got -1"):
        load_calibration(model)
    (tmp_path / "calibration.json").write_text("{not json")
    with pytest.raises(DataError, match=r"calibration\.json: not a calibration file"):
        load_calibration(model)
    missing = tmp_path / "missing.json"
    with pytest.raises(DataError, match="missing.json"):
        load_calibration(ModelConfig(path="m", backend="openai", calibration=str(missing)))


def test_temperature_scaling_lowers_the_held_out_ece_of_an_overconfident_tiny_model(
    tiny_model_dir, phrasebank_allagree
):
    """The random tiny Qwen3 knows nothing of sentiment (it answers negative to every sentence); with its final norm
    scaled up, its label logits grow fortyfold and it is sure of those guesses. A temperature fitted on 120 PhraseBank
    sentences must bring the held-out confidence down towards how often the guesses are right."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from finsent.serve.backends import TransformersBackend
    from finsent.tasks import TASKS

    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir).eval()
    with torch.no_grad():
        model.model.norm.weight.mul_(40.0)  # every logit x40: the probabilities sharpen as at temperature 1/40
    backend = TransformersBackend(model, AutoTokenizer.from_pretrained(tiny_model_dir), 4, 16)
    task = TASKS.get("sentiment")
    lines = phrasebank_allagree.read_text(encoding="latin-1").splitlines()[::9][:240]
    texts, gold = zip(*(line.rsplit("@", 1) for line in lines), strict=True)
    rendered = [backend.render(task.messages(text)) for text in texts]
    found = backend.label_probabilities(rendered, ["<reasoning>The text.</reasoning><answer>"] * len(texts), LABELS)
    probabilities = np.array([[row[label] for label in LABELS] for row in found])
    gold_index = np.array([LABELS.index(label.strip()) for label in gold])
    validation, held_out = slice(0, 120), slice(120, 240)
    calibration = fit_temperature(probabilities[validation], gold_index[validation], "validation")
    before = ece_of(probabilities[held_out], gold_index[held_out])
    after = ece_of(temperature_scale(probabilities[held_out], calibration.temperature), gold_index[held_out])
    assert calibration.temperature > 5  # it softens
    assert before > 0.5 and after < before / 2, (before, after, calibration)
