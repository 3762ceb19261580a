"""The anonymizer on realistic bank-statement strings: personal data masked, merchants and amounts kept."""

import json
from pathlib import Path

import pytest

from finsent.anonymize import anonymize_text
from finsent.config import load_config
from finsent.data import build_dataset
from finsent.data.readers import Example, InstructExample, anonymize_examples, example_id


@pytest.mark.parametrize(
    ("raw", "masked"),
    [
        ("ZELLE TO JOHN SMITH ON 01/15 REF # BAC8812 -120.00", "ZELLE TO [NAME] ON 01/15 REF # BAC8812 -120.00"),
        ("Zelle payment from Robert O'Neil Conf# 8H2K 45.00", "Zelle payment from [NAME] Conf# 8H2K 45.00"),
        ("VENMO *JANE DOE 25.00", "VENMO *[NAME] 25.00"),
        ("CASH APP*DAVID LEE*PAYMENT", "CASH APP*[NAME]*PAYMENT"),
        ("Payment to J. Smith", "Payment to [NAME]"),
        ("TRANSFER FROM MARIA GARCIA-LOPEZ +1,200.00", "TRANSFER FROM [NAME] +1,200.00"),
        ("Interac e-Transfer to Sam Lee", "Interac e-Transfer to [NAME]"),
        ("SEPA TRANSFER TO DE89 3704 0044 0532 0130 00 MAX MUSTERMANN", "SEPA TRANSFER TO [IBAN] [NAME]"),
        ("IBAN GB82WEST12345698765432 STANDING ORDER", "IBAN [IBAN] STANDING ORDER"),
        ("POS 4921 XXXX XXXX 1234 STARBUCKS", "POS [CARD] STARBUCKS"),
        ("4921 8812 3344 1234 AMAZON 12.99", "[CARD] AMAZON 12.99"),
        ("************1234 TESCO STORES 3021", "[CARD] TESCO STORES 3021"),
        ("PURCHASE ON 01/15 TARGET T-1234 CARD 5521", "PURCHASE ON 01/15 TARGET T-1234 CARD [CARD]"),
        ("PAYMENT TO CHASE CARD ENDING IN 1234", "PAYMENT TO CHASE CARD [CARD]"),
        ("ONLINE TRANSFER TO SAVINGS XXXXXX1234", "ONLINE TRANSFER TO SAVINGS [ACCOUNT]"),
        ("ACH DEBIT ACCOUNT NO. 987654321", "ACH DEBIT ACCOUNT NO. [ACCOUNT]"),
        ("TRANSFER FROM CHK 5678", "TRANSFER FROM CHK [ACCOUNT]"),
        ("CHECKCARD 0115 SHELL OIL 57444 TX 24435674015000000000000", "CHECKCARD 0115 SHELL OIL 57444 TX [ACCOUNT]"),
        ("PAYPAL *jane.doe@example.com 20.00", "PAYPAL *[EMAIL] 20.00"),
        ("SQ *BLUE BOTTLE COFFEE 877-555-0100 CA", "SQ *BLUE BOTTLE COFFEE [PHONE] CA"),
        ("REFUND call +1 (206) 555-0147", "REFUND call [PHONE]"),
        ("+44 20 7946 0958 MONZO", "[PHONE] MONZO"),
    ],
)  # fmt: skip
def test_personal_data_is_masked_by_type(raw: str, masked: str) -> None:
    assert anonymize_text(raw) == masked


@pytest.mark.parametrize(
    "kept",
    [
        "SQ *STARBUCKS #1234 SEATTLE WA 6.50",
        "AMZN Mktp US*2K3LX0QZ1 -34.99 USD",
        "TST* JOE'S DINER AUSTIN TX $23.10",
        "PAYROLL DIRECT DEP ACME CORP 2,450.00",
        "WHOLEFDS SEA 10105 -€1 234,56",
        "2024-01-15 UBER *TRIP HELP.UBER.COM 14.20",
        "ONLINE TRANSFER TO SAVINGS",
        "PAYMENT TO AMERICAN EXPRESS",  # a business after "payment to" is not a person
        "VENMO PAYMENT 1023456",
        "+120.00 REFUND AMAZON",
        "KFC PAYMENT 6256",
    ],
)
def test_merchants_amounts_and_dates_survive(kept: str) -> None:
    assert anonymize_text(kept) == kept


