"""Runs ``experiments/`` launchers as a user would from the repo root.

``launch`` starts one subprocess per command line; ``launch_many`` runs several command
lines of one launcher in one subprocess (``launcher_cases_main.py``), each with fresh
flags, its own argv and environment and captured output, which saves the start-up,
imports and compilations that dominate a bad-flag case.
"""

from __future__ import annotations

import json
import os
import pathlib
import subprocess
import sys
import tempfile
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
    module = f"jaxirl.launchers.{script.removesuffix('.py')}"
    argv0 = str(ROOT / "experiments" / script)
    case_env = dict(case_env)
    with tempfile.TemporaryDirectory() as tmp:
        inputs, outputs = pathlib.Path(tmp, "cases.json"), pathlib.Path(tmp, "results.json")
        inputs.write_text(json.dumps([
            {"id": k, "argv0": argv0, "argv": [str(a) for a in argv],
             "env": dict(case_env.get(k, {}))} for k, argv in cases.items()]))
        proc = subprocess.run([sys.executable, str(ROOT / "tests" / "launcher_cases_main.py"),
                               module, str(inputs), str(outputs)], capture_output=True,
                              text=True, env=environment(env), timeout=timeout)
        assert proc.returncode == 0, proc.stderr[-3000:]
        results = json.loads(outputs.read_text())
    return {k: subprocess.CompletedProcess([argv0], r["returncode"], r["stdout"], r["stderr"])
            for k, r in results.items()}
