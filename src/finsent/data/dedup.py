"""Exact and near-duplicate removal, and overlap checks against evaluation sets.

Exact duplicates compare ``normalize_text``; near duplicates compare word 3-gram shingles with MinHash, using
datasketch's ``MinHashLSH`` for the banding. Sketches are computed in numpy batches with datasketch's "affine32"
permutations (equal to ``MinHash.update_batch`` on the same shingle hashes, ~20x faster than a per-text ``update``
loop). Dedup runs before the split, so no near duplicate can land in two splits.
"""

from __future__ import annotations

import gc
import hashlib
import logging
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
from datasketch import LeanMinHash, MinHash, MinHashLSH
from tqdm.auto import tqdm

from finsent.config import DedupConfig
from finsent.data.readers import Example, normalize_text

logger = logging.getLogger(__name__)

_WORD = re.compile(r"\w+")
_BATCH_TEXTS = 512  # a batch's (shingles x num_perm) uint32 matrix stays in cache (~6 MB): 2x faster than 2048
_NUM_SAMPLE_PAIRS = 10
_SCHEME = "affine32"
# Candidates are verified by exact Jaccard, so a false positive costs one set comparison while a false negative loses
# a duplicate (or leaks a test text): weighting misses 49:1 gives 96-98% recall at the threshold itself, where
# datasketch's 1:1 gives 31-46%, for ~10% more time than 19:1 (93-95%).
_LSH_WEIGHTS = (0.02, 0.98)
# Odd 64-bit multipliers: a polynomial combine of word hashes, so "a b c" and "c b a" hash apart.
_P1 = np.uint64(0x9E3779B97F4A7C15)
_P2 = np.uint64(0xC2B2AE3D27D4EB4F)


@dataclass(frozen=True)
class DedupResult:
    """What ``deduplicate`` kept and why the rest went."""

    kept: list[Example]
    removed_exact: int  # copies of a kept text (same normalized text, same label)
    removed_near: int  # texts within the Jaccard threshold of a kept text
    conflicting_labels: int  # examples dropped because copies of their text carry different labels (all copies)
    pairs: list[tuple[str, str]]  # sample near-duplicate (kept_id, removed_id) for the report


@dataclass(frozen=True)
class TextOverlap:
    """Positions in ``texts`` found in the reference texts: exactly (after normalization) or as near duplicates."""

    exact: list[int]
    near: list[int]


@dataclass(frozen=True)
class ContaminationResult:
    """Examples that occur in an evaluation set; ``ids`` is smaller than exact + near when examples share an id."""

    ids: frozenset[str]
    exact: int
    near: int


@contextmanager
def _gc_paused() -> Iterator[None]:
    """Pause the cyclic GC for the call and restore its state after."""
    # The LSH index adds millions of long-lived sets (no cycles) that every full collection re-scans: ~25% of the
    # time at 177k texts. The pause is scoped to one call and ends on errors too.
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


@_gc_paused()
def deduplicate(examples: list[Example], cfg: DedupConfig, seed: int = 0) -> DedupResult:
    """Drop exact duplicates (all copies when their labels disagree), then near duplicates by cluster.

    Each near-duplicate cluster keeps its earliest text: texts are visited in order and one within the threshold
    of an already kept text is removed, so every removed text is similar to a kept one (no chaining).
    """
    groups: dict[str, list[int]] = {}
    for i, example in enumerate(examples):
        groups.setdefault(normalize_text(example.text), []).append(i)
    survivors: list[tuple[int, str]] = []
    removed_exact = conflicting = 0
    for text, members in groups.items():
        if len({examples[i].label for i in members}) > 1:
            conflicting += len(members)
        else:
            survivors.append((members[0], text))
            removed_exact += len(members) - 1

    removed: set[int] = set()
    pairs: list[tuple[str, str]] = []
    if cfg.use_near:
        texts = [text for _, text in survivors]
        for position, representative in _cluster(texts, cfg, seed):
            removed.add(position)
            if len(pairs) < _NUM_SAMPLE_PAIRS:
                pairs.append((examples[survivors[representative][0]].id, examples[survivors[position][0]].id))
    kept = [examples[i] for position, (i, _) in enumerate(survivors) if position not in removed]
    logger.info(
        "dedup: kept %d of %d (exact duplicates %d, near duplicates %d, conflicting labels %d)",
        len(kept),
        len(examples),
        removed_exact,
        len(removed),
        conflicting,
    )
    return DedupResult(
        kept=kept, removed_exact=removed_exact, removed_near=len(removed), conflicting_labels=conflicting, pairs=pairs
    )


