"""Tasks: what a recipe trains for. A task is data and prompts, not a second copy of the pipeline.

Every stage reads the recipe's ``task`` (``finsent ls tasks``) for its label set, its default prompt and how it is
scored. ``sentiment`` is the default and keeps the original contract. ``transactions`` answers a category id of
``TRANSACTION_CATEGORIES`` inside ``<answer>`` (ids parse without ambiguity; people see the display name).
``instruct`` has free-form answers: the assistant turn is the dataset's own answer, with no ``<reasoning>``
contract and no teacher.

>>> TASKS.get("transactions").display("food_dining")
'Food & Dining'
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Literal

from finsent.anonymize import anonymize_text
from finsent.completion import (
    DEFAULT_SYSTEM_PROMPT,
    DEFAULT_USER_TEMPLATE,
    LABELS,
    ParsedCompletion,
    PromptConfig,
    build_messages,
    parse_completion,
    strip_think,
)
from finsent.registry import Registry

MetricKind = Literal["classification", "instruct"]


@dataclass(frozen=True)
class Category:
    """One transaction category: the id answered in ``<answer>``, the name people read, what it covers, and the
    other names user files and other datasets use for it (matched case-insensitively)."""

    id: str
    name: str
    covers: str
    synonyms: tuple[str, ...] = ()


# The documented taxonomy. Synonyms include the label ids of ../shared/data/transaction_categorization
# (food, fuel, bills, education, others), so that file maps onto it without a label_map.
TRANSACTION_CATEGORIES: tuple[Category, ...] = (
    Category(
        "food_dining",
        "Food & Dining",
        "restaurants, cafes, bars, fast food and food delivery",
        ("food", "food and dining", "dining", "restaurant", "restaurants", "fast food", "coffee shops", "eating out"),
    ),
    Category("groceries", "Groceries", "supermarkets and grocery stores", ("grocery", "supermarket", "supermarkets")),
    Category(
        "transport",
        "Transport",
        "fuel, ride-hailing, taxis, public transit, parking, tolls and car upkeep",
        ("fuel", "gas", "petrol", "auto & transport", "auto and transport", "transportation", "taxi", "parking"),
    ),
    Category(
        "shopping",
        "Shopping",
        "retail, online marketplaces, clothing, electronics and home goods",
        ("retail", "clothing", "electronics", "general merchandise", "online shopping"),
    ),
    Category(
        "bills_utilities",
        "Bills & Utilities",
        "electricity, gas and water, phone, internet, insurance and rent",
        ("bills", "utilities", "bills and utilities", "rent", "insurance", "phone", "internet"),
    ),
    Category(
        "entertainment",
        "Entertainment",
        "streaming, cinema, concerts, games and events",
        ("streaming", "movies", "music", "games", "arts & entertainment"),
    ),
    Category(
        "health",
        "Health",
        "pharmacies, doctors, hospitals, dentists and fitness",
        ("healthcare", "medical", "pharmacy", "health & fitness", "fitness", "gym"),
    ),
    Category(
        "travel",
        "Travel",
        "flights, hotels, holiday rentals, long-distance trains and car hire",
        ("flights", "hotel", "hotels", "airlines", "vacation", "holiday", "lodging"),
    ),
    Category(
        "income",
        "Income",
        "salary and payroll, interest, dividends, tax refunds and other money in",
        ("salary", "paycheck", "payroll", "wages", "interest income", "dividends"),
    ),
    Category(
        "transfers",
        "Transfers",
        "person-to-person payments, moves between own accounts and credit card payments",
        ("transfer", "p2p", "internal transfer", "credit card payment"),
    ),
    Category(
        "fees",
        "Fees",
        "bank, overdraft, ATM, foreign transaction and late fees, interest charged",
        ("fee", "bank fees", "bank charges", "charges", "service fee"),
    ),
    Category(
        "other",
        "Other",
        "everything else: cash withdrawals, cheques, donations, education, government",
        ("others", "misc", "miscellaneous", "uncategorized", "education", "cash", "charity"),
    ),
)


@dataclass(frozen=True)
class Task:
    """What a recipe trains for: its labels (None: free-form answers), its prompt, how answers are parsed and scored,
    and whether texts are anonymized. ``RecipeConfig.get_task()`` gives the one every stage of a recipe reads."""

    name: str
    labels: tuple[str, ...] | None
    prompt: PromptConfig
    metric: MetricKind
    title: str  # the dataset card's heading
    display_names: dict[str, str] = field(default_factory=dict)  # label -> what people read; default the label
    use_anonymizer: bool = False  # default of data.anonymize: mask personal data in every text read

    def with_settings(self, prompt: PromptConfig, use_anonymizer: bool) -> Task:
        """Return this task with a recipe's prompt and anonymizer setting."""
        return replace(self, prompt=prompt, use_anonymizer=use_anonymizer)

    def messages(self, text: str, system: str | None = None) -> list[dict[str, str]]:
        """Return the system and user messages the model sees for ``text`` (``system`` replaces the prompt's)."""
        return build_messages(text, replace(self.prompt, system=system) if system else self.prompt)

    def parse(self, completion: str) -> ParsedCompletion:
        """Parse a completion against the task's labels; a free-form answer is all reply, with no label."""
        if self.labels is None:
            return ParsedCompletion(None, strip_think(completion).strip(), "ok")
        return parse_completion(completion, self.labels)

    def anonymize(self, text: str) -> str:
        """Return ``text`` as the model saw it in training: masked where the task masks personal data."""
        return anonymize_text(text) if self.use_anonymizer else text

    def display(self, label: str | None) -> str:
        """Return the name people read for ``label`` (``no answer`` for None)."""
        if label is None:
            return "no answer"
        return self.display_names.get(label, label)


def _transactions_prompt() -> PromptConfig:
    choices = "; ".join(f"{c.id} ({c.name}: {c.covers})" for c in TRANSACTION_CATEGORIES)
    return PromptConfig(
        system=(
            "You categorize bank and card transactions. Read the description and the amount and choose one category "
            f"id: {choices}. First explain briefly which merchant or keyword decides it, inside "
            "<reasoning></reasoning> tags. Then give only the category id inside <answer></answer> tags."
        ),
        user_template="Transaction: {text}",
    )


TASKS: Registry[Task] = Registry("task")
TASKS.add(
    "sentiment",
    Task(
        "sentiment",
        LABELS,
        PromptConfig(DEFAULT_SYSTEM_PROMPT, DEFAULT_USER_TEMPLATE),
        "classification",
        "Financial sentiment with reasoning",
    ),
    help="3-class financial sentiment (positive, negative, neutral) with reasoning (the default).",
)
TASKS.add(
    "transactions",
    Task(
        "transactions",
        tuple(c.id for c in TRANSACTION_CATEGORIES),
        _transactions_prompt(),
        "classification",
        "Transaction categorization with reasoning",
        display_names={c.id: c.name for c in TRANSACTION_CATEGORIES},
        use_anonymizer=True,
    ),
    help="Bank transaction categories (12: food_dining ... other) with reasoning; personal data masked.",
)
TASKS.add(
    "instruct",
    Task(
        "instruct",
        None,
        PromptConfig(
            "You are a financial assistant. Follow the instruction and answer accurately and concisely.", "{text}"
        ),
        "instruct",
        "Financial instructions",
    ),
    help="Financial instructions (Sujet-Finance-Instruct mixtures): free-form answers, scored per task type.",
)
