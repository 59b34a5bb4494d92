"""The one Orbax wrapper every stage checkpoints through.

A checkpoint holds a whole train-state pytree (params, optimizer state, RNG,
step, data position, controller statistics) plus a small JSON of host-side
metadata, so that a resumed run replays exactly what an uninterrupted run does.
Sharded states are saved and restored by every process, each its own shards, and
come back with the shardings of the restore target.
"""

from __future__ import annotations

import os
import pathlib
from typing import Any

import jax
import numpy as np
import orbax.checkpoint as ocp

from jaxirl.errors import CheckpointError


class Checkpointer:
    """Saves every ``save_every`` steps under ``directory`` and restores the latest.

    Args:
      directory: where the step folders go (created if missing).
      save_every: save when ``step % save_every == 0`` (and always when forced).
      max_to_keep: older checkpoints beyond this many are deleted.
    """

    def __init__(self, directory: str | os.PathLike, save_every: int = 1, max_to_keep: int = 2):
        self.directory = pathlib.Path(directory).absolute()
        self.directory.mkdir(parents=True, exist_ok=True)
        options = ocp.CheckpointManagerOptions(max_to_keep=max_to_keep, save_interval_steps=1,
                                               enable_async_checkpointing=False)
        self._manager = ocp.CheckpointManager(self.directory, options=options)
        self.save_every = max(int(save_every), 1)

    def latest_step(self) -> int | None:
        return self._manager.latest_step()

    def save(self, step: int, state: Any, metadata: dict | None = None, force: bool = False) -> bool:
        """Saves ``state`` (any pytree of arrays) at ``step``; returns whether it saved."""
        if not force and step % self.save_every:
            return False
        # Sharded arrays go to Orbax as they are: every process writes its own shards.
        args = ocp.args.Composite(state=ocp.args.StandardSave(state),
                                  metadata=ocp.args.JsonSave(metadata or {}))
        self._manager.save(step, args=args, force=True)
        self._manager.wait_until_finished()
        return True

    def restore(self, target: Any, step: int | None = None) -> tuple[Any, dict]:
        """Restores into the structure of ``target``; returns (state, metadata).

        Raises:
          CheckpointError: no checkpoint exists, or its tree does not match ``target``.
        """
        step = self.latest_step() if step is None else step
        if step is None:
            raise CheckpointError(f"no checkpoint to resume from in '{self.directory}'")
        abstract = jax.tree_util.tree_map(_abstract_leaf, target)
        try:
            restored = self._manager.restore(
                step, args=ocp.args.Composite(state=ocp.args.StandardRestore(abstract),
                                              metadata=ocp.args.JsonRestore()))
        except Exception as e:  # noqa: BLE001 - Orbax raises many types; one line out
            raise CheckpointError(
                f"checkpoint step {step} in '{self.directory}' does not match this run's state "
                f"({type(e).__name__}); delete it or use the flags it was written with") from None
        return restored["state"], dict(restored["metadata"] or {})

    def close(self):
        self._manager.close()


def _abstract_leaf(x: Any) -> Any:
    """What a restored leaf should look like: a device array restores with the same sharding."""
    if isinstance(x, jax.Array):
        return jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=x.sharding)
    if hasattr(x, "shape"):
        return np.zeros(np.shape(x), np.asarray(x).dtype)
    return x
