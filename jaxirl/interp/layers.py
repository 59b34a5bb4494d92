"""Which blocks did fine-tuning move most? (Marks et al.'s layer selection.)

Following the paper's code (``LayerActivationsHandler.find_divergences``), a block's
divergence is the sum, over every parameter tensor in its ``layers_i`` subtree, of
the Frobenius norm of (fine-tuned - base). The SAEs are trained on the k blocks
with the largest divergence.
"""

from __future__ import annotations

import re
from typing import Any

import jax
import numpy as np

from jaxirl.errors import CheckpointError, ConfigError

_LAYER_KEY = re.compile(r"^layers_(\d+)$")


def _blocks(params: Any, which: str) -> dict[int, Any]:
    if isinstance(params, dict) and "params" in params and len(params) == 1:
        params = params["params"]  # tolerate a {"params": ...} wrapper
    if not isinstance(params, dict):
        raise CheckpointError(f"{which} parameters must be a dict with layers_<i> keys, got "
                              f"{type(params).__name__}")
    blocks = {int(m.group(1)): v for k, v in params.items() if (m := _LAYER_KEY.match(k))}
    if not blocks:
        raise CheckpointError(f"{which} parameters have no layers_<i> entries "
                              f"(top-level keys: {', '.join(sorted(params))})")
    return blocks


def layer_divergences(base_params: Any, tuned_params: Any) -> dict[int, float]:
    """Block index -> sum over its tensors of ||tuned - base||_F (float, ascending keys).

    Raises:
      CheckpointError: the two trees have different blocks, tensor names or shapes.
    """
    base, tuned = _blocks(base_params, "base"), _blocks(tuned_params, "fine-tuned")
    if set(base) != set(tuned):
        raise CheckpointError(f"base has blocks {sorted(base)} but the fine-tuned model has "
                              f"{sorted(tuned)}")
    out = {}
    for i in sorted(base):
        leaves_b = jax.tree_util.tree_leaves_with_path(base[i])
        leaves_t = dict(jax.tree_util.tree_leaves_with_path(tuned[i]))
        if len(leaves_b) != len(leaves_t):
            raise CheckpointError(f"block layers_{i}: base has {len(leaves_b)} tensors, the "
                                  f"fine-tuned model {len(leaves_t)}")
        total = 0.0
        for path, b in leaves_b:
            name = f"layers_{i}{jax.tree_util.keystr(path)}"
            if path not in leaves_t:
                raise CheckpointError(f"fine-tuned parameters lack {name}")
            b, t = np.asarray(b, np.float64), np.asarray(leaves_t[path], np.float64)
            if b.shape != t.shape:
                raise CheckpointError(f"{name}: base shape {b.shape} != fine-tuned {t.shape}")
            total += float(np.linalg.norm((t - b).ravel()))
        out[i] = total
    return out


def select_divergent_layers(base_params: Any, tuned_params: Any, k: int) -> list[int]:
    """The ``k`` block indices of largest :func:`layer_divergences`, largest first.

    Ties go to the lower index. ``k`` (``InterpConfig.num_layers``, as the error names
    it) must lie in [1, the model's blocks].
    """
    div = layer_divergences(base_params, tuned_params)
    if not 1 <= k <= len(div):
        raise ConfigError(f"InterpConfig.num_layers (blocks to study) must be in "
                          f"[1, {len(div)}] for this {len(div)}-block model, got {k}")
    return sorted(div, key=lambda i: (-div[i], i))[:k]
