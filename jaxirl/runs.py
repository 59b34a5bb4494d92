"""Run folders: what a run may write where, what a resumed run must match, and safe saves.

Every output folder that jaxirl writes (a launcher's ``--workdir``/``--out``, a
pipeline stage, the default model) holds the marker ``jaxirl_run.json``: the run's
kind, its resolved settings, content fingerprints of its inputs (model weights,
tokenizer, data), the names of the entries the run writes, and whether it finished.
:func:`open_run` applies one policy to every such folder:

* a missing or empty folder is a new run;
* a finished run of the same kind, settings and inputs is reported as finished (a
  rerun is a no-op);
* an unfinished one continues only with ``resume=True``;
* anything else (other settings or inputs, another kind, a folder jaxirl did not
  write, a file) is a :class:`~jaxirl.errors.RunFolderError` that lists the
  differences. ``overwrite=True`` replaces a jaxirl run, taking away only the entries
  that run wrote, and never an input of the new run (``keep``: e.g. demonstrations
  saved inside the folder and read again); a folder without the marker is never touched.
  The replaced entries are moved into the hidden ``.jaxirl-replaced`` folder, deleted
  when the new run finishes and put back when it fails with an error (a bad input
  found after the folder was opened loses nothing).

Saves never remove the last good copy: :func:`write_text_atomic` and
:func:`swap_in` write the new copy beside the old one and rename it into place.
Content fingerprints are cached by (path, size, mtime_ns) in ``$JAXIRL_CACHE``, so
a large checkpoint is hashed once.
"""

from __future__ import annotations

import contextlib
import dataclasses
import glob
import hashlib
import json
import os
import pathlib
import shutil
import socket
import sys
import threading
from collections.abc import Iterable, Mapping
from typing import Any

from jaxirl.errors import RunFolderError

MARKER = "jaxirl_run.json"
# Where ``overwrite`` moves the replaced run's entries until the new run finishes.
REPLACED = ".jaxirl-replaced"
# Every launcher's resolved config, in its output folder (``--config_file`` reruns it).
RUN_CONFIG_FILE = "run_config.json"
# Not content: Orbax stamps each checkpoint's commit time into its metadata file, and a
# launcher records its settings beside its outputs (a model folder stays the same input).
_UNHASHED = {MARKER, RUN_CONFIG_FILE, "_CHECKPOINT_METADATA"}
FORMAT_VERSION = 1

_HASH_CACHE_FILE = "content_hashes.json"
_HASH_CACHE_SIZE = 20000
_MAX_LISTED = 6


def cache_root() -> pathlib.Path:
    """The user cache: ``$JAXIRL_CACHE``, default ``~/.cache/jaxirl``."""
    return pathlib.Path(os.environ.get("JAXIRL_CACHE", pathlib.Path.home() / ".cache" / "jaxirl"))


# ------------------------------------------------------------------ atomic writes


