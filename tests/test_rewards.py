import doctest

import pytest

import finsent.rewards
from finsent.completion import PromptConfig, build_messages
from finsent.errors import DataError
from finsent.rewards import (
    REWARDS,
    argued_polarity,
    consistency_reward,
    correctness_reward,
    format_reward,
    reasoning_quality_reward,
)

TEXT = "Operating profit rose to EUR 13.1 mn from EUR 8.7 mn in the corresponding period in 2007."
GOOD = "Operating profit rose to 13.1 mn from 8.7 mn, a clear gain for investors, so the sentiment is positive."
ORDER = ("correctness", "format", "reasoning_quality", "consistency")


def score_all(completion, label="positive", text=TEXT, **kwargs):
    return tuple(REWARDS.get(name)([completion], label=[label], text=[text], **kwargs)[0] for name in ORDER)


@pytest.mark.parametrize(
    ("completion", "expected"),
    [
        # (correctness, format, reasoning_quality, consistency)
        pytest.param(f"<reasoning>{GOOD}</reasoning><answer>positive</answer>", (1, 1, 1, 1), id="good"),
        pytest.param(f"<reasoning>{GOOD}</reasoning><answer>negative</answer>", (0, 1, 1, 0), id="wrong_answer"),
        pytest.param("<reasoning></reasoning><answer>positive</answer>", (1, 1, 0, 0), id="empty_reasoning"),
        pytest.param("<reasoning>   \n </reasoning><answer>positive</answer>", (1, 1, 0, 0), id="blank_reasoning"),
        pytest.param(
            f"<reasoning>{GOOD}</reasoning><answer>positive</answer><answer>negative</answer>",
            (0, 0, 1, 0),
            id="two_answers",
        ),
        pytest.param(
            f"<reasoning>{GOOD}</reasoning><answer>positive</answer><answer>positive</answer>",
            (0, 0, 1, 0),
            id="same_answer_twice",
        ),
        pytest.param(
            f"<reasoning>{GOOD} <answer>positive</answer></reasoning>", (0, 0, 0, 0), id="answer_inside_reasoning"
        ),
        pytest.param(
            f"<reasoning>{GOOD} <answer>positive</answer></reasoning><answer>positive</answer>",
            (0, 0, 0, 0),
            id="answer_inside_and_after_reasoning",
        ),
        pytest.param(
            "<reasoning>Profit rose. Profit rose. Profit rose. Profit rose.</reasoning><answer>positive</answer>",
            (1, 1, 0, 1),
            id="repetition",
        ),
        pytest.param(
            "<reasoning>Profit rose 13.1 mn.\n\n\n            \n</reasoning><answer>positive</answer>",
            (1, 1, 0, 0),
            id="whitespace_padding",
        ),
        pytest.param(
            f"<reasoning>{GOOD} Profit rose to 13.1 mn. Profit rose to 13.1 mn. Profit rose to 13.1 mn."
            "</reasoning><answer>positive</answer>",
            (1, 1, 0, 1),
            id="padding_by_repeating_a_sentence",
        ),
        pytest.param(f"<reasoning>{GOOD}</reasoning><answer>Positive</answer>", (1, 0.5, 1, 1), id="wrong_case"),
        pytest.param(f"<reasoning>{GOOD}</reasoning><answer>POSITIVE</answer>", (1, 0.5, 1, 1), id="upper_case"),
        pytest.param(
            f"<reasoning>{GOOD}</reasoning><answer>positive</answer> Actually, negative.",
            (1, 0.5, 1, 1),
            id="text_after_answer",
        ),
        pytest.param(
            f"Let me think. <reasoning>{GOOD}</reasoning><answer>positive</answer>",
            (1, 0.5, 1, 1),
            id="text_before_reasoning",
        ),
        pytest.param(
            f"<reasoning>{GOOD}</reasoning><answer>positive, clearly</answer>",
            (0, 0.5, 1, 0),
            id="extra_words_in_answer",
        ),
        pytest.param(f"<reasoning>{GOOD}</reasoning><answer>bullish</answer>", (0, 0.5, 1, 0), id="unknown_label"),
        pytest.param("positive", (0, 0, 0, 0), id="label_word_alone"),
        pytest.param("<answer>positive</answer>", (1, 0, 0, 0), id="answer_without_reasoning"),
        pytest.param(f"<answer>positive</answer><reasoning>{GOOD}</reasoning>", (0, 0, 1, 0), id="answer_first"),
        pytest.param(f"{GOOD} <answer>positive</answer>", (1, 0, 0, 0), id="reasoning_without_tags"),
        pytest.param("", (0, 0, 0, 0), id="empty"),
        pytest.param(f"<reasoning>{TEXT}</reasoning><answer>positive</answer>", (1, 1, 0, 1), id="copy_of_input"),
        pytest.param(
            f"<reasoning>{TEXT} So positive.</reasoning><answer>positive</answer>",
            (1, 1, 2 / 19 / 0.5, 1),
            id="copy_of_input_plus_label",
        ),
        pytest.param(
            "<reasoning>The company did well and investors should be pleased, so positive.</reasoning>"
            "<answer>positive</answer>",
            (1, 1, 0.5, 1),
            id="ungrounded",
        ),
        pytest.param(
            "<reasoning>Profit rose, so the sentiment is positive.</reasoning><answer>positive</answer>",
            (1, 1, 0.5 * 0.7 + 0.5 * (0 + 1) / 2, 1),
            id="short_but_grounded_terms_no_number",
        ),
        pytest.param(
            f"<think>\nok\n</think>\n<reasoning>{GOOD}</reasoning><answer>positive</answer>",
            (1, 1, 1, 1),
            id="think_block_stripped",
        ),
        pytest.param(
            "<reasoning>Operating profit rose to 13.1 mn, a strong gain.</reasoning><answer>negative</answer>",
            (0, 1, 0.5 * 0.9 + 0.5, 0),
            id="reasoning_argues_the_other_way",
        ),
    ],
)
def test_scores_against_exploits(completion, expected):
    assert score_all(completion) == pytest.approx(expected)


