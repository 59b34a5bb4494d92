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
import sys
from typing import Any

import jax
import numpy as np
import orbax.checkpoint as ocp

from jaxirl import runs
from jaxirl.errors import CheckpointError, RunFolderError
from jaxirl.finite import first_nonfinite

# The metadata entry holding the settings a checkpoint was written with.
SETTINGS_KEY = "settings"


def _drop_closed_loop_noise(unraisable) -> None:
    # While a restore fails and after, tensorstore still completes the reads it had
    # started and calls back into Orbax's event loop, which is closed by then: each
    # callback's "Event loop is closed" would print a traceback beside the one-line error.
    exc = unraisable.exc_value
    if isinstance(exc, RuntimeError) and str(exc) == "Event loop is closed":
        return
    _default_unraisablehook(unraisable)


_default_unraisablehook = sys.unraisablehook


class Checkpointer:
    """Saves every ``save_every`` steps under ``directory`` and restores the latest.

    Args:
      directory: where the step folders go (created if missing).
      save_every: save when ``step % save_every == 0`` (and always when forced).
      max_to_keep: older checkpoints beyond this many are deleted.
    """

    def __init__(self, directory: str | os.PathLike, save_every: int = 1, max_to_keep: int = 2):
        self.directory = pathlib.Path(directory).absolute()
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise RunFolderError(f"cannot create checkpoint folder '{self.directory}': "
                                 f"{type(e).__name__}: {e.strerror or e}") from None
        options = ocp.CheckpointManagerOptions(max_to_keep=max_to_keep, save_interval_steps=1,
                                               enable_async_checkpointing=False)
        self._manager = ocp.CheckpointManager(self.directory, options=options)
        self.save_every = max(int(save_every), 1)

    def latest_step(self) -> int | None:
        return self._manager.latest_step()

    def save(self, step: int, state: Any, metadata: dict | None = None, force: bool = False,
             settings: Any = None) -> bool:
        """Saves ``state`` (any pytree of arrays) at ``step``; returns whether it saved.

        ``settings`` (a config dataclass or JSON-able dict) go into the metadata, for
        :meth:`restore` to check.
        """
        if not force and step % self.save_every:
            return False
        if settings is not None:
            metadata = {**(metadata or {}), SETTINGS_KEY: runs.Manifest.build("", settings).settings}
        # Sharded arrays go to Orbax as they are: every process writes its own shards.
        args = ocp.args.Composite(state=ocp.args.StandardSave(state),
                                  metadata=ocp.args.JsonSave(metadata or {}))
        self._manager.save(step, args=args, force=True)
        self._manager.wait_until_finished()
        return True

    def restore(self, target: Any, step: int | None = None,
                settings: Any = None) -> tuple[Any, dict]:
        """Restores into the structure of ``target``; returns (state, metadata).

        ``settings``: this run's, checked against those the checkpoint was saved with
        (when both are known): a state trained with another seed or learning rate has
        the same tree and would otherwise continue silently.

        Raises:
          CheckpointError: no checkpoint exists, its tree does not match ``target``, or
            it was written with other settings (the message lists them).
        """
        step = self.latest_step() if step is None else step
        if step is None:
            raise CheckpointError(f"no checkpoint to resume from in '{self.directory}'")
        abstract = jax.tree_util.tree_map(_abstract_leaf, target)
        # From before the restore, not from its failure: a stray callback can come while
        # Orbax is still raising (1 or 2 failed restores in 100 printed one). Kept after a
        # failure, for the reads still in flight.
        previous_hook, sys.unraisablehook = sys.unraisablehook, _drop_closed_loop_noise
        try:
            restored = self._manager.restore(
                step, args=ocp.args.Composite(state=ocp.args.StandardRestore(abstract),
                                              metadata=ocp.args.JsonRestore()))
        except Exception as e:  # noqa: BLE001 - Orbax raises many types; one line out
            raise CheckpointError(
                f"checkpoint step {step} in '{self.directory}' is corrupt or does not match this "
                f"run's state ({type(e).__name__}); delete it or use the settings it was written "
                "with") from None
        sys.unraisablehook = previous_hook
        saved = (restored["metadata"] or {}).get(SETTINGS_KEY)
        if settings is not None and saved is not None:
            diffs = runs.Manifest("", saved, {}).differences(runs.Manifest.build("", settings))
            if diffs:
                raise CheckpointError(
                    f"checkpoint step {step} in '{self.directory}' was written with other "
                    f"settings ({runs.describe(diffs)}); resume with those, or start over in "
                    "a new folder")
        state = restored["state"]
        bad = first_nonfinite(state)
        if bad is not None:
            raise CheckpointError(f"checkpoint step {step} in '{self.directory}' holds non-finite "
                                  f"values ({bad[1]} in '{bad[0]}')")
        return state, dict(restored["metadata"] or {})

    def close(self):
        self._manager.close()


def _abstract_leaf(x: Any) -> Any:
    """What a restored leaf should look like: a device array restores with the same sharding."""
    if isinstance(x, jax.Array):
        return jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=x.sharding)
    if hasattr(x, "shape"):
        return np.zeros(np.shape(x), np.asarray(x).dtype)
    return x


def kept_checkpoint(ckpt: Checkpointer | None) -> str:
    """Where the last good state is, for a divergence message."""
    step = None if ckpt is None else ckpt.latest_step()
    if step is None:
        return "no checkpoint was written"
    return f"the last checkpoint, step {step} in '{ckpt.directory}', is kept"
