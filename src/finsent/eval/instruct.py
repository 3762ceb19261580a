"""Evaluation of free-form answers (task ``instruct``), scored per task type in the same report format.

Every answer gets exact match, token F1 (SQuAD's normalisation: lower case, no punctuation or articles) and ROUGE-L
(F1 of the longest common subsequence of lower-case word tokens; it equals ``rouge-score``'s ``rougeL`` without
stemming, checked on 2,000 random pairs). Yes/no task types (``yes_no`` in the name) also get yes/no accuracy on the
first yes or no word, and ``sentiment_analysis`` gets accuracy on the sentiment label the answer names. The headline
metric of a task type is the first of those that applies, with a seeded percentile bootstrap interval.

>>> round(token_f1("The net profit rose 5%", "net profit rose 5 %"), 3)
1.0
>>> rouge_l("profit rose sharply", "profit rose")
0.8
"""

from __future__ import annotations

import logging
import random
import re
import string
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from finsent.completion import strip_think
from finsent.config import EvalConfig, EvalSetConfig, ModelConfig, RecipeConfig
from finsent.data.labels import normalize_label
from finsent.data.readers import InstructExample, RowErrors
from finsent.errors import ConfigError
from finsent.eval.metrics import classification_metrics
from finsent.eval.protocols import EvalSplit, apply_protocol
from finsent.eval.report import Block, Heading, Paragraph, Table, format_interval, format_value, write_reports
from finsent.eval.runs import predict_splits, read_test_set
from finsent.io import atomic_write_json, atomic_write_jsonl
from finsent.tasks import Task

logger = logging.getLogger(__name__)

_ARTICLES = re.compile(r"\b(a|an|the)\b")
_WORDS = re.compile(r"[a-z0-9]+")
_YES_NO = re.compile(r"\b(yes|no)\b")
_SENTIMENT_WORD = re.compile(r"\b(positive|negative|neutral|bullish|bearish)\b")
TEXT_METRICS = ("exact_match", "token_f1", "rouge_l")


def normalize_answer(text: str) -> str:
    """Return ``text`` lower-cased without punctuation, articles or extra whitespace (SQuAD's normalisation)."""
    text = "".join(c for c in text.lower() if c not in string.punctuation)
    return " ".join(_ARTICLES.sub(" ", text).split())


def exact_match(prediction: str, reference: str) -> float:
    """1.0 when both normalise to the same text."""
    return float(normalize_answer(prediction) == normalize_answer(reference))


def token_f1(prediction: str, reference: str) -> float:
    """Return the F1 of the normalised tokens the answers share (SQuAD's token F1)."""
    pred, ref = normalize_answer(prediction).split(), normalize_answer(reference).split()
    if not pred or not ref:
        return float(pred == ref)
    common = sum((Counter(pred) & Counter(ref)).values())
    if common == 0:
        return 0.0
    precision, recall = common / len(pred), common / len(ref)
    return 2 * precision * recall / (precision + recall)


def rouge_l(prediction: str, reference: str) -> float:
    """Return ROUGE-L F1: the longest common subsequence of lower-case word tokens over both lengths."""
    pred, ref = _WORDS.findall(prediction.lower()), _WORDS.findall(reference.lower())
    if not pred or not ref:
        return float(pred == ref)
    previous = [0] * (len(ref) + 1)
    for p in pred:
        current = [0]
        for j, r in enumerate(ref):
            current.append(previous[j] + 1 if p == r else max(previous[j + 1], current[j]))
        previous = current
    lcs = previous[-1]
    if lcs == 0:
        return 0.0
    precision, recall = lcs / len(pred), lcs / len(ref)
    return 2 * precision * recall / (precision + recall)


def yes_no(text: str) -> str | None:
    """Return the first ``yes`` or ``no`` word of ``text``, or None."""
    match = _YES_NO.search(text.lower())
    return match.group(1) if match else None


def sentiment_of(text: str) -> str | None:
    """Return the sentiment label ``text`` names (the whole answer, else its first sentiment word), or None."""
    label = normalize_label(text, "sujet_finance_instruct")
    if label is None:
        match = _SENTIMENT_WORD.search(text.lower())
        label = normalize_label(match.group(1), "sujet_finance_instruct") if match else None
    return label


