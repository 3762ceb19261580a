"""Source readers on the real data in ../shared/data, small files in their schemas, and bad input of each kind."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

import datasets
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from finsent.completion import LABELS
from finsent.config import SourceConfig
from finsent.data.readers import Example, RowErrors, example_id
from finsent.data.sources import SOURCES, load_source
from finsent.errors import ConfigError, DataError


def read(name: str, path: Path | str | None = None, on_error: str = "raise", **fields: Any) -> list[Example]:
    return load_source(SourceConfig(name=name, path=str(path) if path else None, **fields), RowErrors(on_error))


def write(path: Path, content: bytes | str) -> Path:
    path.write_bytes(content.encode() if isinstance(content, str) else content)
    return path


def labels_of(examples: list[Example]) -> Counter[str]:
    return Counter(example.label for example in examples)


@pytest.fixture
def fake_hub(monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """Replace ``datasets.load_dataset`` (the hub cannot be reached from tests) with a lookup in a dict.

    Tests put a real in-memory ``datasets.Dataset`` under the (id, subset, split) they expect; the readers run
    unchanged on it, and ``calls`` records what they asked for.
    """
    hub: dict[str, Any] = {"calls": []}

    def load_dataset(path: str, name: str | None = None, *, split: str) -> datasets.Dataset:
        hub["calls"].append((path, name, split))
        if (path, name, split) not in hub:
            raise ConnectionError(f"offline: {path}")
        return hub[(path, name, split)]

    monkeypatch.setattr(datasets, "load_dataset", load_dataset)
    return hub


def test_every_reader_is_registered_with_help() -> None:
    names = [
        "financial_phrasebank",
        "fiqa_sa",
        "twitter_financial_news",
        "fingpt_sentiment",
        "sujet_finance_instruct",
        "csv",
        "jsonl",
        "parquet",
        "hub",
    ]
    for name in names:
        assert name in SOURCES
        assert SOURCES.help(name)


# --- real data ----------------------------------------------------------------------------------------------------


def test_phrasebank_allagree_matches_the_readme(phrasebank_allagree: Path) -> None:
    examples = read("financial_phrasebank", phrasebank_allagree)
    assert len(examples) == 2264
    assert labels_of(examples) == {"neutral": 1391, "positive": 570, "negative": 303}
    assert len({example.id for example in examples}) == 2264 - 5  # 5 duplicate sentences
    assert {example.meta["agreement"] for example in examples} == {"all"}
    assert {example.source for example in examples} == {"financial_phrasebank"}
    # latin-1, not UTF-8: the release spells accented names in latin-1 bytes.
    assert any("ä" in example.text or "ö" in example.text for example in examples)


def test_phrasebank_50agree_contains_allagree(shared_data: Path, phrasebank_allagree: Path) -> None:
    path = shared_data / "financial_phrasebank" / "FinancialPhraseBank-v1.0" / "Sentences_50Agree.txt"
    examples = read("financial_phrasebank", path)
    assert len(examples) == 4846
    assert labels_of(examples) == {"neutral": 2879, "positive": 1363, "negative": 604}
    assert len({example.id for example in examples}) == 4846 - 8
    allagree = read("financial_phrasebank", phrasebank_allagree)
    assert {example.id for example in allagree} <= {example.id for example in examples}


def test_twitter_train_matches_the_readme(shared_data: Path) -> None:
    examples = read("twitter_financial_news", shared_data / "twitter_financial_news_sentiment" / "sent_train.csv")
    assert len(examples) == 9543
    assert labels_of(examples) == {"negative": 1442, "positive": 1923, "neutral": 6178}
    assert any("\n" in example.text for example in examples)  # quoted fields span lines
    lines = [example.meta["line"] for example in examples]
    assert lines[0] == 2 and lines == sorted(lines) and lines[-1] > 9543


def test_fiqa_headlines_keep_every_target_score(shared_data: Path) -> None:
    examples = read("fiqa_sa", shared_data / "fiqa_2018_task1" / "task1_headline_ABSA_train.json")
    assert len(examples) == 436
    assert sum(len(example.meta["targets"]) > 1 for example in examples) == 57
    scores = [score for example in examples for score in example.meta["scores"]]
    assert len(scores) == 498
    assert (sum(s > 0 for s in scores), sum(s < 0 for s in scores), sum(s == 0 for s in scores)) == (320, 165, 13)
    assert sum(abs(s) <= 0.1 for s in scores) == 62
    assert set(labels_of(examples)) == set(LABELS)
    for example in examples:
        mean = sum(example.meta["scores"]) / len(example.meta["scores"])
        assert example.meta["score"] == pytest.approx(mean)


@pytest.mark.parametrize(
    ("band", "counts"),
    # The README's "within +-0.1" column (31) is inclusive; one post scores exactly 0.1, which the half-open band
    # (FinGPT's FiQA-SA labelling) calls positive.
    [(0.0, {"positive": 440, "negative": 234, "neutral": 1}), (0.1, {"neutral": 30})],
)
def test_fiqa_posts_band_counts_match_the_readme(shared_data: Path, band: float, counts: dict[str, int]) -> None:
    examples = read("fiqa_sa", shared_data / "fiqa_2018_task1" / "task1_post_ABSA_train.json", neutral_band=band)
    assert len(examples) == 675
    found = labels_of(examples)
    assert {label: found[label] for label in counts} == counts
    assert sum(found.values()) == 675


@pytest.mark.parametrize("name", ["task1_headline_ABSA_test.json", "task1_post_ABSA_test.json"])
def test_fiqa_unlabeled_test_file_is_refused(shared_data: Path, name: str) -> None:
    path = shared_data / "fiqa_2018_task1" / name
    with pytest.raises(DataError, match="unlabeled") as info:
        read("fiqa_sa", path, on_error="skip")
    assert f"{path}:1: sentiment_score" in str(info.value)


def test_ids_are_stable_and_depend_on_source_and_normalized_text(phrasebank_allagree: Path) -> None:
    first = [example.id for example in read("financial_phrasebank", phrasebank_allagree)]
    assert first == [example.id for example in read("financial_phrasebank", phrasebank_allagree)]
    assert example_id("csv", "Sales rose 5%") == example_id("csv", "  sales  ROSE 5%\n")
    assert example_id("csv", "Sales rose 5%") != example_id("jsonl", "Sales rose 5%")
    assert example_id("csv", "Sales rose 5%") != example_id("csv", "Sales rose 6%")


def test_max_rows_is_a_seeded_sample_in_file_order(phrasebank_allagree: Path) -> None:
    full = read("financial_phrasebank", phrasebank_allagree)
    sample = read("financial_phrasebank", phrasebank_allagree, max_rows=100)
    assert len(sample) == 100
    assert sample == read("financial_phrasebank", phrasebank_allagree, max_rows=100)
    lines = [example.meta["line"] for example in sample]
    assert lines == sorted(lines) and lines != list(range(1, 101))
    assert {example.id for example in sample} <= {example.id for example in full}


# --- small files in each schema -----------------------------------------------------------------------------------


def test_phrasebank_splits_on_the_last_at_and_reads_utf8_copies(tmp_path: Path) -> None:
    path = write(
        tmp_path / "Sentences_75Agree.txt", "Mail me@example.com .@neutral\r\nSales in Espoo rose .@positive\r\n"
    )
    examples = read("financial_phrasebank", path)
    assert [(e.text, e.label) for e in examples] == [
        ("Mail me@example.com .", "neutral"),
        ("Sales in Espoo rose .", "positive"),
    ]
    assert examples[0].meta == {"agreement": "75", "line": 1}
    utf8 = write(tmp_path / "utf8.txt", "Stockmann's Sköp rose .@positive\n")
    assert read("financial_phrasebank", utf8)[0].text == "Stockmann's Sköp rose ."


def test_csv_jsonl_parquet_with_columns_and_label_map(tmp_path: Path) -> None:
    label_map = {"up": "positive", "down": "negative", "flat": "neutral"}
    rows = [
        {"headline": "Sales rose", "move": "up"},
        {"headline": "Sales fell", "move": "DOWN"},
        {"headline": "Meeting on Monday", "move": "flat"},
    ]
    csv_path = write(tmp_path / "d.csv", "headline,move\n" + "".join(f"{r['headline']},{r['move']}\n" for r in rows))
    jsonl_path = write(tmp_path / "d.jsonl", "".join(json.dumps(r) + "\n" for r in rows))
    parquet_path = tmp_path / "d.parquet"
    pq.write_table(pa.Table.from_pylist(rows), parquet_path)
    for name, path in [("csv", csv_path), ("jsonl", jsonl_path), ("parquet", parquet_path)]:
        examples = read(name, path, text_column="headline", label_column="move", label_map=label_map)
        assert [e.label for e in examples] == ["positive", "negative", "neutral"]
        assert {e.source for e in examples} == {name}
    assert [
        e.meta["line"]
        for e in read("parquet", parquet_path, text_column="headline", label_column="move", label_map=label_map)
    ] == [0, 1, 2]


def test_generic_files_need_the_labels_without_a_map(tmp_path: Path) -> None:
    path = write(tmp_path / "d.csv", "text,label\nSales rose, Positive \nSales fell,bullish\n")
    with pytest.raises(DataError, match="bullish") as info:
        read("csv", path)
    assert f"{path}:3: label" in str(info.value)
    assert "positive|negative|neutral" in str(info.value)


def test_label_map_values_must_be_labels(tmp_path: Path) -> None:
    path = write(tmp_path / "d.csv", "text,label\nSales rose,up\n")
    with pytest.raises(ConfigError, match="label_map"):
        read("csv", path, label_map={"up": "bullish"})


def test_fiqa_small_file_mean_score_and_lines(tmp_path: Path) -> None:
    records = {
        "1": {
            "sentence": "Acme up, Beta down",
            "info": [
                {"snippets": "['up']", "target": "Acme", "sentiment_score": "0.6", "aspects": "['Stock']"},
                {"snippets": "['down']", "target": "Beta", "sentiment_score": "-0.2", "aspects": "['Stock']"},
            ],
        },
        "2": {
            "sentence": "Gamma holds AGM",
            "info": [
                {"snippets": "['AGM']", "target": "Gamma", "sentiment_score": "0.05", "aspects": "['Corporate']"}
            ],
        },
    }
    text = json.dumps(records, indent=2)
    path = write(tmp_path / "f.json", text)
    first, second = read("fiqa_sa", path)
    assert (first.label, first.meta["targets"], first.meta["scores"]) == ("positive", ["Acme", "Beta"], [0.6, -0.2])
    assert first.meta["score"] == pytest.approx(0.2)
    assert second.label == "neutral"
    assert second.meta["line"] == text.splitlines().index('  "2": {') + 1


def test_sujet_keeps_sentiment_rows_and_counts_the_rest(tmp_path: Path) -> None:
    """No offline copy of Sujet exists: the test writes a small Parquet file in its schema."""
    rows = [
        ("sentiment_analysis", "Sales rose 12%", "Positive", "twitter"),
        ("sentiment_analysis", "", "negative.", "phrasebank"),  # empty user_prompt: the text is inputs
        ("sentiment_analysis", "Shares slid", "Bearish", "twitter"),
        ("qa", "What is EBITDA?", "Earnings before ...", "alpaca"),
        ("qa", "What is a bond?", "A debt security", "alpaca"),
        ("topic_classification", "Fed holds rates", "Macro", "topics"),
        ("ner_sentiment_analysis", "Acme beat, Beta missed", "Acme: positive", "ner"),
    ]
    table = {
        "inputs": [f"Instruction and text: {prompt or 'Profit fell'}" for _, prompt, _, _ in rows],
        "answer": [answer for _, _, answer, _ in rows],
        "system_prompt": ["You are a financial analyst."] * len(rows),
        "user_prompt": [prompt for _, prompt, _, _ in rows],
        "task_type": [task for task, _, _, _ in rows],
        "dataset": [dataset for _, _, _, dataset in rows],
    }
    path = tmp_path / "sujet.parquet"
    pq.write_table(pa.table(table), path)
    errors = RowErrors()
    examples = load_source(SourceConfig(name="sujet_finance_instruct", path=str(path)), errors)
    assert [(e.text, e.label) for e in examples] == [
        ("Sales rose 12%", "positive"),
        ("Instruction and text: Profit fell", "negative"),
        ("Shares slid", "negative"),
    ]
    assert errors.filtered == {
        "sujet_finance_instruct: task_type qa": 2,
        "sujet_finance_instruct: task_type topic_classification": 1,
        "sujet_finance_instruct: task_type ner_sentiment_analysis": 1,
    }
    assert not errors.counts
    assert examples[2].meta == {"dataset": "twitter", "task_type": "sentiment_analysis", "line": 2}


def test_sujet_unknown_answer_names_the_row(tmp_path: Path) -> None:
    rows = [
        {"inputs": "a", "answer": "positive", "user_prompt": "Sales rose", "task_type": "sentiment_analysis"},
        {"inputs": "b", "answer": "Mixed", "user_prompt": "Sales flat", "task_type": "sentiment_analysis"},
    ]
    path = write(tmp_path / "sujet.jsonl", "".join(json.dumps(r) + "\n" for r in rows))
    with pytest.raises(DataError, match="'Mixed'") as info:
        read("sujet_finance_instruct", path)
    assert f"{path}:2: answer" in str(info.value)


def test_fingpt_local_jsonl_folds_graded_outputs(tmp_path: Path) -> None:
    outputs = ["moderately positive", "mildly negative", "strong positive", "neutral", "negative"]
    instruction = "What is the sentiment of this news? Please choose an answer from {negative/neutral/positive}."
    path = write(
        tmp_path / "fingpt.jsonl",
        "".join(
            json.dumps({"input": f"headline {i}", "output": out, "instruction": instruction}) + "\n"
            for i, out in enumerate(outputs)
        ),
    )
    examples = read("fingpt_sentiment", path)
    assert [e.label for e in examples] == ["positive", "negative", "positive", "neutral", "negative"]
    assert examples[0].meta == {"instruction": instruction, "output": "moderately positive", "line": 1}


# --- hub (mocked: the hub cannot be reached from tests) -----------------------------------------------------------


def test_phrasebank_hub_default_and_subset(fake_hub: dict[str, Any]) -> None:
    """Fakes ``datasets.load_dataset`` (no hub here); the ClassLabel ids 0/1/2 are negative/neutral/positive."""
    ds = datasets.Dataset.from_dict(
        {"sentence": ["Loss widened .", "AGM on Monday .", "Sales rose ."], "label": [0, 1, 2]}
    )
    fake_hub[("takala/financial_phrasebank", "sentences_allagree", "train")] = ds
    fake_hub[("takala/financial_phrasebank", "sentences_50agree", "train")] = ds
    examples = read("financial_phrasebank")
    assert [e.label for e in examples] == ["negative", "neutral", "positive"]
    assert examples[0].meta == {"agreement": "all", "line": 0}
    local_ids = [example_id("financial_phrasebank", text) for text in ds["sentence"]]
    assert [e.id for e in examples] == local_ids
    fifty = read("financial_phrasebank", "takala/financial_phrasebank", subset="sentences_50agree")
    assert {e.meta["agreement"] for e in fifty} == {"50"}


def test_generic_hub_with_columns_and_label_map(fake_hub: dict[str, Any]) -> None:
    """Fakes ``datasets.load_dataset`` (no hub here) with an in-memory dataset of integer labels."""
    fake_hub[("acme/fin-tweets", None, "validation")] = datasets.Dataset.from_dict(
        {"tweet": ["$ACME beats", "$BETA misses", "$GAMMA AGM"], "sentiment": [1, 0, 2]}
    )
    examples = read(
        "hub:acme/fin-tweets",
        split="validation",
        text_column="tweet",
        label_column="sentiment",
        label_map={"0": "negative", "1": "positive", "2": "neutral"},
    )
    assert [e.label for e in examples] == ["positive", "negative", "neutral"]
    assert examples[1].source == "hub"
    assert examples[1].meta == {"dataset": "acme/fin-tweets", "line": 1}


def test_hub_missing_column_and_unknown_label(fake_hub: dict[str, Any]) -> None:
    """Fakes ``datasets.load_dataset`` (no hub here)."""
    fake_hub[("acme/news", None, "train")] = datasets.Dataset.from_dict({"title": ["a"], "label": ["positive"]})
    with pytest.raises(DataError, match=r"acme/news\[train\]: text: .*\['title', 'label'\]"):
        read("hub:acme/news")
    fake_hub[("acme/raw", None, "train")] = datasets.Dataset.from_dict({"text": ["a", "b"], "label": [1, 0]})
    with pytest.raises(DataError, match=r"acme/raw\[train\]:0: label: unknown label"):
        read("hub:acme/raw")


def test_hub_failure_names_the_dataset(fake_hub: dict[str, Any]) -> None:
    """Fakes ``datasets.load_dataset`` (no hub here) raising as it does offline."""
    with pytest.raises(DataError, match=r"FinGPT/fingpt-sentiment-train\[train\]: path: .*ConnectionError"):
        read("fingpt_sentiment")
    assert fake_hub["calls"] == [("FinGPT/fingpt-sentiment-train", None, "train")]


def test_fingpt_and_twitter_read_the_hub_without_a_path(fake_hub: dict[str, Any]) -> None:
    """Fakes ``datasets.load_dataset`` (no hub here) with each dataset's columns."""
    fake_hub[("FinGPT/fingpt-sentiment-train", None, "train")] = datasets.Dataset.from_dict(
        {"input": ["Sales rose"], "output": ["mildly positive"], "instruction": ["What is the sentiment?"]}
    )
    fake_hub[("zeroshot/twitter-financial-news-sentiment", None, "train")] = datasets.Dataset.from_dict(
        {"text": ["$ACME beats", "$BETA misses"], "label": [1, 0]}
    )
    assert [e.label for e in read("fingpt_sentiment")] == ["positive"]
    assert [e.label for e in read("twitter_financial_news")] == ["positive", "negative"]


