"""Benchmark near-duplicate removal: finsent's numpy-batched MinHash against datasketch's plain per-text loop.

Sizes: seeded synthetic financial sentences (177k by default, the size of Sujet-Finance-Instruct) with a known share
of injected near duplicates, and the real Financial PhraseBank 50Agree file. Both sides use datasketch's MinHashLSH
and keep the first text of each near-duplicate group. Run: python benchmarks/bench_dedup.py [--n 177000]
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import platform
import random
import re
import resource
import time
from collections.abc import Callable
from pathlib import Path

from datasketch import MinHash, MinHashLSH

from finsent.config import DedupConfig
from finsent.data.dedup import deduplicate
from finsent.data.readers import Example, example_id, normalize_text

SHARED_DATA = Path(os.environ.get("FINSENT_SHARED_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))
PHRASEBANK_50 = SHARED_DATA / "financial_phrasebank" / "FinancialPhraseBank-v1.0" / "Sentences_50Agree.txt"

_SYLLABLES = "nor vik tal sam pro tek lin kor mar ben sol fin gra hel aur".split()
_SUFFIXES = "Oyj AB plc Group Holdings Corp Bank Energy Systems Logistics".split()
_METRICS = (
    "net sales|operating profit|revenue|earnings per share|order intake|net income|EBITDA|comparable operating profit|"
    "gross margin|cash flow from operations|pretax profit"
).split("|")
_PERIODS = (
    "the first quarter|the second quarter|the third quarter|the fourth quarter|the half year|January-March|"
    "April-June|July-September|the financial year|the nine-month period"
).split("|")
_MOVES = "rose increased climbed grew jumped improved fell decreased declined dropped slid weakened".split()
_CITIES = "Helsinki Stockholm Oslo Tampere Espoo London Frankfurt Tallinn Riga Turku".split()
_PRODUCTS = (
    "paper machines|mobile networks|elevators|marine engines|forest products|software|steel pipes|packaging board|"
    "wind turbines|retail banking services"
).split("|")
_REASONS = (
    "weaker demand in Europe|higher raw material costs|strong demand in Asia|a one-off gain|restructuring costs|"
    "favourable currency rates|lower delivery volumes|price increases"
).split("|")
_TEMPLATES = [
    "{co} said its {metric} {move} to EUR {a} mn in {period} from EUR {b} mn a year earlier.",
    "{metric} {move} by {p} % to EUR {a} million, the company said.",
    "In {period} , {co} 's {metric} {move} to EUR {a} mn , compared with EUR {b} mn in the corresponding period "
    "of {year} , mainly due to {reason} .",
    "{co} has signed an agreement with {co2} to supply {product} worth EUR {a} million , with deliveries starting in "
    "{period} of {year} .",
    "The company , headquartered in {city} , employs some {n} people and had net sales of EUR {a} mn in {year} .",
    "{co} shares {move} {p} % on the {city} exchange after the company said {metric} {move2} in {period} .",
    "According to {co} , {metric} for {period} {move} {p} percent as a result of {reason} and the order backlog "
    "stood at EUR {a} mn at the end of the period .",
    "{co} will build a new plant for {product} in {city} , investing EUR {a} million over {k} years , and expects "
    "to create {n} new jobs .",
    "{co} to cut {n} jobs in {city}",
    "{co} wins EUR {a} mn order for {product}",
    "{co} {metric} {move} {p} % in {period}",
    "Analysts had expected {metric} of EUR {b} mn for {co} in {period} , but the company reported EUR {a} mn , citing "
    "{reason} , and it now sees full-year {metric2} between EUR {c} mn and EUR {d} mn .",
    "{co} appoints {first} {last} as chief financial officer as of {day} {month} {year} .",
    "The board of {co} proposes a dividend of EUR {cents} per share for {year} , up from EUR {cents2} .",
]
_FIRST = "Mikko Anna Jukka Sari Lars Eva Pekka Maria Johan Tiina Olli Kati".split()
_LAST = "Virtanen Korhonen Nieminen Lindqvist Berg Makinen Hamalainen Laine Heikkinen".split()
_MONTHS = "January February March April May June August September October November".split()
_TAGS = ["- Reuters", "( Reuters )", "| Bloomberg", "- company release", "( updated )", "- Kauppalehti"]
_PREFIXES = ["UPDATE 1-", "BRIEF-", "Press release :", "Correction :"]


def _companies(rng: random.Random, n: int) -> list[str]:
    names = set()
    while len(names) < n:
        stem = "".join(rng.choice(_SYLLABLES) for _ in range(rng.randint(2, 3))).capitalize()
        names.add(f"{stem} {rng.choice(_SUFFIXES)}")
    return sorted(names)


def _sentence(rng: random.Random, companies: list[str]) -> str:
    text = rng.choice(_TEMPLATES).format(
        co=rng.choice(companies),
        co2=rng.choice(companies),
        metric=rng.choice(_METRICS),
        metric2=rng.choice(_METRICS),
        move=rng.choice(_MOVES),
        move2=rng.choice(_MOVES),
        period=rng.choice(_PERIODS),
        reason=rng.choice(_REASONS),
        product=rng.choice(_PRODUCTS),
        city=rng.choice(_CITIES),
        year=rng.randint(2004, 2025),
        a=f"{rng.uniform(0.5, 900):.1f}",
        b=f"{rng.uniform(0.5, 900):.1f}",
        c=rng.randint(10, 400),
        d=rng.randint(400, 900),
        p=rng.randint(1, 60),
        n=rng.randint(20, 9000),
        k=rng.randint(2, 6),
        first=rng.choice(_FIRST),
        last=rng.choice(_LAST),
        day=rng.randint(1, 28),
        month=rng.choice(_MONTHS),
        cents=f"{rng.uniform(0.05, 2):.2f}",
        cents2=f"{rng.uniform(0.05, 2):.2f}",
    )
    return text[0].upper() + text[1:]


def _near_copy(rng: random.Random, text: str) -> str:
    """Return ``text`` as a second outlet or feed might carry it: retagged, re-punctuated or trimmed."""
    words = text.split()
    edit = rng.randrange(4)
    if edit == 0:
        return f"{text} {rng.choice(_TAGS)}"
    if edit == 1:
        return f"{rng.choice(_PREFIXES)} {text}"
    if edit == 2:
        return re.sub(r" ([,.;:'])", r"\1", text).replace(" mn", "mn").upper()
    return " ".join(words[:-1]) if len(words) > 8 else f"{text} {rng.choice(_TAGS)}"


def make_corpus(n: int, near_share: float = 0.1, seed: int = 0) -> tuple[list[Example], list[tuple[str, str]]]:
    """Return ``n`` synthetic examples, ``near_share`` of them near copies of others, and the (source, copy) pairs."""
    rng = random.Random(seed)
    companies = _companies(rng, 3000)
    n_copies = int(n * near_share)
    texts: list[str] = []
    seen: set[str] = set()
    while len(texts) < n - n_copies:
        text = _sentence(rng, companies)
        if normalize_text(text) not in seen:
            seen.add(normalize_text(text))
            texts.append(text)
    pairs = []
    while len(pairs) < n_copies:
        source = rng.choice(texts)
        copy = _near_copy(rng, source)
        if normalize_text(copy) not in seen:
            seen.add(normalize_text(copy))
            pairs.append((source, copy))
    texts += [copy for _, copy in pairs]
    rng.shuffle(texts)
    labels = ["positive", "negative", "neutral"]
    examples = [Example(example_id("bench", t), t, labels[i % 3], "bench") for i, t in enumerate(texts)]
    return examples, pairs


def read_phrasebank(path: Path) -> list[Example]:
    lines = path.read_bytes().decode("latin-1").split("\r\n")
    rows = [line.rpartition("@") for line in lines if line]
    return [Example(example_id("financial_phrasebank", s), s, label, "financial_phrasebank") for s, _, label in rows]


def _shingles(text: str) -> set[str]:
    """Word 3-grams (unigrams under 3 words), as strings: the reference's input, and an independent recall check."""
    normalized = normalize_text(text)
    words = re.findall(r"\w+", normalized) or ([normalized] if normalized else [])
    if len(words) < 3:
        return set(words)
    return {" ".join(words[i : i + 3]) for i in range(len(words) - 2)}