def test_masking_twice_changes_nothing() -> None:
    raw = "ZELLE TO JOHN SMITH 4921881233441234 john@x.com +1 206 555 0147 ACCT 12345678 DE89370400440532013000"
    once = anonymize_text(raw)
    assert anonymize_text(once) == once
    assert not any(secret in once for secret in ("JOHN", "SMITH", "4921", "john@", "555", "12345678", "DE89"))


def test_examples_get_masked_text_and_a_new_id() -> None:
    text = "VENMO *JANE DOE 25.00"
    ex = Example(example_id("transactions", text), text, "transfers", "transactions")
    (masked,) = anonymize_examples([ex])
    assert masked.text == "VENMO *[NAME] 25.00"
    assert masked.id == example_id("transactions", masked.text) != ex.id
    assert (masked.label, masked.source) == (ex.label, ex.source)


def test_instructions_get_their_answer_and_system_prompt_masked_too() -> None:
    ex = InstructExample("x", "Who got paid?", "qa", "instruct", answer="ZELLE TO JOHN SMITH", system="Mail a@b.com")
    (masked,) = anonymize_examples([ex])
    assert (masked.text, masked.answer, masked.system) == ("Who got paid?", "ZELLE TO [NAME]", "Mail [EMAIL]")


def test_no_personal_data_reaches_the_teacher_the_training_files_or_the_report(tmp_path: Path) -> None:
    rows = [
        ("ZELLE TO JOHN SMITH ON 01/15 REF # BAC8812", "-120.00", "Transfers"),
        ("VENMO *JANE DOE", "-25.00", "transfers"),
        ("POS 4921 XXXX XXXX 1234 STARBUCKS SEATTLE WA", "-6.50", "Food & Dining"),
        ("PAYPAL *jane.doe@example.com", "-20.00", "shopping"),
        ("SQ *BLUE BOTTLE COFFEE 877-555-0100 CA", "-4.75", "restaurants"),
        ("SEPA TRANSFER TO DE89 3704 0044 0532 0130 00 MAX MUSTERMANN", "-300.00", "transfers"),
        # A row with a bad amount: its error message (kept in the report) must be masked as well.
        ("ZELLE TO MARY JONES 4921881233441234", "twelve", "transfers"),
    ]
    path = tmp_path / "statement.csv"
    lines = ["date,description,amount,category"]
    lines += [f'2024-01-{i + 10},"{d}",{a},{c}' for i, (d, a, c) in enumerate(rows)]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    cfg = load_config(
        None,
        [
            f"output_dir={tmp_path / 'run'}",
            "task=transactions",
            "data.teacher.name=rules",
            "data.on_error=skip",
            "data.dedup.use_near=false",
            "data.validation.min_text_chars=4",
            "data.split={validation: 0.0, test: 0.0}",
            f"data.sources=[{{name: transactions, path: '{path}'}}]",
        ],
    )
    result = build_dataset(cfg)
    assert result.counts["kept"] == 6 and result.report["skipped_rows"] == {"bad_amount": 1}
    written = "".join(
        p.read_text() for p in Path(result.output_dir).iterdir() if p.suffix in (".jsonl", ".json", ".md")
    )
    for secret in (
        "JOHN",
        "SMITH",
        "JANE",
        "DOE",
        "MARY",
        "JONES",
        "4921",
        "jane.doe",
        "877-555",
        "DE89",
        "MUSTERMANN",
    ):
        assert secret not in written, secret
    texts = [json.loads(line)["text"] for line in (Path(result.output_dir) / "train.jsonl").read_text().splitlines()]
    assert "[CARD] STARBUCKS SEATTLE WA -6.50" in " | ".join(texts)
    assert "ZELLE TO [NAME] ON 01/15 REF # BAC8812 -120.00" in texts