# --- bad input ----------------------------------------------------------------------------------------------------

GOOD_CSV = b"text,label\r\nSales rose 5%,positive\r\n"

BAD_ROWS = [
    # (case, source, file name, content, line, field, reason)
    ("empty_text", "csv", "d.csv", GOOD_CSV + b'"  ",negative\r\n', 3, "text", "empty_text"),
    ("unknown_label", "csv", "d.csv", GOOD_CSV + b"Sales flat,mixed\r\n", 3, "label", "unknown_label"),
    ("undecodable", "csv", "d.csv", GOOD_CSV + b"Caf\xe9 sales fell,negative\r\n", 3, "encoding", "undecodable"),
    ("nul_byte", "csv", "d.csv", GOOD_CSV + b"Sales\x00 fell,negative\r\n", 3, "content", "nul_byte"),
    ("field_count", "csv", "d.csv", GOOD_CSV + b"Sales, fell,negative\r\n", 3, "row", "bad_row"),
    ("unterminated_quote", "csv", "d.csv", GOOD_CSV + b'"Sales fell,negative\r\n', 3, "csv", "malformed_csv"),
    (
        "multiline_record",
        "twitter_financial_news",
        "sent_train.csv",
        b'text,label\r\n"$ACME\nbeats",1\r\n"$BETA\nmisses",7\r\n',
        4,
        "label",
        "unknown_label",
    ),
    (
        "broken_json",
        "jsonl",
        "d.jsonl",
        b'{"text": "Sales rose", "label": "positive"}\n{"text": "Sales\n',
        2,
        "record",
        "bad_json",
    ),
    (
        "not_an_object",
        "jsonl",
        "d.jsonl",
        b'{"text": "Sales rose", "label": "positive"}\n["Sales fell"]\n',
        2,
        "record",
        "bad_json",
    ),
    (
        "missing_key",
        "jsonl",
        "d.jsonl",
        b'{"text": "Sales rose", "label": "positive"}\n\n{"label": "negative"}\n',
        3,
        "text",
        "missing_column",
    ),
    (
        "jsonl_undecodable",
        "jsonl",
        "d.jsonl",
        b'{"text": "Sales rose", "label": "positive"}\n{"text": "\xff"}\n',
        2,
        "encoding",
        "undecodable",
    ),
    (
        "no_separator",
        "financial_phrasebank",
        "Sentences_AllAgree.txt",
        b"Sales rose .@positive\r\nSales fell .\r\n",
        2,
        "label",
        "malformed_line",
    ),
    (
        "phrasebank_label",
        "financial_phrasebank",
        "Sentences_AllAgree.txt",
        b"Sales rose .@positive\r\nSales fell .@mixed\r\n",
        2,
        "label",
        "unknown_label",
    ),
    (
        "phrasebank_empty_text",
        "financial_phrasebank",
        "Sentences_AllAgree.txt",
        b"Sales rose .@positive\r\n @negative\r\n",
        2,
        "sentence",
        "empty_text",
    ),
]


