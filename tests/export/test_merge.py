"""The merge for real on the tiny Qwen3, and the reload gate catching deliberately broken merges."""

import json
import shutil

import pytest
import torch
from peft.tuners.tuners_utils import BaseTuner
from safetensors.torch import load_file

from finsent.calibration import Calibration, calibration_file, load_calibration, save_calibration
from finsent.completion import PromptConfig, build_messages
from finsent.config import ModelConfig, load_config
from finsent.errors import ConfigError
from finsent.export import export_model
from finsent.export.merge import ReloadGateError, check_merge, merge_adapter
from finsent.modeling import load_model
from finsent.tasks import TASKS

PROMPTS = [
    build_messages(text, PromptConfig())
    for text in ("Net sales rose 12% to EUR 85 million.", "The company cut 300 jobs after a loss.")
]
GATE = {"atol": 1e-3, "rtol": 1e-2, "max_new_tokens": 4, "device": "cpu"}


def export_cfg(tmp_path, model, *extra):
    overrides = [
        f"output_dir={tmp_path}",
        f"export.model={model}",
        "export.use_gguf=false",
        "export.gate_prompts=2",
        "export.compare_examples=2",
        "export.max_new_tokens=4",
        *extra,
    ]
    return load_config(None, overrides)


def test_merge_changes_the_lora_weights_keeps_tied_embeddings_and_passes_the_gate(
    tiny_model_dir, tiny_adapter_dir, tmp_path
):
    merged_dir = merge_adapter(tiny_adapter_dir, tmp_path / "merged")
    assert {"model.safetensors", "config.json", "tokenizer.json", "chat_template.jinja"} <= {
        p.name for p in merged_dir.iterdir()
    }
    base, merged = load_file(tiny_model_dir / "model.safetensors"), load_file(merged_dir / "model.safetensors")
    assert base.keys() == merged.keys() and "lm_head.weight" not in merged  # tied: saved once
    for name in base:
        is_lora_target = name.endswith("proj.weight")
        assert torch.equal(base[name], merged[name]) != is_lora_target, name
    reloaded = load_model(str(merged_dir), device="cpu")
    assert reloaded.lm_head.weight.data_ptr() == reloaded.model.embed_tokens.weight.data_ptr()

    report = check_merge(tiny_adapter_dir, merged_dir, PROMPTS, TASKS.get("sentiment"), **GATE)
    assert report.is_passed and report.max_abs_diff <= report.tolerance
    assert report.adapter_effect > 10 * report.tolerance  # the gate could see a merge that did nothing
    assert report.merged_compliance == report.adapter_compliance


def test_gate_catches_a_merge_that_silently_did_nothing(tiny_adapter_dir, tmp_path, monkeypatch):
    """A PEFT merge that drops the LoRA delta (unload instead of merge): the export stops before writing results."""
    monkeypatch.setattr(BaseTuner, "merge_and_unload", lambda self, **kwargs: self.unload())
    cfg = export_cfg(tmp_path, tiny_adapter_dir)
    with pytest.raises(ReloadGateError, match=r"merged.*reload gate: the merged model's logits differ"):
        export_model(cfg)
    out = tmp_path / "export"
    assert not (out / "result.json").exists() and not (out / "README.md").exists()


def test_gate_catches_lost_tied_embeddings(tiny_adapter_dir, tmp_path):
    """Saved without its tied lm_head: reloading untied initialises a fresh random head, which the gate must see."""
    merged_dir = merge_adapter(tiny_adapter_dir, tmp_path / "merged")
    config = json.loads((merged_dir / "config.json").read_text())
    (merged_dir / "config.json").write_text(json.dumps({**config, "tie_word_embeddings": False}))
    with pytest.raises(ReloadGateError, match="tied embeddings"):
        check_merge(tiny_adapter_dir, merged_dir, PROMPTS, TASKS.get("sentiment"), **GATE)


def test_export_of_an_adapter_writes_merged_gate_comparison_card_and_result(tiny_adapter_dir, tmp_path):
    result = export_model(export_cfg(tmp_path, tiny_adapter_dir))
    out = tmp_path / "export"
    assert result.output_dir == str(out) and result.gate["is_passed"] and result.gguf == {}
    assert json.loads((out / "gate.json").read_text())["num_prompts"] == 2
    assert [row["artifact"] for row in result.comparison] == ["merged-float32"]
    row = result.comparison[0]
    assert row["n"] == 2 and row["size_bytes"] == (out / "merged" / "model.safetensors").stat().st_size
    assert 0 <= row["format_compliance"] <= 1 and row["load_s"] > 0
    assert "| merged-float32 | transformers |" in (out / "comparison.md").read_text()
    assert (out / "comparison.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    card = (out / "README.md").read_text()
    assert "## Reload gate" in card and "| merged-float32 |" in card and "base_model:" in card
    assert json.loads((out / "result.json").read_text())["stage"] == "export"


def test_export_carries_the_models_calibration_to_the_merged_model(tiny_adapter_dir, tmp_path):
    adapter = tmp_path / "adapter"
    shutil.copytree(tiny_adapter_dir, adapter)
    save_calibration(Calibration(1.8, "data_validation", 40), adapter / "calibration.json")
    result = export_model(export_cfg(tmp_path / "run", adapter, "export.compare_examples=0"))
    merged = ModelConfig(path=result.merged_dir)
    assert load_calibration(merged) == Calibration(1.8, "data_validation", 40)
    assert result.paths["calibration_merged"] == str(calibration_file(merged))
    # Without one beside the model, there is nothing to carry.
    plain = export_model(export_cfg(tmp_path / "plain", tiny_adapter_dir, "export.compare_examples=0"))
    assert load_calibration(ModelConfig(path=plain.merged_dir)).temperature == 1.0


def test_export_of_a_full_model_dir_skips_the_merge_and_the_gate(tiny_model_dir, tmp_path):
    result = export_model(export_cfg(tmp_path, tiny_model_dir, "export.compare_examples=0"))
    assert result.gate is None and result.comparison == []
    assert (tmp_path / "export" / "merged" / "model.safetensors").is_file()
    assert "nothing was merged" in (tmp_path / "export" / "README.md").read_text()


def test_export_errors_name_the_field(tmp_path):
    with pytest.raises(ConfigError, match=r"export\.model: expected an adapter or model dir, got '.*missing'"):
        export_model(export_cfg(tmp_path, tmp_path / "missing"))
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text("export:\n  gate_prompts: 2\n  ollama_parameters: {temprature: 0}\n")
    with pytest.raises(ConfigError, match=r"recipe\.yaml:3: export\.ollama_parameters\.temprature: unknown Ollama"):
        load_config(recipe)
    with pytest.raises(ConfigError, match=r"export\.ollama_gguf: expected one of BF16\|Q8_0, got 'Q5_K_M'"):
        load_config(None, ["export.quantizations=[Q8_0]"])