@_gc_paused()
def find_overlap(texts: list[str], reference_texts: list[str], cfg: DedupConfig, seed: int = 0) -> TextOverlap:
    """Return which ``texts`` occur in ``reference_texts``, exactly or (with ``cfg.use_near``) as near duplicates."""
    reference = {normalize_text(text) for text in reference_texts}
    normalized = [normalize_text(text) for text in texts]
    exact = [i for i, text in enumerate(normalized) if text in reference]
    near = _near_matches(normalized, set(exact), sorted(reference), cfg, seed) if cfg.use_near else []
    return TextOverlap(exact=exact, near=near)


def _near_matches(texts: list[str], exact: set[int], reference: list[str], cfg: DedupConfig, seed: int) -> list[int]:
    """Return the positions of normalized ``texts`` outside ``exact`` within the threshold of a reference text."""
    sketcher = _Sketcher(cfg.num_perm, seed)
    lsh = _index(cfg)
    reference_shingles: dict[int, bytes] = {}
    for i, minhash, shingles in sketcher.sketch(reference, desc="index reference"):
        if minhash is not None:
            lsh.insert(i, minhash, check_duplication=False)
            reference_shingles[i] = shingles
    rest = [i for i in range(len(texts)) if i not in exact]
    near = []
    for j, minhash, shingles in sketcher.sketch([texts[i] for i in rest], desc="overlap"):
        candidates = lsh.query(minhash) if minhash is not None else []
        if _best_match(shingles, candidates, reference_shingles, cfg.threshold) is not None:
            near.append(rest[j])
    return near


def find_contamination(
    examples: list[Example], reference_texts: list[str], cfg: DedupConfig, seed: int = 0
) -> ContaminationResult:
    """Return the ids of ``examples`` whose text occurs in ``reference_texts`` (an evaluation set), with counts."""
    overlap = find_overlap([example.text for example in examples], reference_texts, cfg, seed)
    ids = frozenset(examples[i].id for i in overlap.exact + overlap.near)
    logger.info(
        "decontamination: %d exact and %d near matches against %d reference texts (%d ids)",
        len(overlap.exact),
        len(overlap.near),
        len(reference_texts),
        len(ids),
    )
    return ContaminationResult(ids=ids, exact=len(overlap.exact), near=len(overlap.near))


def _cluster(texts: list[str], cfg: DedupConfig, seed: int) -> list[tuple[int, int]]:
    """Return (position, representative position) for each text within the threshold of an earlier kept text."""
    sketcher = _Sketcher(cfg.num_perm, seed)
    lsh = _index(cfg)
    kept_shingles: dict[int, bytes] = {}
    removed = []
    for i, minhash, shingles in sketcher.sketch(texts, desc="near-dup"):
        candidates = lsh.query(minhash) if minhash is not None else []
        representative = _best_match(shingles, candidates, kept_shingles, cfg.threshold)
        if representative is not None:
            removed.append((i, representative))
        elif minhash is not None:
            lsh.insert(i, minhash, check_duplication=False)
            kept_shingles[i] = shingles
    return removed


def _index(cfg: DedupConfig) -> MinHashLSH:
    return MinHashLSH(threshold=cfg.threshold, num_perm=cfg.num_perm, weights=_LSH_WEIGHTS)


def _best_match(shingles: bytes, candidates: list[int], indexed: dict[int, bytes], threshold: float) -> int | None:
    """Return the candidate most similar to ``shingles`` by exact Jaccard, if one reaches ``threshold``."""
    # LSH candidates are approximate: the exact Jaccard drops false positives, the seed acts only via rare misses.
    if not candidates:
        return None
    mine = _as_set(shingles)
    best, best_score = None, 0.0
    for candidate in sorted(candidates):
        other = _as_set(indexed[candidate])
        score = len(mine & other) / len(mine | other)
        if score > best_score:
            best, best_score = candidate, score
    return best if best_score >= threshold else None


def _as_set(shingles: bytes) -> set[int]:
    return set(np.frombuffer(shingles, dtype=np.uint32).tolist())


