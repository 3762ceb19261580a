"""Exact and near-duplicate removal and decontamination, on literal sentences and the real Financial PhraseBank."""

from __future__ import annotations

import gc
import math
import re
from collections import Counter, defaultdict
from pathlib import Path

import numpy as np
import pytest
from datasketch import MinHash, MinHashLSH

from finsent.config import DedupConfig, SourceConfig
from finsent.data.dedup import TextOverlap, _Sketcher, deduplicate, find_contamination, find_overlap
from finsent.data.readers import Example, RowErrors, example_id, normalize_text
from finsent.data.sources import load_source

LONG = (
    "Finnish forest industry group Stora Enso said on Tuesday that its operating profit for the third quarter of the "
    "year rose to EUR 245 million from EUR 198 million a year earlier , driven by strong demand for packaging board "
    "in Europe and in Asia"
)
DISTINCT = [
    "The board of directors proposes a dividend of EUR 0.45 per share for the financial year 2009 .",
    "Nokia will cut 1,700 jobs in its network equipment unit as demand for mobile infrastructure weakens .",
    "The company employs some 3,200 people in 12 countries and its net sales totalled EUR 520 mn in 2008 .",
    "Shares in Outokumpu fell 6 % after the steelmaker warned of a loss in the fourth quarter .",
]


def _examples(texts: list[str], labels: list[str] | None = None) -> list[Example]:
    labels = labels or ["neutral"] * len(texts)
    return [Example(example_id("test", t), t, label, "test") for t, label in zip(texts, labels, strict=True)]


def _shingles(text: str) -> set[str]:
    """The definition, written independently of the module: word 3-grams of the normalized text, unigrams under 3."""
    normalized = normalize_text(text)
    words = re.findall(r"\w+", normalized) or ([normalized] if normalized else [])  # "!!!" is one word
    return set(words) if len(words) < 3 else {" ".join(words[i : i + 3]) for i in range(len(words) - 2)}


def _jaccard(a: str, b: str) -> float:
    x, y = _shingles(a), _shingles(b)
    return len(x & y) / len(x | y)


def _similar_pairs(left: list[str], right: list[str], threshold: float) -> set[tuple[int, int]]:
    """All (i, j) with exact Jaccard >= threshold, found without MinHash by prefix filtering (Bayardo et al. 2007)."""
    sets = [_shingles(t) for t in left + right]
    frequency = Counter(s for shingles in sets for s in shingles)
    index: dict[str, list[int]] = defaultdict(list)
    ordered = []
    for k, shingles in enumerate(sets):
        tokens = sorted(shingles, key=lambda s: (frequency[s], s))
        ordered.append(tokens)
        # Two sets with Jaccard >= t share a token among their rarest len - ceil(t * len) + 1.
        for token in tokens[: len(tokens) - math.ceil(threshold * len(tokens) - 1e-9) + 1]:
            index[token].append(k)
    pairs = set()
    for members in index.values():
        for i in (m for m in members if m < len(left)):
            for j in (m - len(left) for m in members if m >= len(left)):
                x, y = sets[i], sets[len(left) + j]
                if x and len(x & y) / len(x | y) >= threshold:
                    pairs.add((i, j))
    return pairs


def _one_word_changed(text: str, position: int, word: str) -> str:
    words = text.split()
    words[position] = word
    return " ".join(words)


@pytest.fixture(scope="module")
def phrasebank_50(shared_data: Path) -> list[Example]:
    path = shared_data / "financial_phrasebank" / "FinancialPhraseBank-v1.0" / "Sentences_50Agree.txt"
    return load_source(SourceConfig(name="financial_phrasebank", path=str(path)), RowErrors())


@pytest.fixture(scope="module")
def phrasebank_all(phrasebank_allagree: Path) -> list[Example]:
    return load_source(SourceConfig(name="financial_phrasebank", path=str(phrasebank_allagree)), RowErrors())


@pytest.mark.parametrize("use_near", [False, True])
def test_exact_duplicates_differing_in_case_whitespace_and_unicode_form_keep_the_first(use_near: bool) -> None:
    variants = [
        "Operating profit rose to EUR 13.1 mn .",
        "  OPERATING profit   rose to eur 13.1 MN .\t",
        "Operating profit rose to ＥＵＲ 13.1 mn .",  # full-width letters: NFKC folds them
        "Operating\u00a0profit rose to EUR 13.1 mn .",  # no-break space
    ]
    examples = _examples([*variants, *DISTINCT])

    result = deduplicate(examples, DedupConfig(use_near=use_near))

    assert [e.text for e in result.kept] == [variants[0], *DISTINCT]
    assert (result.removed_exact, result.removed_near, result.conflicting_labels) == (3, 0, 0)


