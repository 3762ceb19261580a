"""An Ollama ``Modelfile`` built from the system prompt and chat template the model was trained with.

The TEMPLATE is derived by rendering the tokenizer's own chat template around marker strings, so Ollama sends the
model the exact text training used, Qwen3's empty ``<think>\\n\\n</think>\\n\\n`` prefix included. Stop tokens are
the model's end-of-turn tokens, checked not to occur inside a well-formed answer.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import Any

from transformers import PreTrainedTokenizerBase

from finsent.completion import LABELS, PromptConfig, render_completion
from finsent.errors import ConfigError

_SYSTEM = "@@FINSENT_SYSTEM@@"
_USER = "@@FINSENT_USER@@"
_REPLY = "@@FINSENT_REPLY@@"
EXAMPLE = "Net sales rose 12% to EUR 85 million."


def ollama_template(tokenizer: PreTrainedTokenizerBase) -> str:
    """Return an Ollama (Go text/template) TEMPLATE that renders a system and a user message as the tokenizer's chat
    template does with thinking off, as in training; ``{{ .Response }}`` marks where the answer goes."""

    def render(messages: list[dict[str, str]], add_generation_prompt: bool) -> str:
        return tokenizer.apply_chat_template(
            messages, tokenize=False, add_generation_prompt=add_generation_prompt, enable_thinking=False
        )

    user = {"role": "user", "content": _USER}
    with_system = render([{"role": "system", "content": _SYSTEM}, user], True)
    without_system = render([user], True)
    answered = render([user, {"role": "assistant", "content": _REPLY}], False)
    if not with_system.endswith(without_system) or "{{" in with_system or with_system.count(_SYSTEM) != 1:
        raise ConfigError(
            "cannot derive an Ollama TEMPLATE: the chat template does not render a system message as a separate "
            "block before the user's",
            field="chat_template",
        )
    system_block = with_system[: len(with_system) - len(without_system)]
    end_of_turn = answered.split(_REPLY, 1)[1] if _REPLY in answered else ""
    return (
        "{{ if .System }}"
        + system_block.replace(_SYSTEM, "{{ .System }}")
        + "{{ end }}"
        + without_system.replace(_USER, "{{ .Prompt }}")
        + "{{ .Response }}"
        + end_of_turn
    )


def stop_tokens(
    tokenizer: PreTrainedTokenizerBase, eos_token_ids: Iterable[int], extra: Iterable[str] = ()
) -> list[str]:
    """Return the end-of-turn tokens (and ``extra`` stops), each checked not to cut a well-formed answer short."""
    tokens = [tokenizer.convert_ids_to_tokens(i) for i in eos_token_ids]
    stops = list(dict.fromkeys([tokenizer.eos_token, *tokens, *extra]))
    answers = [render_completion("", label) for label in LABELS]
    for stop in stops:
        if not stop or any(stop in answer for answer in answers):
            raise ConfigError(
                "this stop would cut off a well-formed answer",
                field="export.ollama_parameters.stop",
                expected="strings that never occur in <reasoning>...</reasoning><answer>label</answer>",
                got=stop,
            )
    return stops


def build_modelfile(
    name: str,
    gguf_path: str,
    tokenizer: PreTrainedTokenizerBase,
    prompt: PromptConfig,
    parameters: Mapping[str, Any],
    eos_token_ids: Iterable[int],
) -> str:
    """Return the Modelfile text: FROM the GGUF, the derived TEMPLATE, the training SYSTEM prompt, PARAMETERs."""
    template = ollama_template(tokenizer)
    if '"""' in prompt.system or '"""' in template:
        raise ConfigError(
            "", field="prompt.system", expected='text without """ (Modelfile quoting)', got=prompt.system
        )
    extra = parameters.get("stop", [])
    stops = stop_tokens(tokenizer, eos_token_ids, [extra] if isinstance(extra, str) else extra)
    example = prompt.user_template.format(text=EXAMPLE)
    lines = [
        "# Built by `finsent export`: the chat template and system prompt the model was trained with.",
        f"# ollama create {name} -f Modelfile && ollama run {name} {json.dumps(example)}",
        f"FROM {gguf_path}",
        f'TEMPLATE """{template}"""',
        f'SYSTEM """{prompt.system}"""',
    ]
    lines += [f"PARAMETER {key} {_value(value)}" for key, value in parameters.items() if key != "stop"]
    lines += [f"PARAMETER stop {json.dumps(stop)}" for stop in stops]
    return "\n".join(lines) + "\n"


def _value(value: Any) -> str:
    return (
        json.dumps(value) if isinstance(value, str) else str(value).lower() if isinstance(value, bool) else str(value)
    )