class _Sketcher:
    """MinHash sketches of normalized texts over word 3-gram shingles (unigrams for texts under 3 words).

    Each distinct word is hashed once (blake2b, cached); shingle hashes are combined from word hashes in numpy.
    """

    def __init__(self, num_perm: int, seed: int) -> None:
        self.seed = seed
        self.permutations = MinHash(num_perm=num_perm, seed=seed, scheme=_SCHEME).permutations
        self._word_hashes: dict[str, int] = {}

    def sketch(self, texts: list[str], desc: str) -> Iterator[tuple[int, LeanMinHash | None, bytes]]:
        """Yield (index, sketch, shingle hashes as uint32 bytes) per text in order; no sketch for an empty text."""
        # The shingle bytes (~4 bytes a word) let candidates be verified without shingling their text again.
        with tqdm(total=len(texts), desc=desc, unit="text", leave=False) as bar:
            for start in range(0, len(texts), _BATCH_TEXTS):
                batch = texts[start : start + _BATCH_TEXTS]
                hashes, counts = self.shingle_hashes(batch)
                hashvalues = self.minhash(hashes, counts)
                raw = hashes.tobytes()
                row = end = 0
                for offset, count in enumerate(counts.tolist()):
                    begin, end = end, end + count
                    if count:
                        minhash = LeanMinHash(seed=self.seed, hashvalues=hashvalues[row], scheme=_SCHEME)
                        yield start + offset, minhash, raw[4 * begin : 4 * end]
                        row += 1
                    else:
                        yield start + offset, None, b""
                bar.update(len(batch))

    def shingle_hashes(self, texts: list[str]) -> tuple[np.ndarray, np.ndarray]:
        """Return the uint32 shingle hashes of ``texts`` concatenated, and each text's number of shingles."""
        word_hashes: list[int] = []
        lengths = np.empty(len(texts), dtype=np.int64)
        for i, text in enumerate(texts):
            # A text of punctuation only has no words: its whole form is one shingle, so copies still match.
            words = _WORD.findall(text) or ([text] if text else [])
            lengths[i] = len(words)
            for word in words:
                word_hash = self._word_hashes.get(word)
                if word_hash is None:
                    digest = hashlib.blake2b(word.encode(), digest_size=8).digest()
                    word_hash = self._word_hashes[word] = int.from_bytes(digest, "little")
                word_hashes.append(word_hash)
        words_hashed = np.array([*word_hashes, 0, 0], dtype=np.uint64)
        trigrams = (words_hashed[:-2] * _P1 + words_hashed[1:-1]) * _P2 + words_hashed[2:]
        is_trigram = lengths >= 3
        counts = np.where(is_trigram, lengths - 2, lengths)
        # Index of each shingle's first word: the text's start plus the shingle's rank inside the text.
        starts = np.cumsum(lengths) - lengths
        shingle_starts = np.cumsum(counts) - counts
        firsts = np.repeat(starts - shingle_starts, counts) + np.arange(int(counts.sum()))
        combined = np.where(np.repeat(is_trigram, counts), trigrams[firsts], words_hashed[firsts])
        return (_fmix64(combined) >> np.uint64(32)).astype(np.uint32), counts

    def minhash(self, hashes: np.ndarray, counts: np.ndarray) -> np.ndarray:
        """Return the (texts with shingles x num_perm) MinHash values, as datasketch's affine32 scheme has them."""
        a, b = self.permutations
        permuted = np.multiply.outer(_fmix32(hashes), a)
        permuted += b
        nonempty = counts[counts > 0]
        if not len(nonempty):
            return np.empty((0, len(a)), dtype=np.uint32)
        return np.minimum.reduceat(permuted, np.cumsum(nonempty) - nonempty, axis=0)


def _fmix64(h: np.ndarray) -> np.ndarray:
    """MurmurHash3's 64-bit finalizer (wrapping uint64 arithmetic)."""
    h = h ^ (h >> np.uint64(33))
    h = h * np.uint64(0xFF51AFD7ED558CCD)
    h = h ^ (h >> np.uint64(33))
    h = h * np.uint64(0xC4CEB9FE1A85EC53)
    return h ^ (h >> np.uint64(33))


def _fmix32(h: np.ndarray) -> np.ndarray:
    """MurmurHash3's 32-bit finalizer, the pre-mix datasketch applies to input hashes in its affine32 scheme."""
    h = h ^ (h >> np.uint32(16))
    h = h * np.uint32(0x85EBCA6B)
    h = h ^ (h >> np.uint32(13))
    h = h * np.uint32(0xC2B2AE35)
    return h ^ (h >> np.uint32(16))