def test_conflicting_labels_drop_every_copy_and_are_counted_apart_from_duplicates() -> None:
    texts = ["Sales were flat .", "sales were  FLAT .", "Sales were flat .", DISTINCT[0], DISTINCT[0], DISTINCT[1]]
    labels = ["neutral", "positive", "neutral", "negative", "negative", "neutral"]

    result = deduplicate(_examples(texts, labels), DedupConfig())

    assert [e.text for e in result.kept] == [DISTINCT[0], DISTINCT[1]]
    assert result.conflicting_labels == 3
    assert result.removed_exact == 1


def test_one_word_changed_in_a_long_sentence_is_a_near_duplicate_at_0_8_and_distinct_sentences_stay() -> None:
    changed = _one_word_changed(LONG, 20, "fell")
    assert len(LONG.split()) >= 40 and 0.8 <= _jaccard(LONG, changed) < 1
    assert all(_jaccard(a, b) < 0.5 for a in [LONG, *DISTINCT] for b in DISTINCT if a != b)
    examples = _examples([DISTINCT[0], LONG, DISTINCT[1], changed, *DISTINCT[2:]])

    result = deduplicate(examples, DedupConfig(threshold=0.8))

    assert [e.text for e in result.kept] == [DISTINCT[0], LONG, *DISTINCT[1:]]
    assert (result.removed_exact, result.removed_near) == (0, 1)
    assert result.pairs == [(examples[1].id, examples[3].id)]
    assert deduplicate(examples, DedupConfig(threshold=0.8, use_near=False)).removed_near == 0
    assert deduplicate(examples, DedupConfig(threshold=0.95)).removed_near == 0


def test_each_removed_text_is_similar_to_a_kept_one_without_chaining() -> None:
    """A ~ B and B ~ C but A !~ C: the greedy pass keeps A, removes B (close to A) and keeps C (not close to A)."""
    b = _one_word_changed(LONG, 10, "first")
    c = _one_word_changed(b, 34, "Africa")
    threshold = 0.8
    assert _jaccard(LONG, b) >= threshold and _jaccard(b, c) >= threshold > _jaccard(LONG, c)

    result = deduplicate(_examples([LONG, b, c]), DedupConfig(threshold=threshold))

    assert [e.text for e in result.kept] == [LONG, c]


def test_texts_under_three_words_compare_by_words() -> None:
    texts = ["Profit up!", "profit up .", "Profit down", "Up: profit", "", "!!!", "?"]

    result = deduplicate(_examples(texts), DedupConfig())

    assert [e.text for e in result.kept] == ["Profit up!", "Profit down", "", "!!!", "?"]
    assert result.removed_near == 2


def test_results_are_deterministic_and_keep_input_order() -> None:
    texts = [
        LONG,
        *DISTINCT,
        _one_word_changed(LONG, 5, "paper"),
        DISTINCT[2].upper(),
        _one_word_changed(LONG, 30, "in"),
    ]
    examples = _examples(texts)

    first = deduplicate(examples, DedupConfig(threshold=0.8))
    second = deduplicate(examples, DedupConfig(threshold=0.8))

    assert first == second
    assert gc.isenabled()  # the GC pause around the index is undone
    positions = [examples.index(e) for e in first.kept]
    assert positions == sorted(positions)


def test_sketches_equal_datasketch_update_batch_on_the_same_shingle_hashes() -> None:
    texts = [normalize_text(t) for t in [LONG, *DISTINCT, "Profit up", "?"]]
    sketcher = _Sketcher(num_perm=64, seed=7)
    hashes, counts = sketcher.shingle_hashes(texts)
    assert counts.tolist() == [len(_shingles(t)) for t in texts]

    ours = sketcher.minhash(hashes, counts)

    for row, chunk in enumerate(np.split(hashes, np.cumsum(counts)[:-1])):
        reference = MinHash(num_perm=64, seed=7, hashfunc=int)
        reference.update_batch(chunk.tolist())
        assert np.array_equal(ours[row], reference.hashvalues)
    sketches = list(sketcher.sketch(texts, desc="test"))
    assert [np.frombuffer(shingles, dtype=np.uint32).tolist() for _, _, shingles in sketches] == [
        chunk.tolist() for chunk in np.split(hashes, np.cumsum(counts)[:-1])
    ]
    lean = [minhash for _, minhash, _ in sketches]
    lsh = MinHashLSH(threshold=0.5, num_perm=64)
    lsh.insert("long", lean[0])
    assert lsh.query(lean[0]) == ["long"] and lean[0].jaccard(lean[1]) < 0.5