def reference_dedup(examples: list[Example], cfg: DedupConfig) -> list[Example]:
    """datasketch as its README shows it: a MinHash per text fed by ``update``, MinHashLSH with default weights."""
    lsh = MinHashLSH(threshold=cfg.threshold, num_perm=cfg.num_perm)
    kept, seen = [], set()
    for i, example in enumerate(examples):
        key = normalize_text(example.text)
        if key in seen:
            continue
        seen.add(key)
        minhash = MinHash(num_perm=cfg.num_perm)
        for shingle in _shingles(example.text):
            minhash.update(shingle.encode("utf-8"))
        if not lsh.query(minhash):
            lsh.insert(i, minhash)
            kept.append(example)
    return kept


def _recall(kept_texts: set[str], pairs: list[tuple[str, str]], threshold: float) -> str:
    """Share of injected pairs at or above the threshold (exact Jaccard) of which at most one text was kept."""
    true_pairs = []
    for source, copy in pairs:
        a, b = _shingles(source), _shingles(copy)
        if len(a & b) / len(a | b) >= threshold:
            true_pairs.append((source, copy))
    found = sum(not (source in kept_texts and copy in kept_texts) for source, copy in true_pairs)
    return f"{found / max(len(true_pairs), 1):.3f} of {len(true_pairs):,}"


