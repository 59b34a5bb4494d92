"""Runs an ``experiments/`` launcher in a subprocess, as a user would from the repo root."""

from __future__ import annotations

import os
import pathlib
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parents[1]


def launch(script: str, *args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    """``python experiments/<script> args...`` offline; returns the finished process (text output)."""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), str(ROOT / "tests")]),
               HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1")
    return subprocess.run([sys.executable, str(ROOT / "experiments" / script), *args],
                          capture_output=True, text=True, env=env, timeout=timeout)
