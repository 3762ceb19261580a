"""validate_completion and validate_input on literal completions: one or more per rejection reason, and keepers."""

from __future__ import annotations

import pytest

from finsent.config import ValidationConfig
from finsent.data.validate import REJECTION_REASONS, copy_ratio, validate_completion, validate_input

TEXT = "In the third quarter of 2010 , net sales increased by 5.2 % to EUR 205.5 mn , and operating profit by 34.9 % ."
LONG = " ".join(f"point{i}" for i in range(201))
GOOD = "Net sales grew 5.2 % and operating profit 34.9 %, both clear gains for an investor."

REJECTED = [
    ("", "format:empty"),
    ("<think>only thinking</think>", "format:empty"),
    ("The sentiment is positive.", "format:no_answer_tag"),
    ("<reasoning>Sales grew strongly this quarter.</reasoning>", "format:no_answer_tag"),
    ("Sales grew strongly this quarter.<answer>positive</answer>", "format:no_reasoning_tag"),
    ("<answer>positive</answer><reasoning>Sales grew strongly this quarter.</reasoning>", "format:wrong_order"),
    (f"<reasoning>{GOOD}</reasoning><answer>positive</answer> Hope this helps!", "format:text_outside_tags"),
    (f"<reasoning>{GOOD}</reasoning><answer>positive</answer><answer>positive</answer>", "format:repeated_tags"),
    (f"<reasoning>{GOOD} <answer>x</answer></reasoning><answer>positive</answer>", "format:repeated_tags"),
    (f"<reasoning>{GOOD}</reasoning><answer>Positive</answer>", "format:answer_case"),
    (f"<reasoning>{GOOD}</reasoning><answer>bullish</answer>", "label_not_in_set"),
    (f"<reasoning>{GOOD}</reasoning><answer>negative</answer>", "answer_mismatch"),
    ("<reasoning>Sales grew.</reasoning><answer>positive</answer>", "reasoning_too_short"),
    (f"<reasoning>{LONG}</reasoning><answer>positive</answer>", "reasoning_too_long"),
    (f"<reasoning>{TEXT}</reasoning><answer>positive</answer>", "copies_input"),
    (f"<reasoning>{TEXT} Positive.</reasoning><answer>positive</answer>", "copies_input"),
    (f"<reasoning>{GOOD} {GOOD}</reasoning><answer>positive</answer>", "degenerate"),
    ("<reasoning>sales are up sales are up sales are up sales are up sales are up</reasoning>"
     "<answer>positive</answer>", "degenerate"),
]  # fmt: skip

KEPT = [
    f"<reasoning>{GOOD}</reasoning><answer>positive</answer>",
    f"  <reasoning>\n{GOOD}\n</reasoning>\n<answer>positive</answer>\n",
    f"<think>Let me look at the numbers.</think><reasoning>{GOOD}</reasoning><answer>positive</answer>",
    # Quoting a phrase and the figures of the input is citing, not copying.
    '<reasoning>The text says "net sales increased by 5.2 %" and operating profit rose 34.9 %, which is good news '
    "for shareholders.</reasoning><answer>positive</answer>",
]


@pytest.mark.parametrize(("completion", "reason"), REJECTED)
def test_rejects_with_reason(completion: str, reason: str) -> None:
    assert validate_completion(completion, TEXT, "positive", ValidationConfig()) == reason


def test_every_reason_has_a_literal_case() -> None:
    covered = {reason.split(":")[0] for _, reason in REJECTED} | {"text_too_short"}
    assert covered == set(REJECTION_REASONS)


@pytest.mark.parametrize("completion", KEPT)
def test_keeps_good_completions(completion: str) -> None:
    assert validate_completion(completion, TEXT, "positive", ValidationConfig()) is None


def test_custom_label_set() -> None:
    completion = f"<reasoning>{GOOD}</reasoning><answer>bullish</answer>"

    assert validate_completion(completion, TEXT, "bullish", ValidationConfig(), labels=("bullish", "bearish")) is None


def test_thresholds_come_from_config() -> None:
    short = "<reasoning>Sales grew.</reasoning><answer>positive</answer>"
    assert validate_completion(short, TEXT, "positive", ValidationConfig(min_reasoning_words=2)) is None
    quoted = f"<reasoning>{TEXT} Positive.</reasoning><answer>positive</answer>"
    assert validate_completion(quoted, TEXT, "positive", ValidationConfig(max_copy_ratio=1.0)) is None


def test_copy_ratio_counts_words_in_copied_three_word_runs() -> None:
    assert copy_ratio(TEXT, TEXT) == 1.0
    assert copy_ratio("Net sales were flat while margins improved a lot this year.", TEXT) == 0.0
    assert copy_ratio("net sales increased strongly overall this year, good.", TEXT) == pytest.approx(3 / 8)


def test_validate_input() -> None:
    cfg = ValidationConfig(min_text_chars=12)

    assert validate_input("   Up 5 %.   ", cfg) == "text_too_short"
    assert validate_input("Net sales rose 5 %.", cfg) is None
