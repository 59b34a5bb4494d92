"""Resumable stages: each writes under ``workdir/<name>-<config hash>`` and is skipped when done.

A stage is finished when its folder holds ``DONE.json`` (written last, atomically),
so a killed stage reruns from its own checkpoints on the next call, and a stage
whose configuration changed gets a fresh folder instead of stale results.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import pathlib
import time
from collections.abc import Callable
from typing import Any

from jaxirl import parallel
from jaxirl.errors import JaxIRLError

DONE = "DONE.json"


class StageError(JaxIRLError):
    """A stage failed; the message names the stage and gives the one-line cause."""


def config_hash(config: Any) -> str:
    """A short stable hash of a JSON-able (or dataclass) configuration."""
    if dataclasses.is_dataclass(config):
        config = dataclasses.asdict(config)
    blob = json.dumps(config, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:8]


@dataclasses.dataclass(frozen=True)
class StageResult:
    name: str
    folder: pathlib.Path
    outputs: dict[str, Any]
    seconds: float
    skipped: bool


class StageRunner:
    """Runs named stages under ``workdir``, skipping finished ones.

    Args:
      workdir: the pipeline's output folder.
      selected: stage names to run (None: all). An unselected stage must already
        be finished when a later stage needs its outputs.
    """

    def __init__(self, workdir: str | os.PathLike, selected: set[str] | None = None):
        self.workdir = pathlib.Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.selected = selected
        self.results: dict[str, StageResult] = {}

    def folder(self, name: str, config: Any) -> pathlib.Path:
        return self.workdir / f"{name}-{config_hash(config)}"

    def run(self, name: str, config: Any, fn: Callable[[pathlib.Path], dict[str, Any]]
            ) -> StageResult:
        """Runs ``fn(folder) -> outputs`` unless the stage already finished with this config."""
        folder = self.folder(name, config)
        done = folder / DONE
        if done.is_file():
            record = json.loads(done.read_text())
            result = StageResult(name, folder, record["outputs"], record["seconds"], skipped=True)
            self.results[name] = result
            return result
        if self.selected is not None and name not in self.selected:
            raise StageError(f"stage '{name}' has not run with this configuration and is not in "
                             f"--stages; add it to --stages")
        main = parallel.is_main_process()  # with several processes, process 0 writes
        if main:
            folder.mkdir(parents=True, exist_ok=True)
            (folder / "config.json").write_text(json.dumps(
                dataclasses.asdict(config) if dataclasses.is_dataclass(config) else config,
                indent=2, sort_keys=True, default=str) + "\n")
        parallel.sync(f"stage {name} start")
        start = time.time()
        try:
            outputs = fn(folder)
        except JaxIRLError as e:
            raise StageError(f"stage '{name}' failed: {e}") from e
        except Exception as e:  # noqa: BLE001 - the stage name must reach the user
            raise StageError(f"stage '{name}' failed: {type(e).__name__}: {e}") from e
        seconds = time.time() - start
        if main:
            tmp = folder / (DONE + ".tmp")
            tmp.write_text(json.dumps({"outputs": outputs, "seconds": seconds}, indent=2,
                                      default=str) + "\n")
            os.replace(tmp, done)
        parallel.sync(f"stage {name} done")
        result = StageResult(name, folder, outputs, seconds, skipped=False)
        self.results[name] = result
        return result
