"""One metrics writer for every training loop: JSONL lines as they happen, TensorBoard optionally.

Each :meth:`MetricsLog.write` appends one JSON line ``{"step", "time", "elapsed_s",
**metrics}`` and flushes it, so a running job can be followed with ``tail -f`` and a
killed one keeps every finished step. ``time`` is the Unix time of the line (seconds)
and ``elapsed_s`` the wall-clock seconds the run has spent up to it, counted across
resumes.

Resuming: ``MetricsLog(path, resume_step=k)`` keeps the lines with ``step <= k`` (what
the checkpoint it resumes from had seen) and drops the rest, so a killed-then-resumed
run writes the same lines as an uninterrupted one (wall-clock fields aside). Without
``resume_step`` the file starts empty.

TensorBoard event files come from ``tensorboardX`` (``pip install jaxirl[tb]``):
numbers, nested dicts and lists of numbers become scalars named by their path
(``train/loss/0``). ``tensorboard=None`` writes them when tensorboardX is installed.
"""

from __future__ import annotations

import importlib.util
import itertools
import json
import logging
import math
import os
import pathlib
import sys
import time
from collections.abc import Iterator, Mapping
from typing import Any

import numpy as np

from jaxirl.errors import ConfigError
from jaxirl.runs import write_text_atomic

log = logging.getLogger(__name__)

TB_EXTRA = "pip install 'jaxirl[tb]'"
_WRITER_IDS = itertools.count()


def tensorboard_available() -> bool:
    """Whether tensorboardX (the ``tb`` extra) is installed (found without importing it)."""
    return importlib.util.find_spec("tensorboardX") is not None


def _summary_writer_class() -> type:
    """tensorboardX's ``SummaryWriter``, imported without torch.

    tensorboardX imports torch, when it is installed, only to accept torch tensors, which
    jaxirl never passes (it logs Python floats); that import costs about 3 s of every
    process's start-up. So torch is hidden while tensorboardX loads, unless it is
    already imported.
    """
    if "torch" in sys.modules or "tensorboardX" in sys.modules:
        from tensorboardX import SummaryWriter
        return SummaryWriter
    sys.modules["torch"] = None  # type: ignore[assignment] - makes `import torch` fail
    try:
        from tensorboardX import SummaryWriter
    finally:
        del sys.modules["torch"]
    return SummaryWriter


def _plain(value: Any) -> Any:
    """numpy / jax scalars and arrays -> JSON-ready Python values (nested containers too)."""
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, (str, bool, int, float)) or value is None:
        return value
    array = np.asarray(value)
    return array.item() if array.ndim == 0 else array.tolist()


def scalar_items(metrics: Mapping[str, Any], prefix: str = "") -> Iterator[tuple[str, float]]:
    """(tag, value) of every number in nested ``metrics``; strings, None and bools skipped."""
    for key, value in metrics.items():
        tag = f"{prefix}{key}"
        if isinstance(value, Mapping):
            yield from scalar_items(value, tag + "/")
        elif isinstance(value, (list, tuple)):
            yield from scalar_items({str(i): v for i, v in enumerate(value)}, tag + "/")
        elif isinstance(value, (int, float)) and not isinstance(value, bool):
            if math.isfinite(value):
                yield tag, float(value)


class MetricsLog:
    """Streams metrics rows to a JSONL file (and TensorBoard); a context manager.

    Args:
      path: the JSONL file (its folder is created).
      resume_step: keep the existing lines with ``step <= resume_step`` and continue
        after them, hiding TensorBoard's events after it; None or 0 starts an empty
        file (0 also hides the events of a run killed before its first checkpoint).
      tensorboard: True writes TensorBoard events (ConfigError without tensorboardX),
        False never, None when tensorboardX is installed.
      tensorboard_dir: where the event files go (default: ``tensorboard/`` beside
        ``path``).
      tag_prefix: prepended to every TensorBoard tag (e.g. ``"ppo/"``).
    """

    def __init__(self, path: str | os.PathLike, resume_step: int | None = None,
                 tensorboard: bool | None = None,
                 tensorboard_dir: str | os.PathLike | None = None, tag_prefix: str = ""):
        self.path = pathlib.Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        kept = self._kept_lines(resume_step or 0)
        self._elapsed_before = float(json.loads(kept[-1]).get("elapsed_s", 0.0)) if kept else 0.0
        # Renamed into place: a kill while truncating must not lose the kept rows.
        write_text_atomic(self.path, "".join(line + "\n" for line in kept))
        self._file = open(self.path, "a")  # noqa: SIM115 - kept open across steps
        self._start = time.perf_counter()
        self.tag_prefix = tag_prefix
        self.writer = None
        if tensorboard is None:
            tensorboard = tensorboard_available()
        if tensorboard:
            if not tensorboard_available():
                raise ConfigError(f"TensorBoard logging needs tensorboardX: {TB_EXTRA}")
            logdir = pathlib.Path(tensorboard_dir or self.path.parent / "tensorboard")
            # tensorboardX checks, then creates: two writers of one folder starting together
            # (the interpretability stage's SAE threads) raced to FileExistsError.
            logdir.mkdir(parents=True, exist_ok=True)
            # purge_step hides the events a killed run wrote after its last checkpoint, but
            # only if TensorBoard reads the files in the order they were written: it sorts
            # them by name, whose time is whole seconds. So the suffix starts with the time
            # in nanoseconds, fixed width (an unpadded writer count sorted ".10" before ".9"
            # and replayed a resumed run's events first); pid and count keep two writers of
            # one folder and nanosecond apart.
            suffix = f".{time.time_ns():020d}.{os.getpid()}.{next(_WRITER_IDS):06d}"
            self.writer = _summary_writer_class()(str(logdir),
                                        purge_step=(resume_step + 1 if resume_step is not None
                                                    else None),
                                        filename_suffix=suffix)
        log.info("metrics stream to %s%s", self.path,
                 f" and TensorBoard {self.writer.logdir}" if self.writer else "")

    def _kept_lines(self, resume_step: int) -> list[str]:
        if resume_step <= 0 or not self.path.exists():
            return []
        kept = []
        for line in self.path.read_text().splitlines():
            try:
                row = json.loads(line)
            except json.JSONDecodeError:
                continue  # a line cut short by the kill that interrupted the run
            if row.get("step", math.inf) <= resume_step:
                kept.append(line)
        return kept

    def write(self, step: int, metrics: Mapping[str, Any]) -> dict[str, Any]:
        """Appends ``{"step", "time", "elapsed_s", **metrics}``; returns that row."""
        row = {"step": int(step), "time": time.time(),
               "elapsed_s": self._elapsed_before + time.perf_counter() - self._start,
               **_plain(dict(metrics))}
        self._file.write(json.dumps(row) + "\n")
        self._file.flush()
        if self.writer is not None:
            for tag, value in scalar_items(row, self.tag_prefix):
                if tag not in (f"{self.tag_prefix}step", f"{self.tag_prefix}time"):
                    self.writer.add_scalar(tag, value, int(step), walltime=row["time"])
            self.writer.flush()
        return row

    def close(self) -> None:
        if not self._file.closed:
            self._file.close()
        if self.writer is not None:
            self.writer.close()
            self.writer = None

    def __enter__(self) -> MetricsLog:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def read_metrics(path: str | os.PathLike) -> list[dict[str, Any]]:
    """The rows of a JSONL metrics file (an empty list when it does not exist)."""
    path = pathlib.Path(path)
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
