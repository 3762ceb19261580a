"""Baselines on real PhraseBank rows: the registry, the majority rule, lexicon cues and a trained TF-IDF model."""

import math
from collections import Counter

from finsent.completion import LABELS
from finsent.config import SourceConfig
from finsent.data.readers import RowErrors
from finsent.data.sources import load_source
from finsent.eval.baselines import BASELINES
from finsent.eval.metrics import classification_metrics
from finsent.eval.protocols import split_indices


def phrasebank_split(path):
    examples = load_source(SourceConfig(name="financial_phrasebank", path=str(path)), RowErrors())
    train_idx, test_idx = split_indices(len(examples), 0.25, 42)
    return [examples[i] for i in train_idx], [examples[i] for i in test_idx]


def test_registry_names_and_help():
    assert BASELINES.names() == ["lexicon", "majority", "rules", "tfidf"]
    assert "Loughran-McDonald" in BASELINES.help("lexicon")


def test_majority_predicts_the_most_frequent_training_label():
    baseline = BASELINES.get("majority")(0)
    baseline.fit(["a", "b", "c", "d"], ["negative", "positive", "negative", "neutral"])
    guesses = baseline.predict(["anything", "else"], LABELS)
    assert [g.label for g in guesses] == ["negative", "negative"]
    # Its probabilities are the training label shares: the majority label is the most likely.
    assert guesses[0].probabilities == {"positive": 0.25, "negative": 0.5, "neutral": 0.25}


def test_lexicon_counts_loughran_mcdonald_words():
    baseline = BASELINES.get("lexicon")(0)
    assert not baseline.uses_train
    guesses = baseline.predict(
        [
            "Operating profit improved and the company achieved record sales.",
            "The company reported a loss and announced layoffs after the decline.",
            "The annual general meeting is held in Helsinki on 3 April.",
        ],
        LABELS,
    )
    assert [g.label for g in guesses] == ["positive", "negative", "neutral"]
    # The label is the most likely one; no cue words leave every label as likely.
    for guess in guesses:
        assert math.isclose(sum(guess.probabilities.values()), 1.0)
        assert max(guess.probabilities, key=guess.probabilities.get) == guess.label or guess.label == "neutral"
    assert guesses[2].probabilities == {label: 1 / 3 for label in LABELS}
    assert guesses[0].probabilities["positive"] > 0.5 > guesses[0].probabilities["negative"]
    assert "improved" in guesses[0].reasoning and "layoffs" in guesses[1].reasoning


def test_tfidf_learns_from_train_and_beats_the_majority_floor(phrasebank_allagree):
    train, test = phrasebank_split(phrasebank_allagree)
    gold = [ex.label for ex in test]
    scores = {}
    for name in ("majority", "tfidf"):
        baseline = BASELINES.get(name)(42)
        baseline.fit([ex.text for ex in train], [ex.label for ex in train])
        guesses = baseline.predict([ex.text for ex in test], LABELS)
        scores[name] = classification_metrics(gold, [g.label for g in guesses])
    assert scores["majority"].accuracy == Counter(gold)["neutral"] / len(gold)
    assert scores["tfidf"].macro_f1 > scores["majority"].macro_f1 + 0.3
    assert scores["tfidf"].accuracy > scores["majority"].accuracy


def test_tfidf_explains_with_the_terms_that_pushed_its_label():
    baseline = BASELINES.get("tfidf")(0)
    texts = [
        "profit rose",
        "profit rose again",
        "sales fell",
        "sales fell again",
        "meeting held",
        "meeting held today",
    ]
    baseline.fit(texts, ["positive", "positive", "negative", "negative", "neutral", "neutral"])
    guess = baseline.predict(["profit rose sharply"], LABELS)[0]
    assert guess.label == "positive"
    assert guess.reasoning.startswith("terms for positive:") and "rose" in guess.reasoning


def test_tfidf_probabilities_are_the_classifiers_and_its_label_their_argmax():
    baseline = BASELINES.get("tfidf")(0)
    texts = ["profit rose", "profit rose again", "sales fell", "sales fell again"]
    baseline.fit(texts, ["positive", "positive", "negative", "negative"])
    guesses = baseline.predict(["profit rose sharply", "sales fell sharply"], LABELS)
    expected = baseline.classifier.predict_proba(baseline.vectorizer.transform(["profit rose sharply"]))[0]
    by_class = dict(zip(baseline.classifier.classes_, expected, strict=True))
    # A label the train rows never had (neutral) gets probability 0.
    assert guesses[0].probabilities == {
        "positive": by_class["positive"],
        "negative": by_class["negative"],
        "neutral": 0,
    }
    assert [g.label for g in guesses] == ["positive", "negative"]
    assert all(g.probabilities[g.label] == max(g.probabilities.values()) for g in guesses)