def test_phrasebank_50agree_exact_pass_finds_8_duplicated_sentences_2_with_conflicting_labels(
    phrasebank_50: list[Example],
) -> None:
    groups: dict[str, list[str]] = defaultdict(list)
    for example in phrasebank_50:
        groups[normalize_text(example.text)].append(example.label)
    duplicated = [labels for labels in groups.values() if len(labels) > 1]
    conflicting = [labels for labels in duplicated if len(set(labels)) > 1]
    # The data README: 4,846 rows, 8 duplicated sentences (each twice), 2 of them labeled neutral once, positive once.
    assert len(phrasebank_50) == 4846 and len(duplicated) == 8 and len(conflicting) == 2
    assert all(len(labels) == 2 for labels in duplicated)

    result = deduplicate(phrasebank_50, DedupConfig(use_near=False))

    assert result.removed_exact == 8 - 2  # one extra copy of each same-label sentence
    assert result.conflicting_labels == 2 * 2  # both copies of each conflicting sentence
    assert len(result.kept) == 4846 - 6 - 4
    assert len({normalize_text(e.text) for e in result.kept}) == len(result.kept)


def test_phrasebank_50agree_near_pass_matches_an_exhaustive_greedy_pass(phrasebank_50: list[Example]) -> None:
    cfg = DedupConfig()
    exact_only = [e.text for e in deduplicate(phrasebank_50, DedupConfig(use_near=False)).kept]
    similar: dict[int, set[int]] = defaultdict(set)
    for i, j in _similar_pairs(exact_only, exact_only, cfg.threshold):
        similar[j].add(i)
    expected_removed: set[int] = set()
    for j in range(len(exact_only)):
        if any(i < j and i not in expected_removed for i in similar[j]):
            expected_removed.add(j)

    result = deduplicate(phrasebank_50, cfg)

    kept = {e.text for e in result.kept}
    removed = {j for j, text in enumerate(exact_only) if text not in kept}
    assert len(removed) == result.removed_near
    assert len(expected_removed) >= 5  # the file has near duplicates at the default threshold
    # LSH may miss a pair at the threshold (~3% each), never one it reports: every removal has a kept look-alike.
    assert len(removed & expected_removed) >= 0.8 * len(expected_removed)
    assert all(any(exact_only[i] in kept for i in similar[j] if i != j) for j in removed)
    by_id = {e.id: e.text for e in phrasebank_50}
    assert result.pairs and all(_jaccard(by_id[k], by_id[r]) >= cfg.threshold for k, r in result.pairs)


def test_decontaminating_50agree_against_allagree_finds_every_allagree_sentence(
    phrasebank_50: list[Example], phrasebank_all: list[Example]
) -> None:
    reference = [e.text for e in phrasebank_all]
    distinct_reference = {normalize_text(t) for t in reference}
    # AllAgree is a subset of 50Agree, so each of its 2,264 rows has a 50Agree row; 5 AllAgree sentences occur twice
    # (in both files), and ids hash the normalized text, so those rows share ids: 2,264 - 5 = 2,259 ids.
    assert len(reference) == 2264 and len(distinct_reference) == 2264 - 5

    exact = find_contamination(phrasebank_50, reference, DedupConfig(use_near=False))

    assert (exact.exact, exact.near, len(exact.ids)) == (2264, 0, 2259)
    assert exact.ids == {example_id("financial_phrasebank", t) for t in reference}

    cfg = DedupConfig(threshold=0.85)
    near = find_contamination(phrasebank_50, reference, cfg)

    texts = [e.text for e in phrasebank_50]
    brute_force = {i for i, _ in _similar_pairs(texts, reference, cfg.threshold)}
    exact_rows = {i for i, t in enumerate(texts) if normalize_text(t) in distinct_reference}
    assert near.exact == 2264 and near.near == len(brute_force - exact_rows) > 0
    assert near.ids == {phrasebank_50[i].id for i in brute_force | exact_rows}


def test_find_overlap_reports_positions_of_test_texts_found_in_a_training_set() -> None:
    train = [LONG, *DISTINCT[:2]]
    test = [DISTINCT[3], DISTINCT[1].upper(), _one_word_changed(LONG, 20, "fell"), "", DISTINCT[2]]

    overlap = find_overlap(test, train, DedupConfig(threshold=0.8))

    assert (overlap.exact, overlap.near) == ([1], [2])
    assert find_overlap(test, train, DedupConfig(threshold=0.8, use_near=False)).near == []
    assert find_overlap([], train, DedupConfig()) == find_overlap(test, [], DedupConfig()) == TextOverlap([], [])
