"""Transactions: the keyword rules, category names, the seeded generator, the file reader, teacher and baseline."""

import json
import random
from collections import Counter
from pathlib import Path

import pytest

from finsent.anonymize import anonymize_text
from finsent.config import SourceConfig, TeacherConfig, ValidationConfig, load_config
from finsent.data import build_dataset
from finsent.data.readers import RowErrors
from finsent.data.sources import load_source
from finsent.data.teachers import load_teacher
from finsent.data.transactions import CATEGORY_IDS, categorize, generate_transactions, normalize_category
from finsent.data.validate import validate_completion
from finsent.errors import ConfigError, DataError
from finsent.eval.baselines import BASELINES
from finsent.tasks import TASKS


@pytest.mark.parametrize(
    ("text", "label", "keyword"),
    [
        ("SQ *STARBUCKS #1234 SEATTLE WA 6.50", "food_dining", "STARBUCKS"),
        ("UBER *EATS 23.10", "food_dining", "UBER EATS"),  # the longest keyword wins over UBER
        ("UBER *TRIP HELP.UBER.COM 14.20", "transport", "UBER"),
        ("AMZN Mktp US*2K3LX -34.99", "shopping", "AMZN MKTP"),
        ("NON-CHASE ATM FEE-WITH 3.00", "fees", "ATM FEE"),
        ("ATM WITHDRAWAL SEATTLE WA -60.00", "other", "ATM WITHDRAWAL"),
        ("WIRE TRANSFER FEE 30.00", "fees", "WIRE TRANSFER FEE"),
        ("ZELLE TO [NAME] ON 01/15", "transfers", "ZELLE"),
        ("PAYROLL DIRECT DEP ACME CORP +2,450.00", "income", "DIRECT DEP"),
        ("AT&T*BILL PAYMENT -80.00", "bills_utilities", "AT T"),
        ("MCDONALD'S F12345 4.99", "food_dining", "MCDONALD"),
        ("LA TAQUERIA DENVER CO -12.30", "other", None),  # no keyword: the fallback
    ],
)
def test_rules_pick_the_longest_keyword_on_whole_words(text, label, keyword):
    match = categorize(text)
    assert (match.label, match.keyword) == (label, keyword)


def test_categories_map_from_ids_names_synonyms_and_the_shared_file_ids():
    assert normalize_category("food_dining") == "food_dining"
    assert normalize_category("Food & Dining") == "food_dining"
    assert normalize_category("  bills AND utilities ") == "bills_utilities"
    shared = {"food": "food_dining", "fuel": "transport", "bills": "bills_utilities", "education": "other",
              "others": "other", "travel": "travel", "groceries": "groceries"}  # fmt: skip
    assert {raw: normalize_category(raw) for raw in shared} == shared
    assert normalize_category("Dining Out", {"dining out": "food_dining"}) == "food_dining"
    assert normalize_category("crypto") is None
    assert normalize_category(None) is None


def test_generator_is_seeded_balanced_and_noisy():
    first, again, other = generate_transactions(240, 3), generate_transactions(240, 3), generate_transactions(240, 4)
    assert [e.text for e in first] == [e.text for e in again]
    assert [e.text for e in first] != [e.text for e in other]
    assert Counter(e.label for e in first) == {label: 20 for label in CATEGORY_IDS}
    assert len({e.text for e in first}) == 240
    texts = " | ".join(e.text for e in generate_transactions(2400, 0))
    for noise in ("SQ *", "TST* ", "POS DEBIT", "CHECKCARD", "AMZN Mktp US*", "XXXX", "REFUND", "ZELLE TO", "£", "€"):
        assert noise in texts, noise
    # The rules are good but not perfect on it, so a model has something to learn.
    hits = sum(categorize(anonymize_text(e.text)).label == e.label for e in generate_transactions(1200, 5))
    assert 0.7 < hits / 1200 < 0.99


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def test_user_csv_description_amount_optional_date_and_category(tmp_path):
    path = write(
        tmp_path / "mine.csv",
        "date,description,amount,category\n"
        "2024-01-15,SQ *STARBUCKS #1234 SEATTLE WA,-6.50,Food & Dining\n"
        "2024-01-16,SHELL OIL 57444,-40.00,fuel\n"
        "2024-01-17,NETFLIX.COM,-15.49,\n"  # no category: left out, counted
        "2024-01-18,PAYROLL ACME,+2450.00,salary\n",
    )
    errors = RowErrors()
    rows = load_source(SourceConfig(name="transactions", path=str(path)), errors)
    assert [(e.text, e.label) for e in rows] == [
        ("SQ *STARBUCKS #1234 SEATTLE WA -6.50", "food_dining"),
        ("SHELL OIL 57444 -40.00", "transport"),
        ("PAYROLL ACME +2450.00", "income"),
    ]
    assert rows[0].meta == {"line": 2, "date": "2024-01-15", "amount": "-6.50"}
    assert errors.filtered == {"transactions: rows without a category": 1}


