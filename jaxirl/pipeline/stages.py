"""Resumable stages: each writes under ``workdir/<name>-<config hash>`` and is skipped when done.

A stage is finished when its folder holds ``DONE.json`` (written last, atomically),
so a killed stage reruns from its own checkpoints on the next call, and a stage
whose configuration changed gets a fresh folder instead of stale results. The hash
covers the content of the files and folders the configuration names (a model folder
changed in place is a new input), and an unreadable ``DONE.json`` means unfinished.
The workdir itself is a run folder of kind ``pipeline`` (:mod:`jaxirl.runs`).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import pathlib
import re
import time
from collections.abc import Callable, Iterator
from typing import Any

from jaxirl import parallel, runs
from jaxirl.errors import JaxIRLError

DONE = "DONE.json"
# What the pipeline writes into its workdir: stage folders and the report.
_STAGE_FOLDER = re.compile(r"^[a-z_]+-[0-9a-f]{8}$")
REPORT_OUTPUTS = ("report.md", "report_plots")


class StageError(JaxIRLError):
    """A stage failed; the message names the stage and gives the one-line cause."""


class SelectionDone(Exception):  # noqa: N818 - a signal, not an error
    """Raised instead of running an unselected stage once every selected stage has run."""


def _strings(value: Any) -> Iterator[str]:
    if isinstance(value, dict):
        for sub in value.values():
            yield from _strings(sub)
    elif isinstance(value, (list, tuple)):
        for sub in value:
            yield from _strings(sub)
    elif isinstance(value, str):
        yield value


def input_paths(config: Any, workdir: str | os.PathLike | None = None) -> list[str]:
    """The existing local files and folders a configuration names, outside ``workdir``.

    A string counts when it (or what follows a ``kind:`` prefix, as in
    ``learned:/path``) contains a path separator and exists. Paths inside the workdir
    are other stages' outputs, already keyed by those stages' folder names.
    """
    root = pathlib.Path(workdir).resolve() if workdir is not None else None
    found = []
    for text in _strings(config):
        for candidate in (text, text.partition(":")[2]):
            if os.sep not in candidate or not os.path.exists(os.path.expanduser(candidate)):
                continue
            resolved = pathlib.Path(os.path.expanduser(candidate)).resolve()
            if root is None or not resolved.is_relative_to(root):
                found.append(candidate)
            break
    return sorted(set(found))


def config_hash(config: Any, workdir: str | os.PathLike | None = None) -> str:
    """A short stable hash of a JSON-able (or dataclass) configuration and of the content
    of the files and folders it names (see :func:`input_paths`)."""
    if dataclasses.is_dataclass(config):
        config = dataclasses.asdict(config)
    contents = {path: runs.fingerprint(path) for path in input_paths(config, workdir)}
    blob = json.dumps({"config": config, "contents": contents} if contents else config,
                      sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:8]


def read_done(folder: pathlib.Path) -> dict | None:
    """The record of a finished stage, or None when absent or unreadable (then it reruns)."""
    try:
        record = json.loads((folder / DONE).read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(record, dict) or not isinstance(record.get("outputs"), dict):
        return None
    return record


@dataclasses.dataclass(frozen=True)
class StageResult:
    name: str
    folder: pathlib.Path
    outputs: dict[str, Any]
    seconds: float
    skipped: bool
    background: bool = False  # ran in the study's second lane, beside other stages


class StageRunner:
    """Runs named stages under ``workdir``, skipping finished ones.

    Args:
      workdir: the pipeline's output folder: new, empty, or a pipeline workdir.
      selected: stage names to run (None: all). An unselected stage must already
        be finished when a later stage needs its outputs.
      overwrite: remove every stage folder and the report first (nothing else).
    """

    def __init__(self, workdir: str | os.PathLike, selected: set[str] | None = None,
                 overwrite: bool = False):
        self.workdir = pathlib.Path(workdir)
        _adopt_legacy_workdir(self.workdir)
        outputs = [*REPORT_OUTPUTS, runs.RUN_CONFIG_FILE,
                   *(p.name for p in _stage_folders(self.workdir))]
        # Many configurations share one workdir (one folder per stage and hash), so the
        # workdir's own manifest holds no settings.
        runs.open_run(self.workdir, runs.Manifest("pipeline", {}, {}), outputs, resume=True,
                      overwrite=overwrite)
        self.selected = selected
        self.results: dict[str, StageResult] = {}

    def folder(self, name: str, config: Any) -> pathlib.Path:
        return self.workdir / f"{name}-{config_hash(config, self.workdir)}"

    def selection_done(self) -> bool:
        """Every selected stage has run (or was already finished)."""
        return self.selected is not None and self.selected <= set(self.results)

    def run(self, name: str, config: Any, fn: Callable[[pathlib.Path], dict[str, Any]]
            ) -> StageResult:
        """Runs ``fn(folder) -> outputs`` unless the stage already finished with this config."""
        folder = self.folder(name, config)
        done = folder / DONE
        record = read_done(folder)
        if record is not None:
            result = StageResult(name, folder, record["outputs"], record.get("seconds", 0.0),
                                 skipped=True)
            self.results[name] = result
            return result
        if self.selected is not None and name not in self.selected:
            if self.selection_done():
                raise SelectionDone(name)
            raise StageError(f"stage '{name}' has not run with this configuration and is not "
                             "selected; add it to the selected stages")
        main = parallel.is_main_process()  # with several processes, process 0 writes
        if main:
            folder.mkdir(parents=True, exist_ok=True)
            runs.write_text_atomic(folder / "config.json", json.dumps(
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
            runs.write_text_atomic(done, json.dumps({"outputs": outputs, "seconds": seconds},
                                                    indent=2, default=str) + "\n")
        parallel.sync(f"stage {name} done")
        result = StageResult(name, folder, outputs, seconds, skipped=False)
        self.results[name] = result
        return result


def _stage_folders(workdir: pathlib.Path) -> list[pathlib.Path]:
    if not workdir.is_dir():
        return []
    return sorted(p for p in workdir.iterdir() if p.is_dir() and _STAGE_FOLDER.match(p.name))


def _adopt_legacy_workdir(workdir: pathlib.Path) -> None:
    """Marks a pipeline workdir written before run markers existed as the pipeline's own:
    every entry is a stage folder (with its config.json) or the report."""
    if not workdir.is_dir() or (workdir / runs.MARKER).exists():
        return
    entries = list(workdir.iterdir())
    stages = _stage_folders(workdir)
    if entries and stages and all(p in stages or p.name in REPORT_OUTPUTS for p in entries) \
            and all((p / "config.json").is_file() for p in stages):
        runs.RunFolder(workdir, runs.Manifest("pipeline", {}, {}), (), "resumed").record()
