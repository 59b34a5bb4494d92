"""Finding and reading Hugging Face model folders, local or on the hub.

This module knows files, not architectures: it turns a folder or hub id into a
local directory, reads ``config.json``, and reads the weights (safetensors,
sharded safetensors, or ``pytorch_model.bin``) into a flat dict of numpy
arrays keyed by the PyTorch parameter name. Architecture ports map those names
onto their Flax pytrees.

safetensors (bfloat16 included) are read with numpy or ``safetensors.flax``, never
torch; only ``pytorch_model.bin`` (a pickle) needs torch. A hub id may name a
revision, ``EleutherAI/pythia-70m@step3000`` (or ``revision=``); a repo (or revision)
without safetensors weights is fetched with its ``*.bin`` files instead.
"""

from __future__ import annotations

import json
import os
import pathlib
from typing import Any

import numpy as np

from jaxirl.errors import CheckpointError

_WEIGHT_FILES = (
    "model.safetensors",
    "model.safetensors.index.json",
    "pytorch_model.bin",
    "pytorch_model.bin.index.json",
)
_HUB_PATTERNS = ["*.json", "*.safetensors", "*.txt", "*.model", "tokenizer*", "merges.txt", "vocab*"]
_SAFETENSORS_FILES = ("model.safetensors", "model.safetensors.index.json")


def looks_like_hub_id(name: str) -> bool:
    """Whether ``name`` reads as a hub id ``org/name`` rather than a local path."""
    parts = name.split("/")
    return len(parts) == 2 and all(parts) and not name.startswith((".", "/", "~"))


def split_revision(name: str, revision: str | None = None) -> tuple[str, str | None]:
    """``"org/name@rev"`` -> ``("org/name", "rev")``; an explicit ``revision`` wins."""
    if "@" in name:
        name, _, at = name.partition("@")
        revision = revision or at or None
    return name, revision


def _snapshot(repo_id: str, revision: str | None) -> pathlib.Path:
    import huggingface_hub

    local = pathlib.Path(huggingface_hub.snapshot_download(
        repo_id=repo_id, revision=revision, allow_patterns=_HUB_PATTERNS))
    if not any((local / f).is_file() for f in _SAFETENSORS_FILES):
        # Older repos and revisions (e.g. Pythia's stepN checkpoints) hold only *.bin weights.
        local = pathlib.Path(huggingface_hub.snapshot_download(
            repo_id=repo_id, revision=revision, allow_patterns=[*_HUB_PATTERNS, "*.bin"]))
    return local


def resolve_model_dir(name_or_path: str | os.PathLike, revision: str | None = None
                      ) -> pathlib.Path:
    """Returns a local folder holding ``config.json`` and the weights.

    Args:
      name_or_path: a local folder, or a hub id such as ``EleutherAI/pythia-70m``
        (fetched through ``huggingface_hub`` into its usual cache), optionally with
        ``@revision`` (a branch, tag or commit, e.g. Pythia's ``step3000``).
      revision: the hub revision (overrides one given with ``@``); ignored for folders.

    Raises:
      CheckpointError: the folder does not exist, holds no config, or the hub id
        cannot be fetched (for example without network).
    """
    path = pathlib.Path(os.path.expanduser(str(name_or_path)))
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise CheckpointError(f"model folder '{path}' has no config.json")
        return path
    if path.exists():
        raise CheckpointError(f"model path '{path}' is a file; expected a folder with config.json")
    name, revision = split_revision(str(name_or_path), revision)
    if not looks_like_hub_id(name):
        raise CheckpointError(f"model folder '{name}' does not exist (and is not a hub id like 'org/name')")
    try:
        return _snapshot(name, revision)
    except Exception as e:  # noqa: BLE001 - every hub failure becomes one line
        reason = type(e).__name__
        at = f" at revision '{revision}'" if revision else ""
        raise CheckpointError(
            f"cannot fetch '{name}'{at} from the Hugging Face hub ({reason}); no local folder of "
            "that name exists either: pass a local folder, or check the network / HF_HUB_OFFLINE"
        ) from None


