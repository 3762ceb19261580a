"""evaluate_model end to end on a slice of real PhraseBank: baselines and the tiny model side by side."""

import json
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

from finsent.config import SourceConfig, load_config
from finsent.data.readers import RowErrors, normalize_text
from finsent.data.sources import load_source
from finsent.eval import evaluate_model
from finsent.eval.protocols import split_indices

CHROMIUM = shutil.which("chromium") or ("/usr/bin/chromium" if os.path.exists("/usr/bin/chromium") else None)


@pytest.fixture(scope="module")
def report(phrasebank_allagree, tiny_model_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("eval")
    source = f"{{name: financial_phrasebank, path: '{phrasebank_allagree}', max_rows: 240}}"
    cfg = load_config(
        None,
        [
            f"output_dir={out}",
            f"eval.models=[{{name: tiny, path: '{tiny_model_dir}', max_new_tokens: 8, batch_size: 16}}]",
            "eval.baselines=[majority, lexicon, tfidf]",
            f"eval.train={source}",
            f"eval.test_sets=[{source[:-1]}, protocol: holdout, test_size: 0.25, display_name: fpb_slice}}]",
            "eval.bootstrap_resamples=200",
            "eval.num_samples=3",
        ],
    )
    return evaluate_model(cfg)


def test_metrics_rows_are_complete_and_consistent(report, phrasebank_allagree):
    rows = json.loads(Path(report.paths["metrics"]).read_text())
    examples = load_source(
        SourceConfig(name="financial_phrasebank", path=str(phrasebank_allagree), max_rows=240), RowErrors()
    )
    train_idx, test_idx = split_indices(len(examples), 0.25, 42)
    train_texts = {normalize_text(examples[i].text) for i in train_idx}
    exact_overlap = sum(normalize_text(examples[i].text) in train_texts for i in test_idx)
    assert rows == report.rows
    assert [(r["model"], r["test_set"]) for r in rows] == [
        ("majority", "fpb_slice"),
        ("lexicon", "fpb_slice"),
        ("tfidf", "fpb_slice"),
        ("tiny", "fpb_slice"),
    ]
    for row in rows:
        assert row["n"] == 60
        counts = row["confusion"]["counts"]
        assert sum(map(sum, counts)) == 60
        assert row["accuracy"] == pytest.approx(sum(counts[i][i] for i in range(3)) / 60, abs=1e-4)
        assert row["accuracy_ci"][0] <= row["accuracy"] <= row["accuracy_ci"][1]
        assert row["macro_f1_ci"][0] <= row["macro_f1"] <= row["macro_f1_ci"][1]
        assert set(row["per_label"]) == {"positive", "negative", "neutral"}
        assert row["contamination"]["reference_texts"] == 180  # baselines train on the rows the holdout left out
        assert row["contamination"]["exact"] == exact_overlap
        assert "max_rows" in row["note"] and row["anchors"] == []
        assert (Path(report.output_dir) / row["confusion_png"]).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    tiny = rows[-1]
    status = tiny["parse_status"]
    assert sum(status.values()) == 60 and tiny["parse_failures"] == 60 - status["ok"]
    assert tiny["format_compliance"] == pytest.approx(status["ok"] / 60, abs=1e-4)
    assert tiny["latency_ms_p50"] <= tiny["latency_ms_p95"] and tiny["tokens_per_s"] > 0
    assert tiny["mean_reasoning_words"] is not None and tiny["backend"] == "transformers"
    assert rows[0]["format_compliance"] is None and rows[0]["kind"] == "baseline"


def test_samples_hold_right_and_wrong_answers_with_reasoning(report):
    samples = [json.loads(line) for line in Path(report.paths["samples"]).read_text().splitlines()]
    tfidf = [s for s in samples if s["model"] == "tfidf"]
    assert {s["is_correct"] for s in tfidf} == {True, False}
    assert all(s["is_correct"] == (s["gold"] == s["predicted"]) for s in samples)
    assert all(s["reasoning"] for s in tfidf)
    assert len([s for s in samples if s["model"] == "majority" and s["is_correct"]]) == 3


def test_markdown_and_html_reports_show_every_row_and_picture(report):
    markdown = Path(report.paths["report_md"]).read_text()
    html = Path(report.paths["report_html"]).read_text()
    for row in report.rows:
        assert f"| {row['model']} | fpb_slice | 60 | {row['accuracy']:.3f} [" in markdown
        assert f"]({row['confusion_png']})" in markdown
    scored = [row for row in report.rows if row["calibration"]]
    assert scored and all(f"]({row['reliability_png']})" in markdown for row in scored)
    # A confusion matrix per row, a reliability diagram per row with probabilities, one coverage plot per test set.
    assert html.count('src="data:image/png;base64,') == len(report.rows) + len(scored) + 1
    assert 'src="confusion_' not in html and "<link" not in html  # self-contained
    assert "Contamination" in markdown and "Per-label scores" in html


@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (apt-get install chromium)")
def test_report_html_renders_with_its_images_in_headless_chromium(report, tmp_path):
    """Count the images the browser decoded: a broken data URI has naturalWidth 0."""
    page = tmp_path / "report.html"
    probe = (
        "<script>addEventListener('load', () => document.body.dataset.decoded = "
        "[...document.images].filter(i => i.complete && i.naturalWidth > 0).length)</script>"
    )
    page.write_text(Path(report.paths["report_html"]).read_text().replace("</body>", probe + "</body>"))
    with tempfile.TemporaryDirectory() as profile:
        dom = subprocess.run(
            [
                CHROMIUM,
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                f"--user-data-dir={profile}",
                "--dump-dom",
                page.as_uri(),
            ],
            capture_output=True,
            text=True,
            timeout=120,
            check=True,
        ).stdout
    pictures = len(report.rows) + sum(1 for row in report.rows if row["calibration"]) + 1  # + reliability, coverage
    assert f'data-decoded="{pictures}"' in dom
    assert "finsent evaluation" in dom