def test_copy_of_the_system_prompt_scores_no_reasoning_quality():
    prompt = build_messages(TEXT, PromptConfig())
    system = prompt[0]["content"]
    completion = [{"role": "assistant", "content": f"<reasoning>{system}</reasoning><answer>positive</answer>"}]
    assert reasoning_quality_reward([completion], text=[TEXT], prompts=[prompt]) == [0.0]


def test_conversational_and_string_completions_score_the_same():
    text = f"<reasoning>{GOOD}</reasoning><answer>Positive</answer>"
    conversational = [{"role": "assistant", "content": text}]
    assert score_all(conversational) == score_all(text) == (1, 0.5, 1, 1)


def test_accepts_the_keyword_arguments_grpo_trainer_passes():
    """GRPOTrainer calls each reward with prompts, completion_ids, trainer_state, log hooks and every column."""
    prompt = build_messages(TEXT, PromptConfig())
    completion = [{"role": "assistant", "content": f"<reasoning>{GOOD}</reasoning><answer>positive</answer>"}]
    kwargs = {
        "prompts": [prompt, prompt],
        "completion_ids": [[1], [2]],
        "trainer_state": None,
        "log_extra": lambda *a: None,
        "log_metric": lambda *a: None,
        "label": ["positive", "negative"],
        "text": [TEXT, TEXT],
        "id": ["a", "b"],
        "source": ["x", "x"],
    }
    assert [REWARDS.get(name)([completion, completion], **kwargs) for name in ORDER] == [
        [1.0, 0.0],
        [1.0, 1.0],
        [1.0, 1.0],
        [1.0, 1.0],
    ]


def test_input_text_falls_back_to_the_user_message():
    prompt = build_messages(TEXT, PromptConfig())
    completion = f"<reasoning>{GOOD}</reasoning><answer>positive</answer>"
    assert reasoning_quality_reward([completion], prompts=[prompt]) == [1.0]
    # grounding is judged against the input: the same reasoning for another text cites none of its terms or numbers
    other = build_messages("Shares in Nokia fell 3 % after the announcement.", PromptConfig())
    assert reasoning_quality_reward([completion], prompts=[other]) == [0.5]


def test_missing_columns_are_named():
    with pytest.raises(DataError, match="label"):
        correctness_reward(["<reasoning>a</reasoning><answer>positive</answer>"])
    with pytest.raises(DataError, match="text"):
        reasoning_quality_reward(["<reasoning>a</reasoning><answer>positive</answer>"])


@pytest.mark.parametrize(
    ("reasoning", "polarity"),
    [
        ("Operating profit rose and sales grew.", "positive"),
        ("Net sales fell and the company warned of layoffs.", "negative"),
        ("Operating profit did not fall.", "positive"),
        ("Sales did not grow. Profit rose and margins improved.", "positive"),
        ("Sales rose but margins fell.", "neutral"),
        ("None of the figures point either way; the label is neutral.", "neutral"),
        ("The text is neither positive nor negative.", "neutral"),
        ("There was no growth and no improvement.", "negative"),
    ],
)
def test_argued_polarity_handles_negation_and_clauses(reasoning, polarity):
    assert argued_polarity(reasoning) == polarity


def test_neutral_answer_needs_reasoning_that_argues_neither_way():
    neutral = "<reasoning>The company will publish its annual report on 12 March, a routine notice.</reasoning>"
    assert consistency_reward([neutral + "<answer>neutral</answer>"]) == [1.0]
    assert consistency_reward([neutral + "<answer>positive</answer>"]) == [0.0]


def test_registry_names_and_one_line_help():
    assert REWARDS.names() == sorted(ORDER)
    assert REWARDS.get("format") is format_reward
    assert all(REWARDS.help(name) for name in REWARDS.names())


def test_module_docstring_example_runs():
    assert doctest.testmod(finsent.rewards).failed == 0