def read_config(model_dir: str | os.PathLike) -> dict[str, Any]:
    """Reads ``config.json`` of a model folder as a dict."""
    path = pathlib.Path(model_dir) / "config.json"
    try:
        with open(path) as f:
            return json.load(f)
    except FileNotFoundError:
        raise CheckpointError(f"'{path}' not found") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise CheckpointError(f"'{path}' is not valid JSON ({e})") from None


def _upcast(state: dict[str, Any]) -> dict[str, np.ndarray]:
    """Floats narrower than float32 (float16; bfloat16 and float8 via ml_dtypes) -> float32."""
    out = {}
    for name, value in state.items():
        value = np.asarray(value)
        # ml_dtypes' bfloat16 / float8 types have numpy kind "V".
        if value.dtype.kind in "fV" and value.dtype.itemsize < 4:
            value = value.astype(np.float32)
        out[name] = value
    return out


def _read_safetensors(path: pathlib.Path) -> dict[str, np.ndarray]:
    from safetensors import SafetensorError
    from safetensors.numpy import load_file

    try:
        return _upcast(load_file(str(path)))
    except (SafetensorError, OSError, ValueError, TypeError) as e:
        # safetensors releases whose numpy reader lacks bfloat16: read through JAX instead.
        if "bf16" in str(e).lower() or "bfloat16" in str(e).lower():
            return _read_with_flax(path)
        raise CheckpointError(f"cannot read weights file '{path}': {e}") from None


def _read_with_flax(path: pathlib.Path) -> dict[str, np.ndarray]:
    import jax
    from safetensors.flax import load_file

    try:
        with jax.default_device(jax.devices("cpu")[0]):  # host memory, not the accelerator's
            return _upcast(load_file(str(path)))
    except Exception as e:  # noqa: BLE001 - a corrupt file must become one line
        raise CheckpointError(f"cannot read weights file '{path}': {type(e).__name__}: {e}") from None


def _read_with_torch(path: pathlib.Path) -> dict[str, np.ndarray]:
    try:
        import torch
    except ImportError:
        raise CheckpointError(
            f"reading '{path.name}' needs PyTorch, which is not installed; convert the checkpoint "
            "to model.safetensors or `pip install torch`"
        ) from None
    try:
        state = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - a corrupt file must become one line
        raise CheckpointError(f"cannot read weights file '{path}': {type(e).__name__}: {e}") from None
    if not isinstance(state, dict):
        raise CheckpointError(f"weights file '{path}' does not hold a state dict")
    return {k: v.detach().to(torch.float32).numpy() if v.is_floating_point() else v.numpy()
            for k, v in state.items()}


def read_state_dict(model_dir: str | os.PathLike) -> dict[str, np.ndarray]:
    """Reads every tensor of a model folder into numpy, keyed by its PyTorch name.

    Prefers ``model.safetensors`` (or its sharded index), then ``pytorch_model.bin``
    (or its index; needs torch). bfloat16 tensors are upcast to float32.
    """
    model_dir = pathlib.Path(model_dir)
    for name in _WEIGHT_FILES:
        path = model_dir / name
        if not path.is_file():
            continue
        is_safetensors = name.startswith("model.safetensors")
        if name.endswith(".index.json"):
            try:
                index = json.loads(path.read_text())
                shards = sorted(set(index["weight_map"].values()))
            except (json.JSONDecodeError, KeyError, TypeError) as e:
                raise CheckpointError(f"'{path}' is not a valid weight index ({e})") from None
            state: dict[str, np.ndarray] = {}
            for shard in shards:
                shard_path = model_dir / shard
                if not shard_path.is_file():
                    raise CheckpointError(f"weight shard '{shard_path}' listed in '{path.name}' is missing")
                state.update(_read_safetensors(shard_path) if is_safetensors else _read_with_torch(shard_path))
            return state
        return _read_safetensors(path) if is_safetensors else _read_with_torch(path)
    raise CheckpointError(
        f"model folder '{model_dir}' holds no weights (looked for {', '.join(_WEIGHT_FILES)})"
    )


def write_safetensors(state: dict[str, np.ndarray], path: str | os.PathLike) -> None:
    """Writes a flat dict of arrays as one ``.safetensors`` file with PyTorch metadata."""
    from safetensors.numpy import save_file

    save_file({k: np.ascontiguousarray(v) for k, v in state.items()}, str(path), metadata={"format": "pt"})