def write_bytes_atomic(path: str | os.PathLike, data: bytes) -> pathlib.Path:
    """Writes ``data`` beside ``path`` and renames it into place: readers see old or new."""
    path = pathlib.Path(path)
    # Process and thread: a study's two lanes may write one file (the hash cache) at once.
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}-{threading.get_ident()}")
    try:
        tmp.write_bytes(data)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def write_text_atomic(path: str | os.PathLike, text: str) -> pathlib.Path:
    """Writes ``text`` (UTF-8) atomically, as :func:`write_bytes_atomic`."""
    return write_bytes_atomic(path, text.encode("utf-8"))


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def staging_dir(final: str | os.PathLike) -> pathlib.Path:
    """A fresh sibling folder to build ``final`` in, ``.<name>.building-<host>-<pid>``.

    Staging folders of this host's processes that no longer run (killed builds) are
    removed first; other hosts' are left alone (a shared file system may hold live ones).
    """
    final = pathlib.Path(final)
    prefix = f".{final.name}.building-{socket.gethostname()}-"
    if final.parent.is_dir():
        for stale in final.parent.glob(glob.escape(prefix) + "*"):
            pid = stale.name[len(prefix):]
            if pid.isdigit() and not _alive(int(pid)):
                shutil.rmtree(stale, ignore_errors=True)
    tmp = final.with_name(f"{prefix}{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    return tmp


def _old_copies(final: pathlib.Path) -> list[pathlib.Path]:
    return sorted(final.parent.glob(f".{final.name}.old-*")) if final.parent.is_dir() else []


def recover(final: str | os.PathLike) -> None:
    """Puts back the old copy of ``final`` if a swap was killed between its two renames."""
    final = pathlib.Path(final)
    old = _old_copies(final)
    if old and not final.exists():
        os.replace(old[-1], final)
        old = old[:-1]
    for stale in old:
        shutil.rmtree(stale, ignore_errors=True)


def swap_in(new: str | os.PathLike, final: str | os.PathLike) -> pathlib.Path:
    """Moves the finished file or folder ``new`` to ``final``, replacing any old copy.

    The old copy is moved aside (``.<name>.old-<pid>``) and deleted only once the new
    one is in place; a process killed between the two renames leaves the old copy,
    which :func:`recover` (called here and by readers) puts back.
    """
    new, final = pathlib.Path(new), pathlib.Path(final)
    recover(final)
    if not final.is_dir() or (final.is_dir() and not any(final.iterdir())):
        os.replace(new, final)  # a file, or an empty folder, is replaced atomically
        return final
    old = final.with_name(f".{final.name}.old-{os.getpid()}")
    os.replace(final, old)
    os.replace(new, final)
    shutil.rmtree(old, ignore_errors=True)
    return final


# ------------------------------------------------------------------ content fingerprints


class _HashCache:
    """sha256 of files keyed by (real path, size, mtime_ns); persisted when writable."""

    def __init__(self):
        self._entries: dict[str, str] | None = None
        self._dirty = False

    def _file(self) -> pathlib.Path:
        return cache_root() / _HASH_CACHE_FILE

    def _load(self) -> dict[str, str]:
        if self._entries is None:
            try:
                loaded = json.loads(self._file().read_text())
                self._entries = loaded if isinstance(loaded, dict) else {}
            except (OSError, ValueError):
                self._entries = {}
        return self._entries

    def file_hash(self, path: pathlib.Path) -> str:
        st = path.stat()
        key = f"{os.path.realpath(path)}|{st.st_size}|{st.st_mtime_ns}"
        entries = self._load()
        if key not in entries:
            digest = hashlib.sha256()
            with open(path, "rb") as f:
                for block in iter(lambda: f.read(1 << 20), b""):
                    digest.update(block)
            entries[key] = digest.hexdigest()
            self._dirty = True
        return entries[key]

    def flush(self) -> None:
        if not self._dirty or self._entries is None:
            return
        entries = dict(list(self._entries.items())[-_HASH_CACHE_SIZE:])
        try:
            self._file().parent.mkdir(parents=True, exist_ok=True)
            write_text_atomic(self._file(), json.dumps(entries))
            self._dirty = False
        except OSError:
            pass  # an unwritable cache only costs re-hashing next time


_CACHE = _HashCache()


def fingerprint(path: str | os.PathLike) -> str:
    """``sha256:<16 hex>`` of a file's bytes, or of a folder's files (names and bytes).

    Hidden entries (temporary copies), the run marker and Orbax's commit-time file are
    skipped; symlinks are followed (hub snapshots are links to blobs).
    """
    path = pathlib.Path(os.path.expanduser(str(path)))
    digest = hashlib.sha256()
    try:
        if path.is_file():
            digest.update(_CACHE.file_hash(path).encode())
        else:
            for root, dirs, files in os.walk(path, followlinks=True):
                dirs[:] = sorted(d for d in dirs if not d.startswith("."))
                for name in sorted(files):
                    if name.startswith(".") or name in _UNHASHED:
                        continue
                    file = pathlib.Path(root) / name
                    digest.update(f"{file.relative_to(path).as_posix()}\0".encode())
                    digest.update(_CACHE.file_hash(file).encode())
    except OSError as e:
        raise RunFolderError(f"cannot read '{path}' to fingerprint it: "
                             f"{type(e).__name__}: {e.strerror or e}") from None
    finally:
        _CACHE.flush()
    return "sha256:" + digest.hexdigest()[:16]


def input_fingerprint(spec: str | os.PathLike | None) -> str | None:
    """The fingerprint of an input named by a path, a ``kind:path`` spec or a hub id.

    Local files and folders are hashed by content; anything else (a hub id, a scorer
    name) is its own identity. None stays None.
    """
    if spec is None:
        return None
    text = str(spec)
    for candidate in (text, text.partition(":")[2]):
        if candidate and pathlib.Path(os.path.expanduser(candidate)).exists():
            return fingerprint(candidate)
    return f"name:{text}"


def save_run_config(config: Any, folder: str | os.PathLike) -> pathlib.Path:
    """Writes the dataclass ``config`` as ``folder/run_config.json`` (JSON, tuples as lists)."""
    text = json.dumps(dataclasses.asdict(config), indent=2, default=str) + "\n"
    return write_text_atomic(pathlib.Path(folder) / RUN_CONFIG_FILE, text)


# ------------------------------------------------------------------ manifests


def _jsonable(value: Any) -> Any:
    """Plain JSON values (dataclasses as dicts, at any depth; tuples as lists)."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return _jsonable(dataclasses.asdict(value))
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    return json.loads(json.dumps(value, default=str))


def _flatten(value: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(value, dict):
        out = {}
        for key, sub in value.items():
            out.update(_flatten(sub, f"{prefix}.{key}" if prefix else str(key)))
        return out
    return {prefix: value}


@dataclasses.dataclass(frozen=True)
class Manifest:
    """What identifies a run: its kind, resolved settings and input fingerprints.

    Attributes:
      kind: the writer, e.g. ``"rlhf"``, ``"irl"``, ``"pipeline"``.
      settings: JSON-able settings that change the results (nested dicts allowed).
      inputs: input name -> fingerprint (see :func:`input_fingerprint`).
    """

    kind: str
    settings: dict
    inputs: dict

    @classmethod
    def build(cls, kind: str, settings: Any, inputs: Mapping[str, Any] | None = None
              ) -> Manifest:
        """Normalises ``settings`` to JSON and fingerprints every input (path or spec)."""
        fingerprints = {name: input_fingerprint(spec) for name, spec in (inputs or {}).items()}
        return cls(kind, _jsonable(settings), fingerprints)

    def as_dict(self) -> dict:
        return {"kind": self.kind, "settings": self.settings, "inputs": self.inputs}

    def differences(self, other: Manifest) -> list[str]:
        """``"name old → new"`` for every setting and input that differs from ``other``."""
        out = []
        if self.kind != other.kind:
            out.append(f"kind {self.kind} → {other.kind}")
        mine, theirs = _flatten(self.settings), _flatten(other.settings)
        for key in sorted(set(mine) | set(theirs)):
            if mine.get(key, "<unset>") != theirs.get(key, "<unset>"):
                out.append(f"{key} {_short(mine.get(key, '<unset>'))} → "
                           f"{_short(theirs.get(key, '<unset>'))}")
        for key in sorted(set(self.inputs) | set(other.inputs)):
            a, b = self.inputs.get(key), other.inputs.get(key)
            if a != b:
                out.append(f"{key} content {a} → {b}")
        return out


def _short(value: Any, limit: int = 60) -> str:
    text = str(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def describe(differences: list[str]) -> str:
    shown = "; ".join(differences[:_MAX_LISTED])
    more = len(differences) - _MAX_LISTED
    return shown + (f"; and {more} more" if more > 0 else "")


# ------------------------------------------------------------------ run folders

# Folders this process has locked: (device, inode) -> [descriptor, how many opens hold
# it]. By inode, not path: a folder moved while this process holds it is still the same
# folder to it (flock is per open file, so a second descriptor would refuse this process).
_LOCKS: dict[tuple[int, int], list[int]] = {}
_LOCKS_GUARD = threading.Lock()


def _lock_folder(folder: pathlib.Path) -> tuple[int, int] | None:
    """An exclusive ``flock`` on ``folder`` for this process (re-entrant); returns its key.

    Two processes writing one run folder interleave their checkpoints and logs: the
    second is refused instead. None where the file system has no locks (it then runs
    unlocked, as before).
    """
    import fcntl

    with _LOCKS_GUARD:
        fd = os.open(folder, os.O_RDONLY)
        stat = os.fstat(fd)
        key = (stat.st_dev, stat.st_ino)
        if key in _LOCKS:
            os.close(fd)
            _LOCKS[key][1] += 1
            return key
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise RunFolderError(f"'{folder}' is in use by another jaxirl process; wait for it "
                                 "to end, or choose another folder") from None
        except OSError:
            os.close(fd)
            return None
        _LOCKS[key] = [fd, 1]
        return key


def _unlock_folder(key: tuple[int, int] | None) -> None:
    import fcntl

    with _LOCKS_GUARD:
        held = _LOCKS.get(key) if key is not None else None
        if held is None:
            return
        held[1] -= 1
        if held[1] == 0:
            del _LOCKS[key]
            fcntl.flock(held[0], fcntl.LOCK_UN)
            os.close(held[0])


@dataclasses.dataclass
class RunFolder:
    """An opened run folder.

    Attributes:
      path: the folder.
      manifest: this run's manifest.
      outputs: top-level entries this run writes (what ``overwrite`` may remove).
      status: ``"new"``, ``"resumed"`` (an unfinished run of the same manifest) or
        ``"finished"`` (nothing to do).
      writes: whether this process writes the marker (False on all but process 0 of a
        multi-process job).
      keep_on_error: set once the run has built an input outside its folder (e.g.
        demonstrations into ``--demos``): its marker then survives a failure, so that a
        rerun of the same command knows the input as its own.
      replaced: the folder holding the entries of the run this one replaces
        (``overwrite``), until this run finishes (None: nothing replaced).
      kept: real paths of this run's inputs, which putting the replaced run back never
        removes.
      lock: this process's lock on the folder (see :meth:`release`; None: not held).
    """

    path: pathlib.Path
    manifest: Manifest
    outputs: tuple[str, ...]
    status: str
    created: bool = False
    writes: bool = True
    keep_on_error: bool = False
    replaced: pathlib.Path | None = None
    kept: tuple[str, ...] = ()
    lock: tuple[int, int] | None = None

    @property
    def finished(self) -> bool:
        return self.status == "finished"

    def release(self) -> None:
        """Lets other processes open the folder (done by :meth:`finish` and on an error
        in :meth:`cleanup_on_error`; otherwise held until the process ends)."""
        _unlock_folder(self.lock)
        self.lock = None

    @contextlib.contextmanager
    def cleanup_on_error(self):
        """On an exception, removes the marker (and saved config) of a run that wrote
        nothing else yet (and the folder, if this run created it), so that a rejected
        input leaves no trace; a run that replaced another (``overwrite``) and fails with
        an error puts the replaced run back instead (interrupted, it keeps both, so that
        ``resume`` can continue it)."""
        try:
            yield self
        except BaseException as e:
            try:
                self._clean_up(e)
            finally:
                self.release()
            raise

    def _clean_up(self, error: BaseException) -> None:
        if not self.writes or self.status != "new" or self.keep_on_error \
                or not self.path.is_dir():
            return
        if self.replaced is not None and self.replaced.is_dir():
            if isinstance(error, Exception):
                self.restore_replaced()
            else:
                print(f"note: '{self.path}': the run this one replaces is kept in "
                      f"'{self.replaced}' until this one finishes", file=sys.stderr)
            return
        if {p.name for p in self.path.iterdir()} <= {MARKER, RUN_CONFIG_FILE}:
            (self.path / RUN_CONFIG_FILE).unlink(missing_ok=True)
            (self.path / MARKER).unlink(missing_ok=True)
            if self.created:
                self.path.rmdir()

    def restore_replaced(self) -> None:
        """Removes this run's entries and puts back those of the run it replaced."""
        aside = self.replaced
        keep = (*self.kept, *(os.path.realpath(e) for e in aside.iterdir()))
        _remove_outputs(self.path, (*self.outputs, RUN_CONFIG_FILE), keep)
        for entry in sorted(aside.iterdir()):
            os.replace(entry, self.path / entry.name)
        aside.rmdir()
        self.replaced = None
        print(f"note: '{self.path}': the run this one was to replace is put back as it was",
              file=sys.stderr)

    def record(self, finished: bool = False, **extra: Any) -> None:
        """(Re)writes the marker; ``finished=True`` last, once every output is written."""
        if not self.writes:
            return
        blob = {"format_version": FORMAT_VERSION, **self.manifest.as_dict(),
                "outputs": list(self.outputs), "finished": finished, **extra}
        write_text_atomic(self.path / MARKER, json.dumps(blob, indent=1) + "\n")

    def finish(self, release: bool = True, **extra: Any) -> None:
        """Marks the run finished, deletes the run it replaced, and (``release``) unlocks."""
        self.record(finished=True, **extra)
        self.status = "finished"
        if self.writes and self.replaced is not None:
            shutil.rmtree(self.replaced, ignore_errors=True)
            self.replaced = None
        if release:
            self.release()


def read_marker(folder: str | os.PathLike) -> dict | None:
    """The marker of ``folder`` as a dict, None when absent; RunFolderError when unreadable."""
    file = pathlib.Path(folder) / MARKER
    if not file.is_file():
        return None
    try:
        blob = json.loads(file.read_text(encoding="utf-8"))
        if not isinstance(blob, dict) or not isinstance(blob.get("settings"), dict):
            raise ValueError("not a run record")
        return blob
    except (OSError, ValueError) as e:
        raise RunFolderError(f"run folder '{folder}' has an unreadable {MARKER} "
                             f"({type(e).__name__}); pass overwrite=True to replace the run") from None


def input_paths(specs: Iterable[str | os.PathLike | None]) -> list[str]:
    """The real paths of the local files and folders that ``specs`` name (paths or
    ``kind:path`` specs, as in :func:`input_fingerprint`); hub ids, names and None are
    left out."""
    out = []
    for spec in specs:
        text = "" if spec is None else str(spec)
        for candidate in (text, text.partition(":")[2]):
            path = os.path.expanduser(candidate)
            if candidate and os.path.lexists(path):
                out.append(os.path.realpath(path))
                break
    return out


def holds_any(target: str | os.PathLike, kept: Iterable[str]) -> bool:
    """Whether removing ``target`` would remove (or cut the path to) a kept input."""
    real = os.path.realpath(target)
    return any(k == real or k.startswith(real.rstrip(os.sep) + os.sep) for k in kept)


def _remove_outputs(folder: pathlib.Path, outputs: Iterable[str], keep: Iterable[str] = ()
                    ) -> None:
    """Removes the named entries (glob patterns allowed, e.g. ``sae_*.npz``) and the marker,
    except those that are, or hold, a path in ``keep`` (real paths: the new run's inputs)."""
    keep = tuple(keep)
    for pattern in (*outputs, MARKER):
        for target in sorted(folder.glob(pattern)):
            if holds_any(target, keep):
                continue
            if target.is_dir() and not target.is_symlink():
                shutil.rmtree(target)
            else:
                target.unlink()


def _set_aside_outputs(folder: pathlib.Path, outputs: Iterable[str], keep: Iterable[str],
                       finished: bool) -> pathlib.Path | None:
    """Moves the named entries (glob patterns allowed), the saved config and the marker
    into ``folder/REPLACED``, except those that are, or hold, a path in ``keep``; returns
    that folder (None when nothing was there to move).

    A ``REPLACED`` folder left by an earlier overwrite that never finished holds the last
    finished run: it stays, and the unfinished entries in ``folder`` are removed instead
    (unless the marker says finished: then the older copy goes).
    """
    keep = tuple(keep)
    aside = folder / REPLACED
    patterns = (*outputs, RUN_CONFIG_FILE, MARKER)
    if aside.is_dir():
        if not finished:
            _remove_outputs(folder, patterns, keep)
            return aside
        shutil.rmtree(aside)
    targets = sorted({t for pattern in patterns for t in folder.glob(pattern)
                      if t.name != REPLACED and not holds_any(t, keep)})
    if not targets:
        return None
    aside.mkdir()
    for target in targets:
        os.replace(target, aside / target.name)
    return aside


def _check_creatable(folder: pathlib.Path) -> None:
    if folder.exists() and not folder.is_dir():
        raise RunFolderError(f"output folder '{folder}' is a file; pass a folder path")
    existing = folder
    while not existing.exists():
        existing = existing.parent
    if not existing.is_dir():
        raise RunFolderError(f"cannot create output folder '{folder}': '{existing}' is a file")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise RunFolderError(f"cannot create output folder '{folder}': '{existing}' is not "
                             "writable")


def open_run(path: str | os.PathLike, manifest: Manifest, outputs: Iterable[str], *,
             resume: bool = False, overwrite: bool = False, create: bool = True,
             keep: Iterable[str | os.PathLike | None] = ()) -> RunFolder:
    """Applies the run-folder policy (module docstring) to ``path`` and returns the folder.

    In a job of several processes every process checks the folder as it finds it, and
    then process 0 alone creates it and writes the marker (the others' ``writes`` is
    False).

    Args:
      path: the run's folder.
      manifest: this run's kind, settings and input fingerprints.
      outputs: top-level names this run writes; ``overwrite`` removes these (and the
        marker) only.
      resume: continue an unfinished run of the same manifest.
      overwrite: replace a jaxirl run folder of any settings (its own entries only).
      create: create the folder and write an unfinished marker now (False: only check,
        for builds that are renamed into place).
      keep: the new run's inputs (paths or ``kind:path`` specs): ``overwrite`` removes
        no entry that is, or holds, one of them, even one the old run wrote.

    Raises:
      RunFolderError: the folder is a file, cannot be created, holds data jaxirl did not
        write, or a run whose manifest differs (the message lists the differences), or
        an unfinished run without ``resume``.
    """
    import jax

    from jaxirl import parallel

    keep = input_paths(keep)
    if not create or jax.process_count() == 1:
        return _open_run(path, manifest, outputs, resume, overwrite, create, keep)
    run = _open_run(path, manifest, outputs, resume, overwrite, False, keep)
    parallel.sync(f"run folder {path} checked")
    if parallel.is_main_process():
        run = _open_run(path, manifest, outputs, resume, overwrite, True, keep)
    else:
        run.writes = False
    parallel.sync(f"run folder {path} opened")
    return run


def _open_run(path: str | os.PathLike, manifest: Manifest, outputs: Iterable[str], resume: bool,
              overwrite: bool, create: bool, keep: Iterable[str] = ()) -> RunFolder:
    folder = pathlib.Path(os.path.expanduser(str(path)))
    outputs = tuple(outputs)
    _check_creatable(folder)
    created = not folder.exists()
    lock = None
    if create:
        # Locked before it is read: a second process may neither check nor set aside
        # what the first is writing.
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise RunFolderError(f"cannot create output folder '{folder}': "
                                 f"{type(e).__name__}: {e.strerror or e}") from None
        lock = _lock_folder(folder)
    try:
        return _open_locked(folder, manifest, outputs, resume, overwrite, create, keep,
                            created, lock)
    except BaseException:
        _unlock_folder(lock)
        if created and folder.is_dir() and not any(folder.iterdir()):
            folder.rmdir()
        raise


def _open_locked(folder: pathlib.Path, manifest: Manifest, outputs: tuple[str, ...],
                 resume: bool, overwrite: bool, create: bool, keep: Iterable[str],
                 created: bool, lock: tuple[int, int] | None) -> RunFolder:
    status, replaced = "new", None
    if folder.is_dir() and any(folder.iterdir()):
        try:
            marker = read_marker(folder)
        except RunFolderError:
            if not overwrite:
                raise
            marker = {"kind": manifest.kind, "outputs": []}
        if marker is None:
            raise RunFolderError(
                f"output folder '{folder}' exists and was not written by jaxirl (no {MARKER}); "
                "choose a new or empty folder (nothing in it is touched)")
        if overwrite:
            if marker.get("kind") != manifest.kind:
                raise RunFolderError(f"'{folder}' holds a jaxirl '{marker.get('kind')}' run, not "
                                     f"'{manifest.kind}'; overwrite=True only replaces a run of "
                                     "the same kind")
            if create:  # a staged build keeps the old copy until it is published
                replaced = _set_aside_outputs(
                    folder, sorted(set(outputs) | set(marker.get("outputs") or ())), keep,
                    bool(marker.get("finished")))
        else:
            previous = Manifest(str(marker.get("kind")), marker["settings"],
                                dict(marker.get("inputs") or {}))
            diffs = previous.differences(manifest)
            if diffs:
                action = "cannot resume it" if resume else "refusing to overwrite it"
                raise RunFolderError(
                    f"'{folder}' holds a run with other settings or inputs ({describe(diffs)}); "
                    f"{action}: choose another folder, or pass overwrite=True to replace it")
            if marker.get("finished"):
                status = "finished"
            elif resume:
                status = "resumed"
            else:
                raise RunFolderError(
                    f"'{folder}' holds an unfinished run of these settings; pass resume=True to "
                    "continue it, or overwrite=True to start over")
    if status != "new" and (folder / REPLACED).is_dir():
        # An overwrite that was interrupted: a resumed run replaces it when it finishes.
        replaced = folder / REPLACED
        if status == "finished" and create:  # killed between its marker and the cleanup
            shutil.rmtree(replaced, ignore_errors=True)
            replaced = None
    run = RunFolder(folder, manifest, outputs, status, created=created,
                    replaced=replaced, kept=tuple(keep), lock=lock)
    if status != "finished":
        try:
            (folder if create else folder.parent).mkdir(parents=True, exist_ok=True)
            if create:
                run.record(finished=False)
        except OSError as e:
            raise RunFolderError(f"cannot create output folder '{folder}': "
                                 f"{type(e).__name__}: {e.strerror or e}") from None
    return run


def publish(staged: str | os.PathLike, run: RunFolder) -> pathlib.Path:
    """Moves a run built in ``staged`` (see :func:`staging_dir`) into ``run.path``, finished.

    A missing or empty target is replaced in one rename; otherwise each output is
    swapped in (:func:`swap_in`) and the finished marker goes last, so that entries the
    run did not write survive.
    """
    staged, final = pathlib.Path(staged), run.path
    run.outputs = tuple(sorted(e.name for e in staged.iterdir() if e.name != MARKER))
    dataclasses.replace(run, path=staged).finish()
    if not final.exists() or (final.is_dir() and not any(final.iterdir())):
        final.parent.mkdir(parents=True, exist_ok=True)
        os.replace(staged, final)
    else:
        # Unfinished first: a publish killed between two swaps leaves old and new entries
        # side by side, which the old finished marker would vouch for.
        dataclasses.replace(run, path=final).record(finished=False)
        for entry in sorted(staged.iterdir()):
            if entry.name != MARKER:
                swap_in(entry, final / entry.name)
        os.replace(staged / MARKER, final / MARKER)
        shutil.rmtree(staged, ignore_errors=True)
    run.status = "finished"
    return final
