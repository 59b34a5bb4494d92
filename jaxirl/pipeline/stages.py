"""Resumable stages: each writes under ``workdir/<name>-<config hash>`` and is skipped when done.

A stage is finished when its folder holds ``DONE.json`` (written last, atomically),
so a killed stage reruns from its own checkpoints on the next call, and a stage
whose configuration changed gets a fresh folder instead of stale results. The hash
covers the content of the files and folders the configuration names (a model folder
changed in place is a new input), and an unreadable ``DONE.json`` means unfinished.
The workdir itself is a run folder of kind ``pipeline`` (:mod:`jaxirl.runs`).

A workdir can be moved or copied: paths inside it enter the hash, and ``DONE.json``,
as ``<workdir>/...`` (:func:`portable`), and are read back under the current workdir.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import os
import pathlib
import re
import shutil
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from jaxirl import parallel, runs
from jaxirl.errors import JaxIRLError

DONE = "DONE.json"
# Stands for the workdir in hashed configurations and in DONE.json's outputs.
WORKDIR = "<workdir>"
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
    """The existing local files and folders a configuration names, except stage outputs.

    A string counts when it (or what follows a ``kind:`` prefix, as in
    ``learned:/path``) contains a path separator and exists. Paths inside a stage folder
    of ``workdir`` (or the workdir itself, or the report and the workdir's own files)
    are other stages' outputs, already keyed by those stages' folder names; any other
    path inside the workdir (a model or data file put there) counts like one outside.
    """
    root = pathlib.Path(workdir).resolve() if workdir is not None else None
    found = []
    for text in _strings(config):
        for _, candidate in _path_parts(text):
            if os.sep not in candidate or not os.path.exists(os.path.expanduser(candidate)):
                continue
            resolved = pathlib.Path(os.path.expanduser(candidate)).resolve()
            if root is None or not _pipeline_output(resolved, root):
                found.append(candidate)
            break
    return sorted(set(found))


def _pipeline_output(path: pathlib.Path, root: pathlib.Path) -> bool:
    """Whether the resolved ``path`` is the workdir ``root`` or lies in what the pipeline
    writes there: a stage folder, the report, the run marker or ``run_config.json``."""
    if not path.is_relative_to(root):
        return False
    parts = path.relative_to(root).parts
    return not parts or bool(_STAGE_FOLDER.match(parts[0])) or \
        parts[0] in (*REPORT_OUTPUTS, runs.MARKER, runs.RUN_CONFIG_FILE)


def _map_strings(value: Any, fn: Callable[[str], str]) -> Any:
    """``value`` with ``fn`` applied to every string (and path) in its dicts, lists and
    tuples, which become lists (as in JSON)."""
    if isinstance(value, pathlib.PurePath):
        value = str(value)
    if isinstance(value, dict):
        return {key: _map_strings(sub, fn) for key, sub in value.items()}
    if isinstance(value, (list, tuple)):
        return [_map_strings(sub, fn) for sub in value]
    return fn(value) if isinstance(value, str) else value


def _path_parts(text: str) -> Iterator[tuple[str, str]]:
    """(prefix, path) readings of ``text``: itself, and what follows a ``kind:`` prefix."""
    yield "", text
    kind, colon, rest = text.partition(":")
    if colon:
        yield kind + colon, rest


def _under(candidate: str, workdir: pathlib.Path, root: pathlib.Path) -> pathlib.Path | None:
    """``candidate`` relative to the workdir (given as ``workdir``, resolved ``root``) when
    it names a path inside it, else None. A relative string counts when it exists or starts
    with a relative ``workdir`` (other relative strings may be hub ids)."""
    if os.sep not in candidate:
        return None
    path = pathlib.Path(os.path.expanduser(candidate))
    try:
        if path.is_absolute() or path.exists():
            return path.resolve().relative_to(root)
    except (ValueError, OSError, RuntimeError):
        return None
    if not workdir.is_absolute() and workdir.parts and \
            path.parts[:len(workdir.parts)] == workdir.parts:
        return pathlib.Path(*path.parts[len(workdir.parts):])
    return None


def portable(value: Any, workdir: str | os.PathLike) -> Any:
    """``value`` with every path inside ``workdir`` (also after a ``kind:`` prefix) written
    as ``<workdir>/<relative path>``: the same wherever the workdir lives."""
    workdir = pathlib.Path(workdir)
    root = pathlib.Path(os.path.expanduser(workdir)).resolve()

    def text(s: str) -> str:
        for prefix, candidate in _path_parts(s):
            rel = _under(candidate, workdir, root)
            if rel is not None:
                return prefix + (WORKDIR if rel == pathlib.Path() else f"{WORKDIR}/{rel.as_posix()}")
        return s

    return _map_strings(value, text)


def localize(value: Any, workdir: str | os.PathLike) -> Any:
    """The inverse of :func:`portable` under ``workdir`` (the current one).

    A path that :func:`portable` left as it was (``DONE.json`` of an older version, which
    recorded absolute paths) and that lies outside ``workdir`` moves into it when the same
    stage folder and path below it exist there: the record of a workdir moved or copied.
    """
    workdir = pathlib.Path(workdir)
    root = pathlib.Path(os.path.expanduser(workdir)).resolve()

    def text(s: str) -> str:
        for prefix, candidate in _path_parts(s):
            if candidate == WORKDIR or candidate.startswith(WORKDIR + "/"):
                return prefix + str(workdir / candidate[len(WORKDIR) + 1:])
        for prefix, candidate in _path_parts(s):
            if not os.path.isabs(candidate) or _under(candidate, workdir, root) is not None:
                continue
            parts = pathlib.Path(candidate).parts
            for i, part in enumerate(parts):
                here = workdir.joinpath(*parts[i:])
                if _STAGE_FOLDER.match(part) and here.exists():
                    return prefix + str(here)
        return s

    return _map_strings(value, text)


def config_hash(config: Any, workdir: str | os.PathLike | None = None) -> str:
    """A short stable hash of a JSON-able (or dataclass) configuration and of the content
    of the files and folders it names (see :func:`input_paths`). Paths inside ``workdir``
    enter as ``<workdir>/...`` (:func:`portable`), so a moved workdir keeps its folder
    names; a configuration without such paths hashes as it always has."""
    if dataclasses.is_dataclass(config):
        config = dataclasses.asdict(config)
    # A path inside the workdir is keyed as <workdir>/... here too; others as they are.
    contents = {(portable(path, workdir) if workdir is not None else path): runs.fingerprint(path)
                for path in input_paths(config, workdir)}
    if workdir is not None:
        config = portable(config, workdir)
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


def usable_cpus() -> int:
    """The CPU cores this process may run on (its affinity, not the machine's count)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()


@dataclasses.dataclass(frozen=True)
class StageResult:
    name: str
    folder: pathlib.Path
    outputs: dict[str, Any]
    seconds: float
    skipped: bool
    background: bool = False  # ran in a background thread of the study, beside other stages
    # The jaxirl commit the stage ran at (``git_commit``); None: recorded before
    # commits were kept.
    commit: str | None = None
    # The CPU cores the process could use (XLA:CPU sizes its thread pool by them, and
    # some float sums follow it); None: recorded before they were kept.
    cpus: int | None = None


class StageRunner:
    """Runs named stages under ``workdir``, skipping finished ones.

    Args:
      workdir: the pipeline's output folder: new, empty, or a pipeline workdir.
      selected: stage names to run (None: all). An unselected stage must already
        be finished when a later stage needs its outputs.
      overwrite: set every stage folder and the report aside first (nothing else; see
        :func:`jaxirl.runs.open_run`). With ``selected``, nothing up front: each selected
        stage's folder (of this configuration) is set aside just before that stage runs
        again, and the run stops once every selected stage has run. Set-aside folders
        wait in ``workdir/.jaxirl-replaced`` until :meth:`drop_replaced` (the run
        succeeded) or :meth:`put_back` (it failed).
      keep: the study's inputs (paths or ``kind:path`` specs): ``overwrite`` removes no
        entry that is, or holds, one of them (a model inside an earlier stage's folder).
    """

    def __init__(self, workdir: str | os.PathLike, selected: set[str] | None = None,
                 overwrite: bool = False, keep: Iterable[str | os.PathLike | None] = ()):
        self.workdir = pathlib.Path(workdir)
        _adopt_legacy_workdir(self.workdir)
        outputs = [*REPORT_OUTPUTS, runs.RUN_CONFIG_FILE,
                   *(p.name for p in _stage_folders(self.workdir))]
        # --overwrite with --stages replaces the selected stages only (in run()).
        self.overwrite_selected = overwrite and selected is not None
        # Many configurations share one workdir (one folder per stage and hash), so the
        # workdir's own manifest holds no settings.
        self.run_folder = runs.open_run(self.workdir, runs.Manifest("pipeline", {}, {}), outputs,
                                        resume=True,
                                        overwrite=overwrite and not self.overwrite_selected,
                                        keep=keep)
        self.keep = runs.input_paths(keep)  # real paths
        marker = self.workdir / runs.MARKER
        # What put_back restores with the stages it puts back.
        self._marker_before = marker.read_bytes() if marker.is_file() else None
        if self.run_folder.finished:
            # The marker says whether the last invocation ran to its report; this one may
            # add or replace stages, so the workdir is unfinished until it does too.
            self.run_folder.record(finished=False)
        self.selected = selected
        self.results: dict[str, StageResult] = {}
        # Selected stage folders replaced by this run (overwrite with selected).
        self.set_aside: list[pathlib.Path] = []

    @functools.cached_property
    def commit(self) -> str:
        """The jaxirl commit this invocation runs (read once), recorded with each stage."""
        from jaxirl.report.provenance import git_commit

        return git_commit()

    def finish(self) -> None:
        """Marks the workdir finished (``jaxirl_run.json``): every stage and the report ran.
        The workdir stays locked until :func:`~jaxirl.pipeline.study.run_study` ends."""
        self.run_folder.finish(release=False)

    def folder(self, name: str, config: Any) -> pathlib.Path:
        return self.workdir / f"{name}-{config_hash(config, self.workdir)}"

    def selection_done(self) -> bool:
        """Every selected stage has run (or was already finished)."""
        return self.selected is not None and self.selected <= set(self.results)

    def run(self, name: str, config: Any, fn: Callable[[pathlib.Path], dict[str, Any]],
            stale: Callable[[dict[str, Any]], str | None] | None = None) -> StageResult:
        """Runs ``fn(folder) -> outputs`` unless the stage already finished with this config.

        ``stale(outputs)`` says why a finished stage's recorded outputs cannot be used
        (None: they can); such a stage runs again in its folder.
        """
        if self.overwrite_selected and self.selection_done():
            raise SelectionDone(name)  # later stages may have read what was replaced
        folder = self.folder(name, config)
        done = folder / DONE
        replace = self.overwrite_selected and name in self.selected
        record = None if replace else read_done(folder)
        why = "has not run with this configuration"
        if record is not None:
            outputs = localize(record["outputs"], self.workdir)
            reason = stale(outputs) if stale is not None else None
            if reason is None:
                result = StageResult(name, folder, outputs, record.get("seconds", 0.0),
                                     skipped=True, commit=record.get("commit"),
                                     cpus=record.get("cpus"))
                self.results[name] = result
                return result
            why = f"must run again ({reason})"
        if self.selected is not None and name not in self.selected:
            if self.selection_done():
                raise SelectionDone(name)
            raise StageError(f"stage '{name}' {why} and is not selected; add it to the "
                             "selected stages")
        held = [k for k in self.keep if runs.holds_any(folder, (k,))]
        if replace and held:
            raise StageError(f"stage '{name}' cannot be replaced: its folder holds the "
                             f"study's input '{held[0]}'")
        main = parallel.is_main_process()  # with several processes, process 0 writes
        if main:
            if replace and folder in _stage_folders(self.workdir):
                self._set_aside(folder)
            elif record is not None:
                done.unlink(missing_ok=True)  # stale: unfinished until it runs again
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
        commit = self.commit
        if main:
            runs.write_text_atomic(done, json.dumps(
                {"outputs": portable(outputs, self.workdir), "seconds": seconds,
                 "commit": commit, "cpus": usable_cpus()}, indent=2, default=str) + "\n")
        parallel.sync(f"stage {name} done")
        result = StageResult(name, folder, outputs, seconds, skipped=False, commit=commit,
                             cpus=usable_cpus())
        self.results[name] = result
        return result

    def _set_aside(self, folder: pathlib.Path) -> None:
        aside = self.workdir / runs.REPLACED / folder.name
        if aside.exists():
            # An earlier overwrite of this stage that never finished: its copy there is
            # the last finished one, so the unfinished folder goes instead.
            shutil.rmtree(folder)
        else:
            aside.parent.mkdir(exist_ok=True)
            os.replace(folder, aside)
        self.set_aside.append(folder)

    def put_back(self) -> None:
        """After an error: the stage folders this run replaced, put back as they were (the
        new attempts' folders are removed)."""
        if not parallel.is_main_process():
            return
        if self.set_aside and self._marker_before is not None:
            runs.write_bytes_atomic(self.workdir / runs.MARKER, self._marker_before)
        for folder in self.set_aside:
            aside = self.workdir / runs.REPLACED / folder.name
            if aside.is_dir():
                shutil.rmtree(folder, ignore_errors=True)
                os.replace(aside, folder)
                print(f"note: stage folder '{folder}' is put back as it was", file=sys.stderr)
        self.set_aside = []
        self._remove_empty_aside()

    def drop_replaced(self) -> None:
        """After success: the stage folders this run replaced are deleted."""
        if not parallel.is_main_process():
            return
        for folder in self.set_aside:
            shutil.rmtree(self.workdir / runs.REPLACED / folder.name, ignore_errors=True)
        self.set_aside = []
        self._remove_empty_aside()

    def _remove_empty_aside(self) -> None:
        aside = self.workdir / runs.REPLACED
        if aside.is_dir() and not any(aside.iterdir()):
            aside.rmdir()


def _stage_folders(workdir: pathlib.Path) -> list[pathlib.Path]:
    """The workdir's stage folders: named ``<stage>-<hash>`` and holding the config.json a
    stage writes first (or empty: killed before it), so that ``overwrite`` leaves a
    user's folder that only looks like one."""
    if not workdir.is_dir():
        return []
    return sorted(p for p in workdir.iterdir() if p.is_dir() and _STAGE_FOLDER.match(p.name)
                  and ((p / "config.json").is_file() or not any(p.iterdir())))


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
