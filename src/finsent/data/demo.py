"""A synthetic, seeded source of templated financial headlines with known labels (the offline default).

It exists so the tiny recipe runs with no file and no network. Its texts are made up: never report results on it.
"""

from __future__ import annotations

import random
from collections.abc import Iterator

from finsent.config import SourceConfig
from finsent.data.readers import Example, RowErrors, example_id

_COMPANIES = [
    "Nordic Paper",
    "Acme Robotics",
    "Helsinki Telecom",
    "Baltic Shipping",
    "Orion Foods",
    "Vantage Bank",
    "Summit Energy",
    "Keystone Retail",
    "Aurora Pharma",
    "Granite Mining",
    "Harbor Logistics",
    "Pinecrest Media",
]
_METRICS = ["net sales", "operating profit", "revenue", "earnings per share", "order intake", "net income"]
_PERIODS = [
    "the first quarter",
    "the second quarter",
    "the third quarter",
    "the fourth quarter",
    "2025",
    "the half year",
]

_TEMPLATES = {
    "positive": [
        "{company} said {metric} rose {pct}% to EUR {amount} million in {period}.",
        "{company} raised its full-year outlook after {metric} grew {pct}% in {period}.",
        "{company} won a EUR {amount} million contract, lifting its order backlog by {pct}%.",
        "Shares of {company} climbed {pct}% after {metric} beat analyst expectations in {period}.",
        "{company} reported record {metric} of EUR {amount} million for {period}, up {pct}% year on year.",
    ],
    "negative": [
        "{company} said {metric} fell {pct}% to EUR {amount} million in {period}.",
        "{company} cut its outlook as {metric} declined {pct}% in {period}.",
        "{company} will lay off {people} employees after a EUR {amount} million loss in {period}.",
        "Shares of {company} dropped {pct}% after {metric} missed analyst expectations in {period}.",
        "{company} booked an impairment of EUR {amount} million, turning {period} into a loss.",
    ],
    "neutral": [
        "{company} will publish its results for {period} on {day} {month}.",
        "{company} appointed a new chief financial officer effective {day} {month}.",
        "{company} said {metric} was EUR {amount} million in {period}, unchanged from a year earlier.",
        "{company} holds its annual general meeting in Helsinki on {day} {month}.",
        "{company} has {people} employees and operates in {countries} countries.",
    ],
}
_MONTHS = ["January", "March", "April", "June", "August", "October", "November"]


def generate_demo_examples(num_examples: int, seed: int = 0) -> list[Example]:
    """Return ``num_examples`` synthetic headlines, labels cycling so the classes are balanced."""
    rng = random.Random(seed)
    labels = list(_TEMPLATES)
    examples, seen = [], set()
    while len(examples) < num_examples:
        label = labels[len(examples) % len(labels)]
        text = rng.choice(_TEMPLATES[label]).format(
            company=rng.choice(_COMPANIES),
            metric=rng.choice(_METRICS),
            period=rng.choice(_PERIODS),
            pct=rng.randint(2, 45),
            amount=rng.randint(5, 900),
            people=rng.randint(20, 4000),
            day=rng.randint(1, 28),
            month=rng.choice(_MONTHS),
            countries=rng.randint(3, 40),
        )
        if text in seen:
            continue
        seen.add(text)
        examples.append(Example(example_id("demo", text), text, label, "demo", {"synthetic": True}))
    return examples


def read_demo(cfg: SourceConfig, errors: RowErrors) -> Iterator[Example]:
    """Synthetic, seeded financial headlines (offline default)."""
    yield from generate_demo_examples(cfg.num_examples)
