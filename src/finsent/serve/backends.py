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
from typing import Any, Literal, Protocol

import httpx

from finsent.config import ModelConfig
from finsent.errors import ConfigError, FinsentError
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
class TransformersBackend:
    """Any causal LM by hub id or path, LoRA adapters on top; batched greedy generation on CPU or GPU."""

    def __init__(self, cfg: ModelConfig) -> None:
        from finsent.modeling import load_model, load_tokenizer

        self.cfg = cfg
        self.tokenizer = load_tokenizer(cfg.path, padding_side="left", trust_remote_code=cfg.trust_remote_code)
        self.model = load_model(
            cfg.path, adapter=cfg.adapter, dtype=cfg.dtype, device=cfg.device, trust_remote_code=cfg.trust_remote_code
        )
        eos = self.model.generation_config.eos_token_id
        self.eos_ids = set(eos if isinstance(eos, list) else [eos]) | {self.tokenizer.eos_token_id}

    def render(self, prompt: Prompt) -> str:
        """Return the chat-templated prompt; Qwen3's thinking is off, as in training."""
        return self.tokenizer.apply_chat_template(
            as_messages(prompt), tokenize=False, add_generation_prompt=True, enable_thinking=False
        )

    def complete(self, prompts: Sequence[Prompt], sampling: Sampling = GREEDY) -> list[Completion]:
        import torch

        if not prompts:
            return []
        # Left padding keeps every prompt's last token next to its first generated token.
        batch = self.tokenizer(
            [self.render(p) for p in prompts], return_tensors="pt", padding=True, add_special_tokens=False
        ).to(self.model.device)
        is_sampled = sampling.temperature > 0
        start = time.perf_counter()
        with torch.inference_mode():
            output = self.model.generate(
                **batch,
                max_new_tokens=sampling.max_new_tokens or self.cfg.max_new_tokens,
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
        api_key = os.environ.get(cfg.api_key_env)
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        # Retries here cover failed connections only; a request that reached the server and failed is an error.
        self.client = httpx.Client(
            base_url=cfg.base_url.rstrip("/"),
            headers=headers,
            timeout=cfg.timeout_s,
            transport=httpx.HTTPTransport(retries=3),
        )

    def complete(self, prompts: Sequence[Prompt], sampling: Sampling = GREEDY) -> list[Completion]:
        if not prompts:
            return []
        with ThreadPoolExecutor(max_workers=min(self.cfg.batch_size, len(prompts))) as pool:
            return list(pool.map(self._complete_one, prompts, [sampling] * len(prompts)))

    def _complete_one(self, prompt: Prompt, sampling: Sampling) -> Completion:
        payload = {
            "model": self.cfg.path,
            "messages": as_messages(prompt),
            "max_tokens": sampling.max_new_tokens or self.cfg.max_new_tokens,
            "temperature": sampling.temperature,
        }
        url = f"{self.cfg.base_url.rstrip('/')}/chat/completions"
        start = time.perf_counter()
        try:
            response = self.client.post("/chat/completions", json=payload)
            response.raise_for_status()
            body: dict[str, Any] = response.json()
            choice = body["choices"][0]
            text = choice["message"]["content"] or ""
        except httpx.HTTPStatusError as err:
            raise FinsentError(f"{url}: HTTP {err.response.status_code}: {err.response.text[:300]}") from err
        except httpx.HTTPError as err:
            raise FinsentError(f"{url}: {type(err).__name__}: {err}") from err
        except (ValueError, KeyError, IndexError, TypeError) as err:
            raise FinsentError(f"{url}: not a chat-completions reply ({err!r})") from err
        latency_ms = (time.perf_counter() - start) * 1000
        usage = body.get("usage") or {}
        tokens = usage.get("completion_tokens")
        return Completion(
            text,
            latency_ms,
            int(tokens) if tokens is not None else len(text.split()),
            int(usage.get("prompt_tokens") or 0),
            "length" if choice.get("finish_reason") == "length" else "stop",
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
        from transformers.utils.chat_template_utils import render_jinja_template

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
