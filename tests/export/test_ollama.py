"""The Modelfile against the real Qwen3 tokenizer: Ollama must send exactly the text training rendered."""

import re

import pytest
from transformers import AutoTokenizer

from finsent.completion import LABELS, PromptConfig, build_messages, render_completion
from finsent.errors import ConfigError
from finsent.export.ollama import build_modelfile, ollama_template, stop_tokens

EOS_IDS = [151645, 151643]  # Qwen3's generation_config: <|im_end|>, <|endoftext|>


@pytest.fixture(scope="module")
def tokenizer(qwen3_tokenizer_dir):
    return AutoTokenizer.from_pretrained(qwen3_tokenizer_dir)


def render_go(template: str, system: str, prompt: str) -> str:
    """Render the three Go text/template actions the TEMPLATE uses, as Ollama does for a new reply (no Go here).

    ``{{ if .System }}...{{ end }}`` keeps its body when there is a system prompt; ``{{ .System }}`` and
    ``{{ .Prompt }}`` insert the values; the reply is generated from ``{{ .Response }}`` on, so the text stops there.
    """
    assert set(re.findall(r"{{.*?}}", template)) == {
        "{{ if .System }}",
        "{{ end }}",
        "{{ .System }}",
        "{{ .Prompt }}",
        "{{ .Response }}",
    }
    text = re.sub(r"{{ if .System }}(.*?){{ end }}", lambda m: m.group(1) if system else "", template, flags=re.DOTALL)
    return text.replace("{{ .System }}", system).replace("{{ .Prompt }}", prompt).split("{{ .Response }}")[0]


def test_template_renders_exactly_the_training_prompt_with_the_empty_think_block(tokenizer):
    prompt = PromptConfig()
    messages = build_messages("Operating profit fell to EUR 3.1 million from EUR 5.4 million.", prompt)
    trained = tokenizer.apply_chat_template(
        messages, tokenize=False, add_generation_prompt=True, enable_thinking=False
    )
    template = ollama_template(tokenizer)
    assert trained.endswith("<|im_start|>assistant\n<think>\n\n</think>\n\n")
    assert render_go(template, messages[0]["content"], messages[1]["content"]) == trained
    user_only = tokenizer.apply_chat_template(
        messages[1:], tokenize=False, add_generation_prompt=True, enable_thinking=False
    )
    assert render_go(template, "", messages[1]["content"]) == user_only
    assert template.endswith("{{ .Response }}<|im_end|>\n")


def test_stop_tokens_end_the_turn_without_cutting_the_answer(tokenizer):
    stops = stop_tokens(tokenizer, EOS_IDS)
    assert stops == ["<|im_end|>", "<|endoftext|>"]
    for label in LABELS:
        answer = render_completion("Sales rose 12%, so the outlook improved.", label)
        assert not any(stop in answer for stop in stops)
    with pytest.raises(ConfigError, match=r"export\.ollama_parameters\.stop: this stop would cut off .*'</answer>'"):
        stop_tokens(tokenizer, EOS_IDS, ["</answer>"])


def test_modelfile_has_from_template_system_and_parameters(tokenizer):
    prompt = PromptConfig(system="You label financial text.")
    text = build_modelfile(
        "fin-tiny",
        "./gguf/fin-tiny-Q5_K_M.gguf",
        tokenizer,
        prompt,
        {"temperature": 0.0, "num_ctx": 2048, "stop": "<|fim_pad|>"},
        EOS_IDS,
    )
    lines = text.splitlines()
    assert "FROM ./gguf/fin-tiny-Q5_K_M.gguf" in lines
    assert 'SYSTEM """You label financial text."""' in lines
    assert f'TEMPLATE """{ollama_template(tokenizer)}"""' in text
    assert lines[-5:] == [
        "PARAMETER temperature 0.0",
        "PARAMETER num_ctx 2048",
        'PARAMETER stop "<|im_end|>"',
        'PARAMETER stop "<|endoftext|>"',
        'PARAMETER stop "<|fim_pad|>"',
    ]
    assert "ollama create fin-tiny -f Modelfile && ollama run fin-tiny" in text
    with pytest.raises(ConfigError, match="prompt.system"):
        build_modelfile("x", "./x.gguf", tokenizer, PromptConfig(system='Say """hi"""'), {}, EOS_IDS)
