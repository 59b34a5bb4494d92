"""Sparse autoencoders as sae-lens folders: ``cfg.json`` + ``sae_weights.safetensors``.

sae-lens' ``standard`` SAE (sae-lens >= 6, ``SAE.load_from_disk``) computes, on raw
activations x [..., d]::

    f     = ReLU((x - b_dec * apply_b_dec_to_input) @ W_enc + b_enc)   W_enc [d, F]
    x_hat = f @ W_dec + b_dec                                          W_dec [F, d]

jaxirl's SAE reads the rescaled activations x * s (:mod:`jaxirl.interp.sae`), so the
export folds the input scale s into the weights::

    W_enc = s * W_e^T,  b_enc = b_e,  W_dec = W_d / s,  b_dec = b_d / s

with ``apply_b_dec_to_input = false`` and ``normalize_activations = "none"``: the same
codes and reconstructions in raw units, up to float rounding. ``metadata.jaxirl`` keeps
s and the tying, so :func:`load_sae` recovers jaxirl's parameters (and its
rescaled-unit metrics); a folder without it (any standard ReLU sae-lens SAE) loads with
s = 1 and ``b_dec`` folded into ``b_e`` where sae-lens subtracts it from the input.
"""

from __future__ import annotations

import json
import os
import pathlib
from typing import Any

import jax.numpy as jnp
import numpy as np

from jaxirl.errors import CheckpointError
from jaxirl.interp.sae import TrainedSAE

CFG_FILE = "cfg.json"
WEIGHTS_FILE = "sae_weights.safetensors"
# The sae-lens config layout written here (its 6.x schema; older releases read 'hook_name'
# at the top level, which is written there too).
SAE_LENS_FORMAT_VERSION = "6.0.0"


def mlp_out_hook_name(layer: int) -> str:
    """TransformerLens' name of block ``layer``'s MLP output: what jaxirl's SAEs read."""
    return f"blocks.{int(layer)}.hook_mlp_out"


def save_sae(path: str | os.PathLike, sae: TrainedSAE, hook_name: str = "",
                  model_name: str = "", context_size: int | None = None,
                  extra_metadata: dict[str, Any] | None = None) -> pathlib.Path:
    """Writes ``sae`` as a sae-lens folder (created); returns its path.

    Args:
      path: the folder.
      sae: a trained jaxirl SAE.
      hook_name: where its activations come from (e.g. :func:`mlp_out_hook_name`).
      model_name: the model it reads (a hub id or folder name).
      context_size: tokens per text it was trained on.
      extra_metadata: more ``metadata`` entries (JSON-serialisable).
    """
    from jaxirl import __version__
    from jaxirl.models.hf_files import write_safetensors

    params = {k: np.asarray(v, np.float32) for k, v in sae.params.items()}
    s = float(sae.scale)
    w_dec = params.get("W_d", params["W_e"])
    weights = {"W_enc": s * params["W_e"].T, "b_enc": params["b_e"],
               "W_dec": w_dec / s, "b_dec": params["b_d"] / s}
    d, f = weights["W_enc"].shape
    metadata = {"sae_lens_version": SAE_LENS_FORMAT_VERSION,
                "sae_lens_training_version": None, "model_name": model_name,
                "hook_name": hook_name, "hook_head_index": None, "prepend_bos": False,
                "context_size": context_size,
                "jaxirl": {"version": __version__, "input_scale": s, "tied": "W_d" not in params},
                **(extra_metadata or {})}
    cfg = {"architecture": "standard", "d_in": int(d), "d_sae": int(f), "dtype": "float32",
           "device": "cpu", "apply_b_dec_to_input": False, "normalize_activations": "none",
           "reshape_activations": "none", "activation_fn": "relu", "hook_name": hook_name,
           "model_name": model_name, "metadata": metadata}
    out = pathlib.Path(path)
    out.mkdir(parents=True, exist_ok=True)
    write_safetensors(weights, out / WEIGHTS_FILE)
    (out / CFG_FILE).write_text(json.dumps(cfg, indent=2) + "\n")
    return out


def read_sae_lens_config(path: str | os.PathLike) -> dict[str, Any]:
    """``cfg.json`` of a sae-lens folder; CheckpointError naming the file if absent or bad."""
    file = pathlib.Path(path) / CFG_FILE
    try:
        cfg = json.loads(file.read_text())
    except FileNotFoundError:
        raise CheckpointError(f"'{path}' is not a sae-lens SAE folder (no {CFG_FILE})") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise CheckpointError(f"{file} is not valid JSON ({e})") from None
    if not isinstance(cfg, dict):
        raise CheckpointError(f"{file} does not hold a JSON object")
    return cfg


def load_sae(path: str | os.PathLike) -> TrainedSAE:
    """Reads a sae-lens folder (``standard`` ReLU architecture) as a jaxirl SAE."""
    from safetensors import SafetensorError
    from safetensors.numpy import load_file

    cfg = read_sae_lens_config(path)
    unsupported = {"architecture": (cfg.get("architecture", "standard"), "standard"),
                   "normalize_activations": (cfg.get("normalize_activations", "none"), "none"),
                   "activation_fn": (cfg.get("activation_fn", "relu"), "relu")}
    for field, (value, wanted) in unsupported.items():
        if value != wanted:
            raise CheckpointError(f"{pathlib.Path(path) / CFG_FILE}: {field} '{value}' is not "
                                  f"supported (jaxirl's SAE is '{wanted}')")
    try:
        w = load_file(str(pathlib.Path(path) / WEIGHTS_FILE))
    except (FileNotFoundError, SafetensorError, OSError) as e:
        raise CheckpointError(f"cannot read {pathlib.Path(path) / WEIGHTS_FILE}: {e}") from None
    missing = sorted({"W_enc", "b_enc", "W_dec", "b_dec"} - set(w))
    if missing:
        raise CheckpointError(f"{pathlib.Path(path) / WEIGHTS_FILE} lacks {', '.join(missing)}")
    w = {k: np.asarray(v, np.float32) for k, v in w.items()}
    info = (cfg.get("metadata") or {}).get("jaxirl") or {}
    s = float(info.get("input_scale", 1.0))
    b_enc = w["b_enc"]
    if cfg.get("apply_b_dec_to_input", True):
        b_enc = b_enc - w["b_dec"] @ w["W_enc"]  # (x - b_dec) W_enc + b_enc
    params = {"W_e": w["W_enc"].T / s, "b_e": b_enc, "b_d": w["b_dec"] * s}
    if not info.get("tied", False):
        params["W_d"] = w["W_dec"] * s
    return TrainedSAE(params={k: jnp.asarray(v) for k, v in params.items()},
                      scale=jnp.asarray(s, jnp.float32))
