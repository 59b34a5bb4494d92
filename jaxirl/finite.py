"""Non-finite values: cheap on-device flags, and the one-line error that names them.

Training steps put a finiteness flag into the metrics they already return
(:func:`tree_finite`, one ``all(isfinite)`` per leaf, computed inside the jitted
step); the host loop then checks the metrics it has fetched anyway, once per
iteration or epoch, with :func:`check_metrics`: no extra device round trip.
Loading and evaluation check whole parameter trees with :func:`first_nonfinite`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxirl import parallel
from jaxirl.errors import DivergenceError

# Metric names ending with this suffix are 0/1 flags, true when finite.
FLAG_SUFFIX = "_finite"


def tree_finite(tree: Any) -> jax.Array:
    """Scalar bool: every floating leaf of ``tree`` is finite (jittable)."""
    flags = [jnp.all(jnp.isfinite(x)) for x in jax.tree_util.tree_leaves(tree)
             if jnp.issubdtype(jnp.result_type(x), jnp.inexact)]
    return jnp.all(jnp.stack(flags)) if flags else jnp.asarray(True)


def first_nonfinite(tree: Any) -> tuple[str, int] | None:
    """(path of the first leaf holding NaN/inf, how many it holds), or None.

    Host arrays are counted on the host; device arrays where they live, so a state
    sharded over several processes is checked without gathering it.
    """
    for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]:
        if isinstance(leaf, jax.Array):
            if not jnp.issubdtype(leaf.dtype, jnp.inexact):
                continue
            bad = int(parallel.to_host(jnp.sum(~jnp.isfinite(leaf))))
        else:
            x = np.asarray(leaf)
            if not np.issubdtype(x.dtype, np.inexact):
                continue
            bad = int(x.size - np.count_nonzero(np.isfinite(x)))
        if bad:
            return jax.tree_util.keystr(path, simple=True, separator="/"), bad
    return None


def check_tree(tree: Any, what: str) -> None:
    """DivergenceError naming ``what`` and the first leaf with NaN/inf values."""
    found = first_nonfinite(tree)
    if found is not None:
        raise DivergenceError(f"{what} hold non-finite values: {found[1]} in '{found[0]}'")


def check_metrics(metrics: Mapping[str, Any], where: str, keys: Iterable[str],
                  hint: str = "") -> None:
    """Raises DivergenceError at the first non-finite metric among ``keys``.

    Args:
      metrics: name -> scalar or array (e.g. [seeds]); names ending with ``_finite``
        are flags that must be true.
      where: names the iteration, e.g. ``"PPO iteration 3"``.
      keys: the metrics to check (absent ones are skipped).
      hint: appended to the message (e.g. which checkpoint is kept).
    """
    for key in keys:
        if key not in metrics:
            continue
        value = np.asarray(metrics[key], np.float64).reshape(-1)
        bad = ~(value > 0.5) if key.endswith(FLAG_SUFFIX) else ~np.isfinite(value)
        if not bad.any():
            continue
        index = int(np.flatnonzero(bad)[0])
        what = (f"non-finite {key[: -len(FLAG_SUFFIX)]}" if key.endswith(FLAG_SUFFIX)
                else f"non-finite {key} ({value[index]})")
        seed = f" (seed index {index})" if value.size > 1 else ""
        raise DivergenceError(f"{where} diverged: {what}{seed}{'; ' + hint if hint else ''}")