def answer_scores(task_type: str, prediction: str, reference: str) -> dict[str, float]:
    """Return the per-answer scores of a task type: the text metrics, plus its accuracy where one applies."""
    scores = {
        "exact_match": exact_match(prediction, reference),
        "token_f1": token_f1(prediction, reference),
        "rouge_l": rouge_l(prediction, reference),
    }
    if "yes_no" in task_type:
        scores["yes_no_accuracy"] = float(yes_no(prediction) is not None and yes_no(prediction) == yes_no(reference))
    if task_type == "sentiment_analysis":
        gold = sentiment_of(reference)
        scores["sentiment_accuracy"] = float(gold is not None and sentiment_of(prediction) == gold)
    return scores


def headline_metric(task_type: str) -> str:
    """Return the metric a task type is summed up by: its accuracy where one applies, else token F1."""
    if "yes_no" in task_type:
        return "yes_no_accuracy"
    if task_type == "sentiment_analysis":
        return "sentiment_accuracy"
    return "token_f1"


def bootstrap_mean(values: Sequence[float], n_resamples: int, confidence: float, seed: int) -> tuple[float, float]:
    """Return the percentile bootstrap interval of the mean of ``values`` (``np.random.default_rng(seed)``)."""
    data = np.asarray(values, dtype=float)
    rng = np.random.default_rng(seed)
    means = data[rng.integers(0, len(data), size=(n_resamples, len(data)))].mean(axis=1)
    tail = (1 - confidence) / 2
    low, high = np.quantile(means, [tail, 1 - tail])
    return float(low), float(high)


@dataclass(frozen=True)
class AnswerRun:
    """The answers of one model on one test set."""

    model: str
    backend: str
    split: EvalSplit
    references: list[str]  # the test rows' own answers
    answers: list[str]
    latency_ms: list[float]


def evaluate_instructions(
    cfg: RecipeConfig, test_sets: list[EvalSetConfig], errors: RowErrors
) -> tuple[list[dict[str, Any]], dict[str, str]]:
    """Run every model on every instruction test set; write metrics.json, samples.jsonl, report.md/html.

    Returns the metrics rows (one per model, test set and task type, plus ``all``) and the paths written.
    """
    ev = cfg.eval
    out = Path(ev.output_dir)
    splits = []
    for ts in test_sets:
        examples = read_test_set(ts, errors)
        if any(not isinstance(ex, InstructExample) for ex in examples):
            raise ConfigError(
                f"test set {ts.display_name} is not instructions",
                path=cfg.source_path,
                field="eval.test_sets",
                expected="an instruction source (instruct) with task: instruct",
                got=ts.name,
            )
        splits.append(apply_protocol(ts, examples))
    runs = [run for model in ev.models for run in answer_splits(model, splits, cfg.get_task(), out / "predictions")]
    rows = [row for run in runs for row in score_run(run, ev)]
    samples = answer_samples(runs, ev.num_samples, ev.seed)
    paths = {"config": str(out / "config.yaml")}
    paths["samples"] = str(atomic_write_jsonl(out / "samples.jsonl", samples))
    intro = (
        f"{len(ev.models)} models on {len(splits)} instruction test sets, scored per task type. Intervals: "
        f"{ev.confidence:.0%} percentile bootstrap of the headline metric, {ev.bootstrap_resamples} resamples, "
        f"seed {ev.seed}." + (f" Skipped input rows: {dict(errors.counts)}." if errors.counts else "")
    )
    paths.update(write_reports(out, "finsent evaluation", instruct_blocks(rows, samples, intro)))
    paths["metrics"] = str(atomic_write_json(out / "metrics.json", rows))
    return rows, paths


def answer_splits(model: ModelConfig, splits: list[EvalSplit], task: Task, predictions_dir: Path) -> list[AnswerRun]:
    """Load ``model`` once and answer every test set (each row with its own system prompt); answers resume."""

    def systems(split: EvalSplit) -> dict[str, str]:
        return {ex.id: ex.system for ex in split.test if isinstance(ex, InstructExample) and ex.system}

    results = predict_splits(model, splits, task, predictions_dir, systems=systems)
    runs = []
    for split, result in zip(splits, results, strict=True):
        references = [ex.answer if isinstance(ex, InstructExample) else "" for ex in split.test]
        answers = [strip_think(p.raw).strip() for p in result.predictions]
        latency = [p.latency_ms for p in result.predictions]
        runs.append(AnswerRun(str(model.name), model.backend, split, references, answers, latency))
    return runs


