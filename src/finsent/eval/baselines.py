"""Baselines that need no GPU and set the floor a model must beat; trained and run on the same splits as models.

``majority`` predicts the most frequent training label, ``lexicon`` counts Loughran-McDonald positive and
negative words (sentiment), ``rules`` applies the merchant keyword rules (transactions), ``tfidf`` is TF-IDF word 1-2
grams with logistic regression trained on the train source. ``task`` is the one task a baseline answers (None: any).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression

from finsent.data.transactions import categorize
from finsent.lexicon import find_cues, load_lexicon
from finsent.registry import Registry


@dataclass(frozen=True)
class Guess:
    """A baseline's label and a one-line reason (the cue words or terms behind it)."""

    label: str
    reasoning: str


class Baseline(Protocol):
    """Learns from labeled texts (or ignores them) and labels new texts."""

    uses_train: bool
    task: str | None

    def fit(self, texts: Sequence[str], labels: Sequence[str]) -> None: ...

    def predict(self, texts: Sequence[str]) -> list[Guess]: ...


BASELINES: Registry[Callable[[int], Baseline]] = Registry("baseline")


@BASELINES.register("majority")
class MajorityBaseline:
    """The most frequent label of the train source, for every text."""

    uses_train = True
    task = None

    def __init__(self, seed: int) -> None:
        self.label: str | None = None

    def fit(self, texts: Sequence[str], labels: Sequence[str]) -> None:
        # Ties go to the label seen first, so the choice does not depend on hashing.
        self.label = Counter(labels).most_common(1)[0][0]

    def predict(self, texts: Sequence[str]) -> list[Guess]:
        if self.label is None:
            raise RuntimeError("fit the majority baseline before predicting")
        return [Guess(self.label, "the most frequent label in the training data")] * len(texts)


@BASELINES.register("lexicon")
class LexiconBaseline:
    """Loughran-McDonald word counts: more positive words is positive, more negative is negative, else neutral."""

    uses_train = False
    task = "sentiment"

    def __init__(self, seed: int) -> None:
        self.lexicon = load_lexicon("loughran_mcdonald")

    def fit(self, texts: Sequence[str], labels: Sequence[str]) -> None:
        """Nothing to learn: the word lists are fixed."""

    def predict(self, texts: Sequence[str]) -> list[Guess]:
        guesses = []
        for text in texts:
            cues = find_cues(text, self.lexicon)
            reason = (
                f"positive words: {', '.join(cues.positive) or 'none'}; "
                f"negative words: {', '.join(cues.negative) or 'none'}"
            )
            guesses.append(Guess(cues.polarity, reason))
        return guesses


@BASELINES.register("rules")
class RulesBaseline:
    """Merchant keyword rules: the category of the longest keyword in the description, else other."""

    uses_train = False
    task = "transactions"

    def __init__(self, seed: int) -> None:
        """Nothing to set up: the keyword table is fixed (``finsent.data.transactions.KEYWORDS``)."""

    def fit(self, texts: Sequence[str], labels: Sequence[str]) -> None:
        """Nothing to learn: the keyword table is fixed."""

    def predict(self, texts: Sequence[str]) -> list[Guess]:
        guesses = []
        for text in texts:
            match = categorize(text)
            reason = f"keyword: {match.keyword}" if match.keyword else "no keyword matched"
            guesses.append(Guess(match.label, reason))
        return guesses


@BASELINES.register("tfidf")
class TfidfBaseline:
    """TF-IDF word 1-2 grams and class-balanced logistic regression, trained on the train source."""

    uses_train = True
    task = None

    def __init__(self, seed: int) -> None:
        self.vectorizer = TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True, min_df=2)
        # Balanced class weights: the sets are mostly neutral and the report leads with macro-F1. No other tuning.
        self.classifier = LogisticRegression(max_iter=2000, class_weight="balanced", random_state=seed)

    def fit(self, texts: Sequence[str], labels: Sequence[str]) -> None:
        self.classifier.fit(self.vectorizer.fit_transform(texts), labels)

    def predict(self, texts: Sequence[str]) -> list[Guess]:
        features = self.vectorizer.transform(texts)
        labels = self.classifier.predict(features)
        terms = self.vectorizer.get_feature_names_out()
        classes = list(self.classifier.classes_)
        # With more than two classes each class has its own weights; a binary model has one row for classes_[1].
        weights = (
            self.classifier.coef_
            if len(classes) > 2
            else np.vstack([-self.classifier.coef_[0], self.classifier.coef_[0]])
        )
        guesses = []
        for i, label in enumerate(labels):
            row = features.getrow(i)
            contribution = row.data * weights[classes.index(label)][row.indices]
            top = [terms[row.indices[j]] for j in np.argsort(-contribution)[:3] if contribution[j] > 0]
            guesses.append(Guess(str(label), f"terms for {label}: {', '.join(top) or 'none'}"))
        return guesses
