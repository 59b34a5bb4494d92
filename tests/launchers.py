"""Runs ``experiments/`` launchers as a user would from the repo root.

``launch`` starts one subprocess per command line; ``launch_many`` runs several command
lines of one launcher in one subprocess (``launcher_cases_main.py``), each with fresh
flags, its own argv and environment and captured output, which saves the start-up,
imports and compilations that dominate a bad-flag case. ``LauncherProcess`` keeps such a
process open for several batches (finished runs first, then the cases that use them).
"""

from __future__ import annotations

import json
import os
import pathlib
import select
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence

ROOT = pathlib.Path(__file__).resolve().parents[1]


def environment(extra: Mapping[str, str] = ()) -> dict[str, str]:
    """The launchers' environment: offline, with the checkout and tests/ importable."""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), str(ROOT / "tests")]),
               HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1")
    env.update(extra)
    return env


def launch(script: str, *args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    """``python experiments/<script> args...`` offline; returns the finished process (text output)."""
    return subprocess.run([sys.executable, str(ROOT / "experiments" / script), *args],
                          capture_output=True, text=True, env=environment(), timeout=timeout)


class LauncherProcess:
    """One process of ``experiments/<script>`` that runs batches of command lines on request.

    A batch's cases run in order, each as ``launcher_cases_main.py`` describes (fresh flags,
    argv, environment and captured output); compiled programs and imports carry over from
    one batch to the next. ``close()`` ends the process and returns what it printed
    outside the cases (start-up, C-level writes, its exit).

    Args:
      env: extra environment of the whole process.
      timeout: seconds each batch, and the exit, may take.
    """

    def __init__(self, script: str, env: Mapping[str, str] = (), timeout: float = 1800):
        self.argv0 = str(ROOT / "experiments" / script)
        self.timeout = timeout
        self._tmp = tempfile.TemporaryDirectory()
        self._out, self._err = (open(pathlib.Path(self._tmp.name, n), "w+") for n in ("out", "err"))
        requests_read, self._requests = os.pipe()
        self._results, results_write = os.pipe()
        self._proc = subprocess.Popen(
            [sys.executable, str(ROOT / "tests" / "launcher_cases_main.py"),
             f"jaxirl.launchers.{script.removesuffix('.py')}", str(requests_read),
             str(results_write)], stdout=self._out, stderr=self._err, env=environment(env),
            pass_fds=(requests_read, results_write))
        os.close(requests_read)
        os.close(results_write)
        self._pending = b""

    def run(self, cases: Mapping[str, Sequence[str]],
            case_env: Mapping[str, Mapping[str, str]] = ()
            ) -> dict[str, subprocess.CompletedProcess]:
        """Runs ``cases`` (id -> argv) in order; ``case_env``: id -> that case's extra environment.

        Returns:
          id -> a CompletedProcess-like record of that command line (exit code, stdout, stderr).
        """
        case_env = dict(case_env)
        request = json.dumps([{"id": k, "argv0": self.argv0, "argv": [str(a) for a in argv],
                               "env": dict(case_env.get(k, {}))} for k, argv in cases.items()])
        try:
            os.write(self._requests, (request + "\n").encode())
        except BrokenPipeError:
            self._fail("the process ended")
        deadline = time.monotonic() + self.timeout
        while b"\n" not in self._pending:
            ready, _, _ = select.select([self._results], [], [], deadline - time.monotonic())
            if not ready:
                self._fail("timed out")
            chunk = os.read(self._results, 1 << 20)
            if not chunk:
                self._fail("the process ended")
            self._pending += chunk
        line, self._pending = self._pending.split(b"\n", 1)
        return {k: subprocess.CompletedProcess([self.argv0], r["returncode"], r["stdout"],
                                               r["stderr"]) for k, r in json.loads(line).items()}

    def close(self, kill: bool = False) -> subprocess.CompletedProcess:
        """Ends the process (``kill``: at once); returns its exit code and its own output."""
        if self._requests is not None:
            os.close(self._requests)
            self._requests = None
            try:
                self._proc.wait(0 if kill else self.timeout)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
            os.close(self._results)
        self._out.seek(0)
        self._err.seek(0)
        done = subprocess.CompletedProcess([self.argv0], self._proc.returncode, self._out.read(),
                                           self._err.read())
        self._out.close()
        self._err.close()
        self._tmp.cleanup()
        return done

    def _fail(self, why: str) -> None:
        done = self.close(kill=True)
        raise AssertionError(f"{self.argv0}: no results ({why}; exit {done.returncode}): "
                             f"{done.stderr[-3000:]}")

    def __enter__(self) -> LauncherProcess:
        return self

    def __exit__(self, *exc) -> None:
        if self._requests is not None:
            self.close(kill=exc[0] is not None)


def launch_many(script: str, cases: Mapping[str, Sequence[str]],
                case_env: Mapping[str, Mapping[str, str]] = (), env: Mapping[str, str] = (),
                timeout: float = 1800) -> dict[str, subprocess.CompletedProcess]:
    """Runs ``experiments/<script>`` once per ``cases`` entry (id -> argv) in one process.

    Args:
      case_env: id -> extra environment of that case only.
      env: extra environment of the whole process.

    Returns:
      id -> a CompletedProcess-like record of that command line (exit code, stdout, stderr).
    """
    with LauncherProcess(script, env, timeout) as process:
        results = process.run(cases, case_env)
        done = process.close()
    assert done.returncode == 0, done.stderr[-3000:]
    return results