def score_run(run: AnswerRun, ev: EvalConfig) -> list[dict[str, Any]]:
    """Return one metrics row per task type of the run's test set, then one for all of it (text metrics).

    Sentiment rows also get the macro-F1 of the labels the answers name (``sentiment_of``), as classification does.
    """
    by_type: dict[str, list[dict[str, float]]] = defaultdict(list)
    sentiment: tuple[list[str], list[str | None]] = ([], [])
    for ex, reference, answer in zip(run.split.test, run.references, run.answers, strict=True):
        by_type[ex.label].append(answer_scores(ex.label, answer, reference))
        gold = sentiment_of(reference) if ex.label == "sentiment_analysis" else None
        if gold is not None:
            sentiment[0].append(gold)
            sentiment[1].append(sentiment_of(answer))
    groups = {t: by_type[t] for t in sorted(by_type)}
    groups["all"] = [s for scores in by_type.values() for s in scores]
    rows = []
    for task_type, scores in groups.items():
        metric = "token_f1" if task_type == "all" else headline_metric(task_type)
        values = [s[metric] for s in scores]
        interval = bootstrap_mean(values, ev.bootstrap_resamples, ev.confidence, ev.seed)
        means = {name: round(float(np.mean([s[name] for s in scores])), 4) for name in scores[0]}
        rows.append(
            {
                "model": run.model,
                "kind": "model",
                "backend": run.backend,
                "test_set": run.split.name,
                "protocol": run.split.protocol,
                "task_type": task_type,
                "n": len(scores),
                "metric": metric,
                "value": means[metric],
                "ci": [round(interval[0], 4), round(interval[1], 4)],
                "ci_level": ev.confidence,
                **{name: means.get(name) for name in (*TEXT_METRICS, "yes_no_accuracy", "sentiment_accuracy")},
                "sentiment_macro_f1": (
                    round(classification_metrics(*sentiment).macro_f1, 4)
                    if task_type == "sentiment_analysis" and sentiment[0]
                    else None
                ),
                "latency_ms_p50": round(float(np.percentile(run.latency_ms, 50)), 1),
                "note": run.split.note,
            }
        )
    return rows


def answer_samples(runs: list[AnswerRun], num_samples: int, seed: int) -> list[dict[str, Any]]:
    """Return up to ``num_samples`` answers per run and task type, drawn with a seeded generator."""
    rng = random.Random(seed)
    samples = []
    for run in runs:
        by_type: dict[str, list[int]] = defaultdict(list)
        for i, ex in enumerate(run.split.test):
            by_type[ex.label].append(i)
        for task_type in sorted(by_type):
            for i in sorted(rng.sample(by_type[task_type], min(num_samples, len(by_type[task_type])))):
                ex, reference = run.split.test[i], run.references[i]
                samples.append(
                    {
                        "model": run.model,
                        "test_set": run.split.name,
                        "task_type": task_type,
                        "id": ex.id,
                        "text": ex.text,
                        "reference": reference,
                        "answer": run.answers[i],
                        "token_f1": round(token_f1(run.answers[i], reference), 4),
                    }
                )
    return samples


def instruct_blocks(rows: list[dict[str, Any]], samples: list[dict[str, Any]], intro: str) -> list[Block]:
    """Return the report's blocks for instructions: results per task type, then sample answers."""
    ci = f"{rows[0]['ci_level']:.0%} CI" if rows else "CI"
    return [
        Paragraph(intro),
        Heading("Results by task type"),
        Paragraph(
            "Headline: yes/no accuracy for yes/no questions, sentiment accuracy for sentiment rows, token F1 "
            "otherwise (and for all rows together). Exact match, token F1 and ROUGE-L for every task type; sentiment "
            "rows also get the macro-F1 of the labels the answers name."
        ),
        Table(
            ["model", "test set", "task type", "n", f"headline [{ci}]", "exact match", "token F1", "ROUGE-L",
             "sentiment macro-F1"],
            [
                [
                    row["model"],
                    row["test_set"],
                    row["task_type"],
                    str(row["n"]),
                    f"{row['metric']} {format_interval(row['value'], row['ci'])}",
                    format_value(row["exact_match"]),
                    format_value(row["token_f1"]),
                    format_value(row["rouge_l"]),
                    format_value(row["sentiment_macro_f1"]),
                ]
                for row in rows
            ],
        ),
        Heading("Answers (samples)"),
        Paragraph("More in samples.jsonl."),
        Table(
            ["model", "task type", "text", "reference", "answer", "token F1"],
            [
                [s["model"], s["task_type"], _clip(s["text"]), _clip(s["reference"]), _clip(s["answer"]),
                 format_value(s["token_f1"])]
                for s in samples
            ],
        ),
    ]  # fmt: skip


def _clip(text: str, limit: int = 160) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"
