"""How sure an answer is: label probabilities, temperature scaling and abstention, shared by eval, predict and serve.

A backend scores every label of the task after ``<answer>`` and returns probabilities that sum to 1. The eval stage
fits one temperature ``T`` on the validation split (``p_T(label) ∝ p(label) ** (1 / T)``, the same as dividing the
label logits by ``T``) and saves it as ``calibration.json`` with the model; predict and serve apply it, and with a
``min_confidence`` they answer ``abstain`` where the model's own label is less likely than that.

>>> round(apply_temperature({"positive": 0.8, "negative": 0.2}, 2.0)["positive"], 4)
0.6667
"""

from __future__ import annotations

import json
import logging
import math
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from scipy.optimize import minimize_scalar

from finsent.config import ModelConfig
from finsent.errors import DataError
from finsent.io import atomic_write_json

logger = logging.getLogger(__name__)

ABSTAIN = "abstain"
CALIBRATION_FILE = "calibration.json"
# Temperatures searched (log scale): wide enough for a model 20x too sure or too unsure of itself.
_LOG_T_BOUNDS = (math.log(0.05), math.log(20.0))
_FLOOR = 1e-12  # a probability of 0 stays finite in the log


@dataclass(frozen=True)
class Calibration:
    """A fitted temperature and where it came from (``temperature=1``: the model's own probabilities)."""

    temperature: float = 1.0
    fitted_on: str = ""  # the split the temperature was fitted on
    num_rows: int = 0
    nll_before: float | None = None  # mean negative log-likelihood of the gold label at T=1
    nll_after: float | None = None  # ... and at the fitted T


UNCALIBRATED = Calibration()


def apply_temperature(probabilities: dict[str, float], temperature: float) -> dict[str, float]:
    """Return ``probabilities`` scaled by ``temperature`` (> 1 softens, < 1 sharpens), summing to 1."""
    if temperature == 1:
        return probabilities
    labels = list(probabilities)
    scaled = temperature_scale(np.array([[probabilities[label] for label in labels]]), temperature)[0]
    return {label: float(p) for label, p in zip(labels, scaled, strict=True)}


def temperature_scale(probabilities: np.ndarray, temperature: float) -> np.ndarray:
    """Return rows of label probabilities scaled by ``temperature``: softmax(log p / T)."""
    logits = np.log(np.maximum(probabilities, _FLOOR)) / temperature
    logits -= logits.max(axis=1, keepdims=True)
    weights = np.exp(logits)
    return weights / weights.sum(axis=1, keepdims=True)


def mean_nll(probabilities: np.ndarray, gold: np.ndarray) -> float:
    """Return the mean negative log-likelihood of the gold label indices ``gold``."""
    return float(-np.mean(np.log(np.maximum(probabilities[np.arange(len(gold)), gold], _FLOOR))))


def fit_temperature(probabilities: np.ndarray, gold: np.ndarray, fitted_on: str) -> Calibration:
    """Return the temperature that minimises the gold labels' negative log-likelihood (Guo et al., 2017).

    Args:
        probabilities: (rows x labels) label probabilities at T=1.
        gold: the gold label's column for each row.
    """
    if len(gold) == 0:
        raise ValueError("fit_temperature needs at least one row")
    result = minimize_scalar(
        lambda log_t: mean_nll(temperature_scale(probabilities, math.exp(log_t)), gold),
        bounds=_LOG_T_BOUNDS,
        method="bounded",
        options={"xatol": 1e-4},
    )
    temperature = math.exp(float(result.x))
    return Calibration(
        temperature=round(temperature, 4),
        fitted_on=fitted_on,
        num_rows=len(gold),
        nll_before=round(mean_nll(probabilities, gold), 4),
        nll_after=round(mean_nll(temperature_scale(probabilities, temperature), gold), 4),
    )


def confidence_of(label: str | None, probabilities: dict[str, float] | None) -> float | None:
    """Return how likely ``label`` is under ``probabilities`` (None: no label or no probabilities)."""
    if label is None or probabilities is None:
        return None
    return probabilities.get(label, 0.0)


def should_abstain(confidence: float | None, min_confidence: float) -> bool:
    """Whether to answer ``abstain``: the confidence is below ``min_confidence``, or unknown while one is set."""
    return min_confidence > 0 and (confidence is None or confidence < min_confidence)


def calibration_file(model: ModelConfig) -> Path | None:
    """Return where the calibration of ``model`` lives beside it: ``calibration.json`` in the adapter or model dir,
    ``<file>.calibration.json`` beside a GGUF; None for a model that is not a local path (a hub id, a server)."""
    if model.calibration:
        return Path(model.calibration)
    if model.backend == "llamacpp":
        return Path(model.path).with_name(Path(model.path).name + "." + CALIBRATION_FILE)
    if model.backend == "transformers":
        directory = Path(model.adapter or model.path)
        return directory / CALIBRATION_FILE if directory.is_dir() else None
    return None


def load_calibration(model: ModelConfig) -> Calibration:
    """Return the calibration saved with ``model`` (``model.calibration`` names it; else it is looked for beside
    the model), or ``UNCALIBRATED`` when there is none. A file named explicitly must exist."""
    path = calibration_file(model)
    if path is None or not (path.is_file() or model.calibration):
        logger.info("%s: no %s beside the model: label probabilities are uncalibrated", model.name, CALIBRATION_FILE)
        return UNCALIBRATED
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
        calibration = Calibration(**record)
    except (OSError, ValueError, TypeError) as err:
        raise DataError(
            f"not a calibration file ({err})", path=path, expected="a JSON object with temperature > 0"
        ) from err
    if not calibration.temperature > 0:
        raise DataError("", path=path, field="temperature", expected="a number > 0", got=calibration.temperature)
    logger.info("%s: temperature %.3g from %s", model.name, calibration.temperature, path)
    return calibration


def save_calibration(calibration: Calibration, path: str | Path) -> Path:
    """Write ``calibration`` to ``path`` as JSON, atomically."""
    return atomic_write_json(path, asdict(calibration))
