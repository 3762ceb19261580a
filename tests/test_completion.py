import pytest

from finsent.completion import LABELS, PromptConfig, build_messages, parse_completion, render_completion, strip_think


def test_render_then_parse_roundtrip():
    text = render_completion("  Sales rose 12%, a clear gain.  ", "positive")
    assert text == "<reasoning>Sales rose 12%, a clear gain.</reasoning><answer>positive</answer>"
    parsed = parse_completion(text)
    assert (parsed.label, parsed.reasoning, parsed.status, parsed.is_format_ok) == (
        "positive",
        "Sales rose 12%, a clear gain.",
        "ok",
        True,
    )


@pytest.mark.parametrize(
    ("text", "label", "status", "issue"),
    [
        # whitespace between and around blocks is allowed
        ("\n<reasoning>a b</reasoning>\n<answer>neutral</answer>\n", "neutral", "ok", None),
        # thinking blocks from reasoning models are stripped before parsing
        ("<think>hmm</think><reasoning>a</reasoning><answer>negative</answer>", "negative", "ok", None),
        # wrong case: label recovered, but not format-compliant
        ("<reasoning>a</reasoning><answer>Positive</answer>", "positive", "fallback", "answer_case"),
        # text after </answer>
        (
            "<reasoning>a</reasoning><answer>negative</answer> Hope this helps",
            "negative",
            "fallback",
            "text_outside_tags",
        ),
        # two answers: the first valid answer block wins, flagged
        (
            "<reasoning>a</reasoning><answer>positive</answer><answer>negative</answer>",
            "positive",
            "fallback",
            "repeated_tags",
        ),
        # the answer inside the reasoning
        (
            "<reasoning>so <answer>negative</answer></reasoning><answer>negative</answer>",
            "negative",
            "fallback",
            "repeated_tags",
        ),
        # the label word alone: last label word in the text
        ("positive", "positive", "fallback", "no_answer_tag"),
        ("It could be positive but overall negative.", "negative", "fallback", "no_answer_tag"),
        # answer before reasoning
        ("<answer>neutral</answer><reasoning>a</reasoning>", "neutral", "fallback", "wrong_order"),
        # an answer outside the label set and no label word anywhere
        ("<reasoning>a</reasoning><answer>bullish</answer>", None, "missing", "answer_not_in_labels"),
        ("", None, "missing", "no_answer_tag"),
        # missing reasoning block
        ("<answer>positive</answer>", "positive", "fallback", "no_reasoning_tag"),
    ],
)
def test_parse_flags_every_broken_format(text, label, status, issue):
    parsed = parse_completion(text)
    assert (parsed.label, parsed.status, parsed.issue) == (label, status, issue)
    assert parsed.is_format_ok is (status == "ok")


def test_custom_label_set():
    labels = ("food", "travel")
    assert parse_completion("<reasoning>coffee</reasoning><answer>food</answer>", labels).label == "food"
    assert parse_completion("<reasoning>x</reasoning><answer>positive</answer>", labels).status == "missing"


def test_strip_think_handles_a_dangling_close_tag():
    assert strip_think("reasoning that began in the prompt</think>\n<answer>x</answer>") == "\n<answer>x</answer>"
    assert strip_think("no think here") == "no think here"


def test_build_messages_uses_the_shared_prompt():
    prompt = PromptConfig(system="S", user_template="Headline: {text}")
    assert build_messages("Profit up", prompt) == [
        {"role": "system", "content": "S"},
        {"role": "user", "content": "Headline: Profit up"},
    ]
    assert set(LABELS) == {"positive", "negative", "neutral"}