@pytest.mark.parametrize(
    ("case", "source", "name", "content", "line", "field", "reason"), BAD_ROWS, ids=[row[0] for row in BAD_ROWS]
)
def test_bad_row_raises_with_location_or_is_counted(
    tmp_path: Path, case: str, source: str, name: str, content: bytes, line: int, field: str, reason: str
) -> None:
    path = write(tmp_path / name, content)
    with pytest.raises(DataError) as info:
        read(source, path)
    assert f"{path}:{line}: {field}: " in str(info.value)
    errors = RowErrors("skip")
    examples = load_source(SourceConfig(name=source, path=str(path)), errors)
    assert errors.counts == {reason: 1}
    assert len(examples) == 1 and errors.samples == [str(info.value)]


def test_fiqa_bad_score_names_record_line_and_field(tmp_path: Path) -> None:
    records = {
        "1": {"sentence": "Acme up", "info": [{"target": "Acme", "sentiment_score": "0.5"}]},
        "2": {"sentence": "Beta down", "info": [{"target": "Beta", "sentiment_score": "very bad"}]},
    }
    text = json.dumps(records, indent=2)
    path = write(tmp_path / "f.json", text)
    with pytest.raises(DataError, match="'very bad'") as info:
        read("fiqa_sa", path)
    line = text.splitlines().index('  "2": {') + 1
    assert f"{path}:{line}: 2.info.0.sentiment_score: " in str(info.value)
    errors = RowErrors("skip")
    assert len(load_source(SourceConfig(name="fiqa_sa", path=str(path)), errors)) == 1
    assert errors.counts == {"bad_score": 1}


