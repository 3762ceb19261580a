"""Baselines that need no GPU and set the floor a model must beat; trained and run on the same splits as models.

``majority`` predicts the most frequent training label, ``lexicon`` counts Loughran-McDonald positive and
negative words (sentiment), ``rules`` applies the merchant keyword rules (transactions), ``tfidf`` is TF-IDF word 1-2
grams with logistic regression trained on the train source. ``task`` is the one task a baseline answers (None: any).

Each guess carries probabilities over the labels, so baselines are scored for calibration like models: the
majority baseline's are the training label shares, tfidf's the classifier's, and the rule baselines' a softmax of
their cue counts, which eval's temperature scaling then calibrates as it does a model's label scores.
"""

from __future__ import annotations

import math
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
    """A baseline's label, a one-line reason (the cue words or terms behind it) and its probability per label."""

    label: str
    reasoning: str
    probabilities: dict[str, float]


class Baseline(Protocol):
    """Learns from labeled texts (or ignores them) and labels new texts over ``labels``."""

    uses_train: bool
    task: str | None

    def fit(self, texts: Sequence[str], labels: Sequence[str]) -> None: ...

    def predict(self, texts: Sequence[str], labels: Sequence[str]) -> list[Guess]: ...


def cue_probabilities(scores: dict[str, float], labels: Sequence[str]) -> dict[str, float]:
    """Return a softmax over ``labels`` of cue scores (a label without cues scores 0)."""
    weights = {label: math.exp(scores.get(label, 0.0)) for label in labels}
    total = sum(weights.values())
    return {label: weight / total for label, weight in weights.items()}


BASELINES: Registry[Callable[[int], Baseline]] = Registry("baseline")


@BASELINES.register("majority")
class MajorityBaseline:
    """The most frequent label of the train source, for every text."""

    uses_train = True
    task = None

    def __init__(self, seed: int) -> None:
        self.counts: Counter[str] = Counter()

    def fit(self, texts: Sequence[str], labels: Sequence[str]) -> None:
        self.counts = Counter(labels)

    def predict(self, texts: Sequence[str], labels: Sequence[str]) -> list[Guess]:
        if not self.counts:
            raise RuntimeError("fit the majority baseline before predicting")
        # Ties go to the label seen first, so the choice does not depend on hashing.
        label = self.counts.most_common(1)[0][0]
        total = self.counts.total()
        shares = {name: self.counts[name] / total for name in labels}
        return [Guess(label, "the most frequent label in the training data", shares)] * len(texts)


@BASELINES.register("lexicon")
class LexiconBaseline:
    """Loughran-McDonald word counts: more positive words is positive, more negative is negative, else neutral."""

    uses_train = False
    task = "sentiment"

    def __init__(self, seed: int) -> None:
        self.lexicon = load_lexicon("loughran_mcdonald")

    def fit(self, texts: Sequence[str], labels: Sequence[str]) -> None:
        """Nothing to learn: the word lists are fixed."""

    def predict(self, texts: Sequence[str], labels: Sequence[str]) -> list[Guess]:
        guesses = []
        for text in texts:
            cues = find_cues(text, self.lexicon)
            reason = (
                f"positive words: {', '.join(cues.positive) or 'none'}; "
                f"negative words: {', '.join(cues.negative) or 'none'}"
            )
            # The word-count margin picks the label; as a score it leans as far as the words do.
            margin = len(cues.positive) - len(cues.negative)
            probabilities = cue_probabilities({"positive": margin, "negative": -margin}, labels)
            guesses.append(Guess(cues.polarity, reason, probabilities))
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

    def predict(self, texts: Sequence[str], labels: Sequence[str]) -> list[Guess]:
        guesses = []
        for text in texts:
            match = categorize(text)
            reason = f"keyword: {match.keyword}" if match.keyword else "no keyword matched"
            # A matched keyword scores its category 1; without one, every category is as likely.
            probabilities = cue_probabilities({match.label: 1.0} if match.keyword else {}, labels)
            guesses.append(Guess(match.label, reason, probabilities))
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

    def predict(self, texts: Sequence[str], labels: Sequence[str]) -> list[Guess]:
        features = self.vectorizer.transform(texts)
        probabilities = self.classifier.predict_proba(features)
        terms = self.vectorizer.get_feature_names_out()
        classes = list(self.classifier.classes_)
        # With more than two classes each class has its own weights; a binary model has one row for classes_[1].
        weights = (
            self.classifier.coef_
            if len(classes) > 2
            else np.vstack([-self.classifier.coef_[0], self.classifier.coef_[0]])
        )
        guesses = []
        for i, row_probabilities in enumerate(probabilities):
            # predict() is the argmax of predict_proba; a label absent from the train rows has probability 0.
            label = str(classes[int(np.argmax(row_probabilities))])
            row = features.getrow(i)
            contribution = row.data * weights[classes.index(label)][row.indices]
            top = [terms[row.indices[j]] for j in np.argsort(-contribution)[:3] if contribution[j] > 0]
            by_label = dict(zip(map(str, classes), map(float, row_probabilities), strict=True))
            guesses.append(
                Guess(
                    label,
                    f"terms for {label}: {', '.join(top) or 'none'}",
                    {name: by_label.get(name, 0.0) for name in labels},
                )
            )
        return guesses
