"""Prediction backends: one registry, one small interface, heavy imports only in the chosen backend's constructor.

``transformers`` runs any causal LM (hub id, local dir, LoRA on top) with batched greedy generation;
``llamacpp`` runs a GGUF through llama-cpp-python; ``openai`` calls any OpenAI-compatible server
(vLLM, Ollama, llama.cpp server, OpenAI).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Literal, Protocol

import openai
import torch
from transformers import PreTrainedModel, PreTrainedTokenizerBase
from transformers.utils.chat_template_utils import render_jinja_template

from finsent.config import ModelConfig
from finsent.errors import ConfigError, FinsentError
from finsent.modeling import load_model, load_tokenizer
from finsent.registry import Registry

Messages = list[dict[str, str]]
Prompt = str | Messages


@dataclass(frozen=True)
class Completion:
    """One generated reply and what it cost."""

    text: str
    latency_ms: float  # from sending this prompt to having its reply (a batch's prompts share the batch's time)
    completion_tokens: int
    prompt_tokens: int = 0
    finish_reason: Literal["stop", "length"] = "stop"  # length: cut at the token limit


@dataclass(frozen=True)
class Sampling:
    """How to generate: ``max_new_tokens=None`` is the backend's own limit, ``temperature=0`` is greedy."""

    max_new_tokens: int | None = None
    temperature: float = 0.0


GREEDY = Sampling()


class Backend(Protocol):
    """Turns prompts (a text, taken as one user message, or chat messages) into completions, in order."""

    def complete(self, prompts: Sequence[Prompt], sampling: Sampling = GREEDY) -> list[Completion]: ...


BackendFactory = Callable[[ModelConfig], Backend]
BACKENDS: Registry[BackendFactory] = Registry("backend")


def as_messages(prompt: Prompt) -> Messages:
    """Return chat messages: a bare text is one user message."""
    return [{"role": "user", "content": prompt}] if isinstance(prompt, str) else prompt


@BACKENDS.register("transformers")
def load_transformers(cfg: ModelConfig) -> TransformersBackend:
    """Any causal LM by hub id or path, LoRA adapters on top; batched greedy generation on CPU or GPU."""
    tokenizer = load_tokenizer(cfg.path, padding_side="left", trust_remote_code=cfg.trust_remote_code)
    model = load_model(
        cfg.path, adapter=cfg.adapter, dtype=cfg.dtype, device=cfg.device, trust_remote_code=cfg.trust_remote_code
    )
    return TransformersBackend(model, tokenizer, cfg.max_new_tokens, cfg.batch_size)


class TransformersBackend:
    """A loaded causal LM and its tokenizer (also a model in training): greedy generation in batches."""

    def __init__(
        self, model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, max_new_tokens: int, batch_size: int
    ) -> None:
        self.model, self.tokenizer = model, tokenizer
        self.max_new_tokens, self.batch_size = max_new_tokens, batch_size
        eos = model.generation_config.eos_token_id
        self.eos_ids = set(eos if isinstance(eos, list) else [eos]) | {tokenizer.eos_token_id}

    def render(self, prompt: Prompt) -> str:
        """Return the chat-templated prompt; Qwen3's thinking is off, as in training."""
        return self.tokenizer.apply_chat_template(
            as_messages(prompt), tokenize=False, add_generation_prompt=True, enable_thinking=False
        )

    def complete(self, prompts: Sequence[Prompt], sampling: Sampling = GREEDY) -> list[Completion]:
        completions = []
        for i in range(0, len(prompts), self.batch_size):
            completions.extend(self._complete_batch(prompts[i : i + self.batch_size], sampling))
        return completions

    def _complete_batch(self, prompts: Sequence[Prompt], sampling: Sampling) -> list[Completion]:
        # Left padding keeps every prompt's last token next to its first generated token.
        batch = self.tokenizer(
            [self.render(p) for p in prompts],
            return_tensors="pt",
            padding=True,
            padding_side="left",
            add_special_tokens=False,
        ).to(self.model.device)
        is_sampled = sampling.temperature > 0
        start = time.perf_counter()
        with torch.inference_mode():
            output = self.model.generate(
                **batch,
                max_new_tokens=sampling.max_new_tokens or self.max_new_tokens,
                do_sample=is_sampled,
                temperature=sampling.temperature if is_sampled else None,
                top_p=None,
                top_k=None,
                pad_token_id=self.tokenizer.pad_token_id,
            )
        latency_ms = (time.perf_counter() - start) * 1000
        completions = []
        prompt_tokens = batch["attention_mask"].sum(1).tolist()
        for row, n_prompt in zip(output[:, batch["input_ids"].shape[1] :].tolist(), prompt_tokens, strict=True):
            ends = next((i + 1 for i, token in enumerate(row) if token in self.eos_ids), None)
            n_tokens = ends or len(row)
            text = self.tokenizer.decode(row[:n_tokens], skip_special_tokens=True)
            completions.append(Completion(text, latency_ms, n_tokens, n_prompt, "stop" if ends else "length"))
        return completions


