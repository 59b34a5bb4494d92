"""HF files: config.json through transformers, bf16 without torch, hub revisions and *.bin."""

import fnmatch
import json
import os
import pathlib
import shutil
import subprocess
import sys

import numpy as np
import pytest
from hf_helpers import make_hf_gpt_neox

from jaxirl.errors import CheckpointError
from jaxirl.models import hf_files, load_pretrained, save_pretrained

ROOT = pathlib.Path(__file__).resolve().parents[2]


def test_config_json_is_written_by_transformers(tmp_path, tiny_hf_model):
    folder, _ = tiny_hf_model
    model, params = load_pretrained(folder)
    save_pretrained(tmp_path / "out", model.config, params)
    written = json.loads((tmp_path / "out" / "config.json").read_text())
    import transformers

    assert written["transformers_version"] == transformers.__version__
    assert written["dtype"] == "float32" and "torch_dtype" not in written
    assert written["architectures"] == ["GPTNeoXForCausalLM"]
    # transformers 5 reads rope_parameters, transformers 4 the old keys: both are there.
    assert written["rope_parameters"]["partial_rotary_factor"] == written["rotary_pct"] == 0.25
    assert load_pretrained(tmp_path / "out")[0].config == model.config


def _bf16_folder(path):
    import torch

    torch_model = make_hf_gpt_neox(path / "f32")
    torch_model.to(torch.bfloat16).save_pretrained(str(path / "bf16"))
    from safetensors import safe_open

    with safe_open(str(path / "bf16" / "model.safetensors"), "np") as f:
        assert {f.get_slice(k).get_dtype() for k in f.keys()} == {"BF16"}
    return path / "bf16", {k: v.float().numpy() for k, v in torch_model.state_dict().items()}


def test_bf16_safetensors_load_without_torch(tmp_path):
    folder, want = _bf16_folder(tmp_path)
    np.savez(tmp_path / "want.npz", embed=want["gpt_neox.embed_in.weight"],
             qkv=want["gpt_neox.layers.1.attention.query_key_value.weight"])
    script = f"""
import sys
sys.modules["torch"] = None  # any `import torch` now raises ImportError
try:
    import torch
    raise SystemExit("torch is importable")
except ImportError:
    pass
import numpy as np
from jaxirl.models import load_pretrained
model, params = load_pretrained({str(folder)!r})
want = np.load({str(tmp_path / 'want.npz')!r})
np.testing.assert_array_equal(params["embed_in"]["embedding"], want["embed"])
np.testing.assert_array_equal(params["layers_1"]["attention"]["query_key_value"]["kernel"],
                              want["qkv"].T)
assert params["embed_in"]["embedding"].dtype == np.float32
print("loaded without torch")
"""
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env,
                         timeout=300)
    assert out.returncode == 0 and "loaded without torch" in out.stdout, out.stderr[-2000:]


def test_bf16_falls_back_to_safetensors_flax(tmp_path, monkeypatch):
    """safetensors releases whose numpy reader lacks bfloat16 are read through JAX."""
    import safetensors.numpy

    folder, want = _bf16_folder(tmp_path)

    def no_bf16(path):
        raise ValueError("data type bf16 is not supported by numpy")

    monkeypatch.setattr(safetensors.numpy, "load_file", no_bf16)
    state = hf_files.read_state_dict(folder)
    assert state["gpt_neox.embed_in.weight"].dtype == np.float32
    np.testing.assert_array_equal(state["gpt_neox.embed_in.weight"], want["gpt_neox.embed_in.weight"])


class FakeHub:
    """``snapshot_download`` over local folders: repo id -> revision -> files."""

    def __init__(self, root):
        self.root, self.calls = pathlib.Path(root), []

    def add(self, repo_id, revision, source, drop=()):
        dest = self.root / "remote" / repo_id / revision
        shutil.copytree(source, dest, ignore=shutil.ignore_patterns(*drop))

    def snapshot_download(self, repo_id, revision=None, allow_patterns=None, **kwargs):
        revision = revision or "main"
        self.calls.append((repo_id, revision, tuple(allow_patterns)))
        remote = self.root / "remote" / repo_id / revision
        if not remote.is_dir():
            raise FileNotFoundError(f"no revision {revision}")
        local = self.root / "cache" / repo_id / revision
        local.mkdir(parents=True, exist_ok=True)
        for f in remote.iterdir():
            if any(fnmatch.fnmatch(f.name, p) for p in allow_patterns):
                shutil.copy(f, local / f.name)
        return str(local)


def test_hub_revisions_and_bin_only_repos(tmp_path, monkeypatch):
    import huggingface_hub
    import torch

    hub = FakeHub(tmp_path)
    main_model = make_hf_gpt_neox(tmp_path / "main", seed=0)
    old_model = make_hf_gpt_neox(tmp_path / "old", seed=1)
    torch.save(old_model.state_dict(), tmp_path / "old" / "pytorch_model.bin")
    hub.add("org/pythia", "main", tmp_path / "main")
    hub.add("org/pythia", "step1000", tmp_path / "old", drop=["*.safetensors"])
    monkeypatch.setattr(huggingface_hub, "snapshot_download", hub.snapshot_download)

    # A safetensors repo: one download, no *.bin asked for.
    _, params = load_pretrained("org/pythia")
    assert hub.calls == [("org/pythia", "main", tuple(hf_files._HUB_PATTERNS))]
    np.testing.assert_array_equal(params["embed_in"]["embedding"],
                                  main_model.gpt_neox.embed_in.weight.detach().numpy())
    # A revision with pytorch_model.bin only (Pythia's stepN): fetched with *.bin.
    for name, revision in (("org/pythia@step1000", None), ("org/pythia", "step1000")):
        hub.calls.clear()
        _, params = load_pretrained(name, revision=revision)
        assert [c[1] for c in hub.calls] == ["step1000", "step1000"]
        assert "*.bin" in hub.calls[1][2] and "*.bin" not in hub.calls[0][2]
        np.testing.assert_array_equal(params["embed_in"]["embedding"],
                                      old_model.gpt_neox.embed_in.weight.detach().numpy())
    with pytest.raises(CheckpointError, match="cannot fetch 'org/pythia' at revision 'step9'"):
        load_pretrained("org/pythia@step9")
