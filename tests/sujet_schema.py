"""Small files in Sujet-Finance-Instruct-177k's schema: no copy of Sujet is offline, so tests write their own.

Columns as the hub dataset has them: ``inputs`` (the whole prompt), ``answer``, ``system_prompt``, ``user_prompt``,
``task_type``, ``dataset`` and ``index``. The rows are made up, with the task types Sujet mixes.
"""

from __future__ import annotations

import random
from pathlib import Path

COMPANIES = ["Nordea", "Acme Robotics", "Orion Foods", "Vantage Bank", "Summit Energy", "Aurora Pharma", "Keystone"]
SYSTEM = {
    "sentiment_analysis": "You are a financial sentiment analyst. Answer with positive, negative or neutral.",
    "qa": "You are a financial expert. Answer the question accurately.",
    "qa_with_context": "Answer the question using only the context.",
    "yes_no_question": "Answer the question with yes or no.",
    "topic_classification": "Classify the topic of the financial text.",
    "ner_sentiment_analysis": "Give the sentiment towards each company named in the text.",
}


def sujet_rows(n_per_type: int, seed: int = 0) -> list[dict[str, object]]:
    """Return ``n_per_type`` made-up rows of each task type, in Sujet's columns."""
    rng = random.Random(seed)
    rows = []
    for i in range(n_per_type):
        company, other = rng.sample(COMPANIES, 2)
        pct, amount, year = rng.randint(2, 40), rng.randint(5, 900), rng.randint(2015, 2024)
        direction, label = rng.choice([("rose", "positive"), ("fell", "negative"), ("was flat", "neutral")])
        made = {
            "sentiment_analysis": (f"Text: {company} said net sales {direction} {pct}% in {year}.", label.title()),
            "qa": (
                f"What does a {pct}% rise in operating costs mean for {company}'s margin in {year}?",
                f"Costs growing {pct}% faster than sales squeeze {company}'s operating margin.",
            ),
            "qa_with_context": (
                f"Context: {company} reported revenue of EUR {amount} million in {year}, up {pct}%.\n"
                f"Question: What revenue did {company} report in {year}?",
                f"EUR {amount} million",
            ),
            "yes_no_question": (
                f"Did {company}'s revenue of EUR {amount} million in {year} grow by {pct}%?",
                rng.choice(["Yes", "No"]),
            ),
            "topic_classification": (
                f"{company} to acquire {other} for EUR {amount} million ({year}, deal {i})",
                "Mergers and acquisitions",
            ),
            "ner_sentiment_analysis": (
                f"{company} beat estimates by {pct}% while {other} missed in {year} (note {i}).",
                f"{company}: positive, {other}: negative",
            ),
        }
        for task_type, (user, answer) in made.items():
            rows.append(
                {
                    "inputs": f"{SYSTEM[task_type]}\n{user}",
                    "answer": answer,
                    "system_prompt": SYSTEM[task_type],
                    "user_prompt": user,
                    "task_type": task_type,
                    "dataset": f"made-up-{task_type}",
                    "index": len(rows),
                }
            )
    return rows


def write_sujet_parquet(path: Path, n_per_type: int, seed: int = 0) -> Path:
    """Write ``sujet_rows`` to a Parquet file, as a local copy of the hub dataset would be."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    rows = sujet_rows(n_per_type, seed)
    pq.write_table(pa.table({column: [row[column] for row in rows] for column in rows[0]}), path)
    return path
