from collections import Counter

from finsent.config import BalanceConfig, SplitConfig
from finsent.data.balance import balance_examples, balance_targets, stratified_split, upsample
from finsent.data.readers import Example, example_id


def make(counts: dict[str, int]) -> list[Example]:
    rows = []
    for label, n in counts.items():
        for i in range(n):
            text = f"{label} headline number {i}"
            rows.append(Example(example_id("t", text), text, label, "t"))
    return rows


def test_targets_per_strategy():
    counts = {"neutral": 60, "positive": 30, "negative": 10}
    assert balance_targets(counts, BalanceConfig()) == counts
    assert balance_targets(counts, BalanceConfig(strategy="downsample")) == {k: 10 for k in counts}
    assert balance_targets(counts, BalanceConfig(strategy="targets", targets={"neutral": 20, "negative": 50})) == {
        "neutral": 20,
        "positive": 30,
        "negative": 10,
    }
    # ratios 0.5/0.25/0.25: negative (10 rows at 25%) limits the total to 40
    ratios = BalanceConfig(strategy="ratios", ratios={"neutral": 0.5, "positive": 0.25, "negative": 0.25})
    assert balance_targets(counts, ratios) == {"neutral": 20, "positive": 10, "negative": 10}


def test_balance_is_seeded_and_keeps_order():
    rows = make({"neutral": 60, "positive": 30, "negative": 10})
    cfg = BalanceConfig(strategy="downsample")
    first, second = balance_examples(rows, cfg, seed=1), balance_examples(rows, cfg, seed=1)
    assert first == second
    assert Counter(ex.label for ex in first) == {"neutral": 10, "positive": 10, "negative": 10}
    positions = [rows.index(ex) for ex in first]
    assert positions == sorted(positions)
    assert balance_examples(rows, cfg, seed=2) != first


def test_stratified_split_keeps_shares_and_is_disjoint():
    rows = make({"neutral": 100, "positive": 50, "negative": 20})
    splits = stratified_split(rows, SplitConfig(validation=0.1, test=0.2), seed=42)
    ids = [ex.id for part in splits.values() for ex in part]
    assert len(ids) == len(set(ids)) == len(rows)
    assert Counter(ex.label for ex in splits["test"]) == {"neutral": 20, "positive": 10, "negative": 4}
    assert Counter(ex.label for ex in splits["validation"]) == {"neutral": 10, "positive": 5, "negative": 2}
    # the split depends on the seed and the rows, not on their input order
    assert stratified_split(list(reversed(rows)), SplitConfig(validation=0.1, test=0.2), seed=42) == splits


def test_upsample_repeats_only_rare_rows_to_the_largest_label():
    rows = make({"neutral": 12, "positive": 5, "negative": 3})
    out = upsample(rows, seed=0)
    assert Counter(ex.label for ex in out) == {"neutral": 12, "positive": 12, "negative": 12}
    assert set(out) == set(rows)
