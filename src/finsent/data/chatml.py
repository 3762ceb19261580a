"""ChatML rows: the system prompt, the user template around the text, and the teacher's completion."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from finsent.completion import PromptConfig, build_messages
from finsent.data.instruct import conversation
from finsent.data.readers import Example, InstructExample


@dataclass(frozen=True)
class ReasonedExample(Example):
    """An example with the validated completion the teacher wrote for it."""

    completion: str = ""


def to_chatml(example: ReasonedExample, prompt: PromptConfig) -> dict[str, Any]:
    """Return the JSONL row for ``example``: ``messages`` plus ``id``, ``label``, ``source`` and ``text``."""
    messages = [*build_messages(example.text, prompt), {"role": "assistant", "content": example.completion}]
    return {
        "id": example.id,
        "messages": messages,
        "label": example.label,
        "source": example.source,
        "text": example.text,
    }


def instruct_to_chatml(example: InstructExample, prompt: PromptConfig) -> dict[str, Any]:
    """Return the JSONL row of an instruction: ``messages`` (the answer as the assistant turn) plus ``id``,
    ``task_type``, ``source``, ``text``, ``answer`` and ``system`` (the row's own system prompt, or empty)."""
    return {
        "id": example.id,
        "messages": conversation(example, prompt),
        "task_type": example.label,
        "source": example.source,
        "text": example.text,
        "answer": example.answer,
        "system": example.system,
    }
