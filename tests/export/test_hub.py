"""``--push``: one commit with the merged model at the repo root, the GGUFs, Modelfile, card and comparison.

The hub is mocked (it cannot be reached from tests): ``HfApi.create_repo`` and ``create_commit`` record their calls.
"""

import httpx
import huggingface_hub
import pytest

from finsent.cli import main
from finsent.errors import FinsentError
from finsent.export.hub import push_export


@pytest.fixture
def hub(monkeypatch):
    calls = {}

    def create_repo(self, repo_id, **kwargs):
        calls["repo"] = (repo_id, kwargs)
        return f"https://huggingface.co/{repo_id}"

    def create_commit(self, repo_id, operations, **kwargs):
        calls["files"] = {op.path_in_repo: op.path_or_fileobj for op in operations}
        calls["message"] = kwargs["commit_message"]

    monkeypatch.setattr(huggingface_hub.HfApi, "create_repo", create_repo)
    monkeypatch.setattr(huggingface_hub.HfApi, "create_commit", create_commit)
    return calls


def test_export_push_uploads_model_card_and_comparison(tiny_adapter_dir, tmp_path, hub, capsys):
    argv = ["export", "--model", str(tiny_adapter_dir), "--push", "me/finsent-tiny", f"output_dir={tmp_path}"]
    argv += ["export.use_gguf=false", "export.gate_prompts=2", "export.compare_examples=2", "export.max_new_tokens=4"]
    assert main(argv) == 0
    assert hub["repo"] == ("me/finsent-tiny", {"repo_type": "model", "exist_ok": True})
    files = hub["files"]
    assert {"config.json", "model.safetensors", "tokenizer.json", "chat_template.jinja", "README.md"} <= files.keys()
    assert {"comparison.md", "comparison.json", "comparison.png", "gate.json"} <= files.keys()
    card = open(files["README.md"], encoding="utf-8").read()
    assert "## Reload gate" in card and "| merged-float32 | transformers |" in card and "## Use" in card
    out = capsys.readouterr().out
    assert "uploaded to https://huggingface.co/me/finsent-tiny" in out and "size against quality" in out


def test_push_failure_names_the_repo(tmp_path, monkeypatch):
    def refuse(self, repo_id, **kwargs):
        response = httpx.Response(401, request=httpx.Request("POST", "https://huggingface.co/api/repos/create"))
        raise huggingface_hub.errors.HfHubHTTPError("401 Unauthorized", response=response)

    monkeypatch.setattr(huggingface_hub.HfApi, "create_repo", refuse)
    (tmp_path / "merged").mkdir()
    with pytest.raises(FinsentError, match=r"cannot upload .* to the hub repo 'me/x' \(401 Unauthorized\)"):
        push_export(tmp_path, tmp_path / "merged", "me/x", [])