def _measure(
    dedup: Callable[[], list[Example]], pairs: list[tuple[str, str]] | None, threshold: float
) -> tuple[float, float, int, str]:
    """Run ``dedup`` in a forked child (its own peak RSS): seconds, peak RSS growth MiB, texts kept, recall."""

    def child(queue: mp.Queue) -> None:
        start_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        start = time.perf_counter()
        kept = dedup()
        seconds = time.perf_counter() - start
        peak_mib = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - start_rss) / 1024
        kept_texts = {example.text for example in kept}
        queue.put((seconds, peak_mib, len(kept), "-" if pairs is None else _recall(kept_texts, pairs, threshold)))

    context = mp.get_context("fork")
    queue = context.Queue()
    process = context.Process(target=child, args=(queue,))
    process.start()
    seconds, peak_mib, n_kept, recall = queue.get()
    process.join()
    return seconds, peak_mib, n_kept, recall


def run(
    name: str, examples: list[Example], pairs: list[tuple[str, str]] | None, cfg: DedupConfig, reference_n: int
) -> list[str]:
    ours_s, ours_mib, ours_kept, ours_recall = _measure(lambda: deduplicate(examples, cfg).kept, pairs, cfg.threshold)
    subsample = examples[:reference_n]
    sub_texts = {example.text for example in subsample}
    sub_pairs = None if pairs is None else [(s, c) for s, c in pairs if s in sub_texts and c in sub_texts]
    ref_s, ref_mib, ref_kept, ref_recall = _measure(lambda: reference_dedup(subsample, cfg), sub_pairs, cfg.threshold)
    ref_label = f"{ref_s:.1f}"
    if len(subsample) < len(examples):
        ref_s *= len(examples) / len(subsample)
        ref_label = f"{ref_s:.1f} (timed on {len(subsample):,}: {ref_label})"
    return [
        name,
        f"{len(examples):,}",
        f"{ours_s:.1f}",
        f"{ours_mib:.0f}",
        f"{len(examples) / ours_s:,.0f}",
        f"{len(examples) - ours_kept:,}",
        ours_recall,
        ref_label,
        f"{ref_mib:.0f}",
        f"{len(subsample) - ref_kept:,}",
        ref_recall,
        f"{ref_s / ours_s:.1f}x",
    ]


def _cpu_name() -> str:
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=177_000, help="Synthetic corpus size.")
    parser.add_argument("--near-share", type=float, default=0.1, help="Share of injected near duplicates.")
    parser.add_argument("--threshold", type=float, default=DedupConfig.threshold, help="Jaccard threshold.")
    parser.add_argument("--num-perm", type=int, default=DedupConfig.num_perm, help="MinHash permutations.")
    parser.add_argument(
        "--reference-n",
        type=int,
        default=None,
        help="Time the reference on the first N texts only and extrapolate linearly (default: all).",
    )
    args = parser.parse_args()
    cfg = DedupConfig(threshold=args.threshold, num_perm=args.num_perm)
    print(
        f"# dedup benchmark: {_cpu_name()}, {os.cpu_count()} CPUs, Python {platform.python_version()}, "
        f"threshold {cfg.threshold}, num_perm {cfg.num_perm}"
    )
    examples, pairs = make_corpus(args.n, args.near_share)
    rows = [run("synthetic", examples, pairs, cfg, args.reference_n or len(examples))]
    if PHRASEBANK_50.is_file():
        pb = read_phrasebank(PHRASEBANK_50)
        rows.append(run("phrasebank_50agree", pb, None, cfg, args.reference_n or len(pb)))
    header = [
        "data",
        "n texts",
        "ours s",
        "ours peak MiB",
        "ours texts/s",
        "ours removed",
        "ours recall",
        "reference s",
        "ref peak MiB",
        "ref removed",
        "ref recall",
        "speed-up",
    ]
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]
    for row in [header, ["-" * w for w in widths], *rows]:
        print(" | ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)))
    print(
        "ours: finsent.data.dedup.deduplicate (exact, then numpy-batched MinHash + datasketch MinHashLSH, "
        "candidates verified by exact Jaccard)"
    )
    print(
        "reference: datasketch MinHash(num_perm).update per shingle + MinHashLSH(threshold, num_perm), "
        "first text of each group kept, any LSH candidate counted as a duplicate"
    )
    print(
        "peak MiB: growth of peak RSS in a forked child; recall: injected pairs with exact Jaccard >= threshold "
        "of which at most one text was kept"
    )


if __name__ == "__main__":
    main()