@BACKENDS.register("openai")
class OpenAIBackend:
    """Any OpenAI-compatible chat-completions server (vLLM, Ollama, llama.cpp server, OpenAI); greedy."""

    def __init__(self, cfg: ModelConfig) -> None:
        self.cfg = cfg
        self.url = f"{cfg.base_url.rstrip('/')}/chat/completions"
        # The client refuses to start without a key; keyless servers (vLLM, llama.cpp) ignore this placeholder.
        api_key = os.environ.get(cfg.api_key_env) or "EMPTY"
        self.client = openai.OpenAI(base_url=cfg.base_url, api_key=api_key, max_retries=3, timeout=cfg.timeout_s)

    def complete(self, prompts: Sequence[Prompt], sampling: Sampling = GREEDY) -> list[Completion]:
        if not prompts:
            return []
        with ThreadPoolExecutor(max_workers=min(self.cfg.batch_size, len(prompts))) as pool:
            return list(pool.map(self._complete_one, prompts, [sampling] * len(prompts)))

    def _complete_one(self, prompt: Prompt, sampling: Sampling) -> Completion:
        start = time.perf_counter()
        try:
            completion = self.client.chat.completions.create(
                model=self.cfg.path,
                messages=as_messages(prompt),
                max_tokens=sampling.max_new_tokens or self.cfg.max_new_tokens,
                temperature=sampling.temperature,
            )
            choice = completion.choices[0]
            text = choice.message.content or ""
        except openai.APIStatusError as err:
            raise FinsentError(f"{self.url}: HTTP {err.status_code}: {err.response.text[:300]}") from err
        except openai.APIConnectionError as err:
            raise FinsentError(f"{self.url}: {type(err).__name__}: {err}") from err
        except (ValueError, AttributeError, IndexError, TypeError) as err:
            raise FinsentError(f"{self.url}: not a chat-completions reply ({err!r})") from err
        latency_ms = (time.perf_counter() - start) * 1000
        usage = completion.usage
        tokens = usage.completion_tokens if usage else None
        return Completion(
            text,
            latency_ms,
            int(tokens) if tokens is not None else len(text.split()),
            int(usage.prompt_tokens or 0) if usage else 0,
            "length" if choice.finish_reason == "length" else "stop",
        )


@BACKENDS.register("llamacpp")
class LlamaCppBackend:
    """A GGUF file through llama-cpp-python (pip install 'finsent[gguf]'); greedy, one prompt at a time."""

    def __init__(self, cfg: ModelConfig) -> None:
        try:
            from llama_cpp import Llama
        except ImportError as err:
            raise ConfigError("the llamacpp backend needs llama-cpp-python: pip install 'finsent[gguf]'") from err
        if not os.path.isfile(cfg.path):
            raise ConfigError("", field="path", expected="a GGUF file for the llamacpp backend", got=cfg.path)
        self.cfg = cfg
        self.llm = Llama(model_path=cfg.path, n_ctx=cfg.n_ctx, n_gpu_layers=cfg.n_gpu_layers, verbose=False)
        self.template = self.llm.metadata.get("tokenizer.chat_template")
        if not self.template:
            raise ConfigError("the GGUF has no chat template", path=cfg.path, field="tokenizer.chat_template")

    def render(self, prompt: Prompt) -> str:
        """Return the prompt rendered with the GGUF's own chat template, thinking off as in training."""
        # llama-cpp-python's chat handler cannot pass enable_thinking, so the template is rendered here.
        rendered, _ = render_jinja_template(
            [as_messages(prompt)], chat_template=self.template, add_generation_prompt=True, enable_thinking=False
        )
        return rendered[0]

    def complete(self, prompts: Sequence[Prompt], sampling: Sampling = GREEDY) -> list[Completion]:
        completions = []
        for prompt in prompts:
            start = time.perf_counter()
            out = self.llm.create_completion(
                self.render(prompt),
                max_tokens=sampling.max_new_tokens or self.cfg.max_new_tokens,
                temperature=sampling.temperature,
            )
            latency_ms = (time.perf_counter() - start) * 1000
            choice, usage = out["choices"][0], out["usage"]
            reason = "length" if choice["finish_reason"] == "length" else "stop"
            completions.append(
                Completion(choice["text"], latency_ms, usage["completion_tokens"], usage["prompt_tokens"], reason)
            )
        return completions


def load_backend(cfg: ModelConfig) -> Backend:
    """Return the backend ``cfg.backend`` built for ``cfg`` (unknown names list the known ones)."""
    return BACKENDS.get(cfg.backend)(cfg)