@pytest.mark.parametrize(
    ("source", "name", "field"),
    [
        ("csv", "d.csv", "header"),
        ("jsonl", "d.jsonl", "record"),
        ("parquet", "d.parquet", "content"),
        ("financial_phrasebank", "Sentences_AllAgree.txt", "sentence"),
        ("fiqa_sa", "f.json", "record"),
    ],
)
def test_empty_file_always_raises(tmp_path: Path, source: str, name: str, field: str) -> None:
    path = write(tmp_path / name, b"\xef\xbb\xbf\r\n")  # a BOM and a blank line are still empty
    with pytest.raises(DataError, match="empty file") as info:
        read(source, path, on_error="skip")
    assert f"{path}:1: {field}: " in str(info.value)


@pytest.mark.parametrize(
    "source",
    [
        "csv",
        "jsonl",
        "parquet",
        "fiqa_sa",
        "financial_phrasebank",
        "twitter_financial_news",
        "fingpt_sentiment",
        "sujet_finance_instruct",
    ],
)
def test_missing_file_names_the_path(tmp_path: Path, source: str) -> None:
    path = tmp_path / "nowhere" / "data.csv"
    with pytest.raises(DataError, match="no such file") as info:
        read(source, path, on_error="skip")
    assert f"{path}: path: " in str(info.value)


