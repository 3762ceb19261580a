"""Property-based tests: the completion parser, the label mapping and the source readers take any input without a
crash, and fail only with the documented errors."""

from __future__ import annotations

import string
import tempfile
from pathlib import Path

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from finsent.completion import LABELS, parse_completion, render_completion
from finsent.config import SourceConfig
from finsent.data.labels import SOURCE_LABELS, normalize_label
from finsent.data.readers import RowErrors
from finsent.data.sources import load_source
from finsent.errors import DataError

# Text that mixes the format's own tags and label words into arbitrary characters, so the parser's branches are hit.
PIECES = st.sampled_from(
    ["<reasoning>", "</reasoning>", "<answer>", "</answer>", "<think>", "</think>", *LABELS, "Positive", " ", "\n"]
)
COMPLETIONS = st.lists(st.one_of(PIECES, st.text(max_size=12)), max_size=12).map("".join)
FILE_READERS = ("financial_phrasebank", "fiqa_sa", "twitter_financial_news", "csv", "jsonl", "fingpt_sentiment")
SUFFIX = {"financial_phrasebank": ".txt", "fiqa_sa": ".json", "jsonl": ".jsonl", "fingpt_sentiment": ".jsonl"}
# Bytes that look like each format, broken at random: quotes, delimiters, BOMs, NULs, latin-1, half records.
FILE_PIECES = st.sampled_from(
    [
        b'"',
        b",",
        b";",
        b"@",
        b"\n",
        b"\r\n",
        b"\xef\xbb\xbf",
        b"\x00",
        b"\xe4",
        b"{",
        b"}",
        b'"sentence": "x", ',
        b"text,label\n",
        b"positive",
        b"neutral",
        b"0",
        b"2",
        b'{"text": "Profit rose", "label": "positive"}\n',
        b"Sales fell@negative\r\n",
        b'"a, b",1\n',
    ]
)
FILE_BYTES = st.lists(st.one_of(FILE_PIECES, st.binary(max_size=8)), max_size=20).map(b"".join)
# A valid start for each format half of the time, so the readers get past the header into the rows.
VALID_START = {
    "financial_phrasebank": b"Sales rose 5 %@positive\r\n",
    "fiqa_sa": b'{"1": {"sentence": "Sales up", "info": [{"snippets": "x", "target": "A", "sentiment_score": "0.4"}]}',
    "twitter_financial_news": b"text,label\n$AAPL up,1\n",
    "csv": b"text,label\nProfit rose,positive\n",
    "jsonl": b'{"text": "Profit rose", "label": "positive"}\n',
    "fingpt_sentiment": b'{"input": "Profit rose", "output": "mildly positive", "instruction": "x"}\n',
}


@given(COMPLETIONS)
@example("<reasoning>r</reasoning><answer>positive</answer> trailing")
@example("<answer>neutral</answer>")
def test_the_parser_never_crashes_and_ok_means_the_strict_format(text: str) -> None:
    parsed = parse_completion(text)
    assert parsed.status in ("ok", "fallback", "missing")
    assert (parsed.label is None) == (parsed.status == "missing")
    assert parsed.label is None or parsed.label in LABELS
    if parsed.is_format_ok:
        assert parsed.issue is None
        # A compliant completion is the rendering of what it says, up to whitespace and a <think> block.
        assert parse_completion(render_completion(parsed.reasoning, parsed.label)).label == parsed.label
    else:
        assert parsed.issue is not None or parsed.status == "missing"


@given(st.text().filter(lambda s: "<" not in s and ">" not in s), st.sampled_from(LABELS))
def test_rendered_completions_parse_back_exactly(reasoning: str, label: str) -> None:
    parsed = parse_completion(render_completion(reasoning, label))
    assert (parsed.status, parsed.label, parsed.reasoning) == ("ok", label, reasoning.strip())


RAW_LABELS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-5, 5),
    st.floats(allow_nan=True),
    st.text(max_size=20),
    st.sampled_from([k for table in SOURCE_LABELS.values() for k in table])
    .map(lambda key: st.sampled_from([key, key.upper(), f" {key} ", f"{key}.", f"mildly {key}"]))
    .flatmap(lambda strategy: strategy),
    st.lists(st.text(max_size=3), max_size=2),
)


@given(RAW_LABELS, st.sampled_from([*SOURCE_LABELS, "csv", "jsonl"]))
def test_label_mapping_returns_a_label_or_none(raw: object, source: str) -> None:
    label = normalize_label(raw, source)
    assert label is None or label in LABELS
    if isinstance(raw, str) and raw in SOURCE_LABELS.get(source, {}):
        assert label == SOURCE_LABELS[source][raw]


@given(RAW_LABELS, st.dictionaries(st.text(string.ascii_letters, min_size=1, max_size=4), st.sampled_from(LABELS)))
def test_a_label_map_is_the_only_mapping_used(raw: object, label_map: dict[str, str]) -> None:
    label = normalize_label(raw, "csv", label_map)
    assert label is None or label in label_map.values()


@settings(max_examples=150, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(FILE_READERS), st.booleans(), FILE_BYTES, st.sampled_from(["raise", "skip"]))
def test_source_readers_read_any_bytes_or_raise_a_located_data_error(
    reader: str, valid_start: bool, data: bytes, on_error: str
) -> None:
    data = VALID_START[reader] * valid_start + data
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / f"input{SUFFIX.get(reader, '.csv')}"
        path.write_bytes(data)
        cfg = SourceConfig(name=reader, path=str(path))
        errors = RowErrors(on_error)
        try:
            examples = load_source(cfg, errors)
        except DataError as err:
            assert err.path == str(path) and str(err).startswith(str(path))
            return
    for found in examples:
        assert found.label in LABELS and found.text.strip() and found.source == reader
    assert sum(errors.counts.values()) == 0 or on_error == "skip"