def test_unknown_category_names_file_line_and_column(tmp_path):
    path = write(tmp_path / "mine.csv", "description,amount,category\nSTARBUCKS,-6.50,food\nBITCOIN ATM,-50,crypto\n")
    with pytest.raises(DataError, match="unknown category") as err:
        load_source(SourceConfig(name="transactions", path=str(path)), RowErrors())
    assert f"{path}:3: category" in str(err.value) and "'crypto'" in str(err.value)
    with pytest.raises(ConfigError, match="label_map values must be category ids"):
        load_source(SourceConfig(name="transactions", path=str(path), label_map={"crypto": "coins"}), RowErrors())
    rows = load_source(SourceConfig(name="transactions", path=str(path), label_map={"crypto": "other"}), RowErrors())
    assert [e.label for e in rows] == ["food_dining", "other"]


def test_the_shared_file_maps_onto_the_taxonomy(shared_data):
    path = shared_data / "transaction_categorization" / "sample_transactions_1500.csv"
    cfg = SourceConfig(name="transactions", path=str(path), text_column="text", label_column="label")
    rows = load_source(cfg, RowErrors())
    assert len(rows) == 1600
    assert Counter(e.label for e in rows) == {
        "food_dining": 250, "travel": 150, "shopping": 150, "transport": 150, "health": 150, "groceries": 150,
        "bills_utilities": 150, "entertainment": 150, "other": 300,  # education (150) and others (150)
    }  # fmt: skip


def test_rules_teacher_explains_with_the_keyword_and_passes_validation():
    teacher = load_teacher(TeacherConfig(name="rules"))
    labels = TASKS.get("transactions").labels
    for ex in generate_transactions(120, 7):
        text = anonymize_text(ex.text)
        completion = teacher.explain(text, ex.label, random.Random(0))
        assert validate_completion(completion, text, ex.label, ValidationConfig(), labels) is None, completion
        match = categorize(text)
        if match.keyword:
            assert f'"{match.keyword}"' in completion
    blind = load_teacher(TeacherConfig(name="rules", mode="blind")).explain(
        "NETFLIX.COM 15.49", None, random.Random(0)
    )
    assert blind.endswith("<answer>entertainment</answer>")


def test_rules_baseline_uses_the_same_rules():
    baseline = BASELINES.get("rules")(0)
    assert (baseline.uses_train, baseline.task) == (False, "transactions")
    labels = TASKS.get("transactions").labels
    guesses = baseline.predict(["SQ *STARBUCKS #1234 6.50", "LA TAQUERIA 12.30"], labels)
    assert [(g.label, g.reasoning) for g in guesses] == [
        ("food_dining", "keyword: STARBUCKS"),
        ("other", "no keyword matched"),
    ]
    # A matched keyword makes its category the most likely; no keyword leaves all twelve as likely.
    assert max(guesses[0].probabilities, key=guesses[0].probabilities.get) == "food_dining"
    assert set(guesses[1].probabilities.values()) == {1 / len(labels)}


def test_teachers_and_sources_must_fit_the_task(tmp_path):
    recipe = write(tmp_path / "r.yaml", "task: transactions\ndata:\n  teacher: {name: lexicon}\n")
    with pytest.raises(ConfigError, match="the lexicon teacher explains sentiment only") as err:
        build_dataset(load_config(recipe, [f"output_dir={tmp_path}"]))
    assert f"{recipe}:3: data.teacher.name" in str(err.value) and "openai|rules|vllm" in str(err.value)
    cfg = load_config(None, [f"output_dir={tmp_path}", "task=transactions", "data.teacher.name=rules"])
    with pytest.raises(ConfigError, match="source demo gives labels outside task transactions"):
        build_dataset(cfg)


def test_data_stage_on_synthetic_transactions(tmp_path):
    cfg = load_config("tiny-cpu-transactions", [f"output_dir={tmp_path}", "data.sources.0.num_examples=240"])
    result = build_dataset(cfg)
    assert result.counts["kept"] == 240 and result.report["task"] == "transactions" and result.report["anonymized"]
    rows = [json.loads(line) for line in Path(result.paths["train"]).read_text().splitlines()]
    assert {row["label"] for row in rows} == set(CATEGORY_IDS)
    for row in rows:
        assert row["messages"][-1]["content"].endswith(f"<answer>{row['label']}</answer>")
        assert row["messages"][1]["content"] == f"Transaction: {row['text']}"
    card = Path(result.paths["card"]).read_text()
    assert "# Transaction categorization with reasoning" in card and "**Anonymized.**" in card
    assert "`rules` teacher" in card and "Synthetic data" in card