def test_missing_path_for_a_local_only_source() -> None:
    with pytest.raises(DataError, match="path: source 'csv' reads a local file"):
        read("csv")


def test_missing_column_lists_the_columns_found(tmp_path: Path) -> None:
    path = write(tmp_path / "d.csv", "sentence,label\nSales rose,positive\n")
    with pytest.raises(DataError) as info:
        read("csv", path, on_error="skip")
    assert f"{path}:1: text: no column 'text'" in str(info.value)
    assert "['sentence', 'label']" in str(info.value)
    parquet_path = tmp_path / "d.parquet"
    pq.write_table(pa.table({"sentence": ["Sales rose"], "label": ["positive"]}), parquet_path)
    with pytest.raises(DataError, match=r"text: no column 'text'.*\['sentence', 'label'\]") as info:
        read("parquet", parquet_path)
    assert str(parquet_path) in str(info.value)


def test_not_a_parquet_file(tmp_path: Path) -> None:
    path = write(tmp_path / "d.parquet", "text,label\nSales rose,positive\n")
    with pytest.raises(DataError, match=f"{path}: content: unreadable Parquet"):
        read("parquet", path)


def test_bom_is_not_part_of_the_first_column(tmp_path: Path) -> None:
    plain = read("csv", write(tmp_path / "plain.csv", GOOD_CSV))
    assert read("csv", write(tmp_path / "bom.csv", b"\xef\xbb\xbf" + GOOD_CSV)) == plain
    jsonl = b'\xef\xbb\xbf{"text": "Sales rose 5%", "label": "positive"}\n'
    assert [e.id for e in read("jsonl", write(tmp_path / "bom.jsonl", jsonl))] == [
        example_id("jsonl", "Sales rose 5%")
    ]


def test_undecodable_header_always_raises(tmp_path: Path) -> None:
    path = write(tmp_path / "d.csv", b"t\xe9xt,label\r\nSales rose,positive\r\n")
    with pytest.raises(DataError) as info:
        read("csv", path, on_error="skip")
    assert f"{path}:1: encoding: undecodable bytes: expected valid utf-8 text, got b'\\xe9'" in str(info.value)
