"""Runs experiments/pipeline.py and SIGKILLs itself right after the IRL stage's 2nd checkpoint.

A real ``kill -9`` at a deterministic point: the test then reruns the pipeline and
checks that it resumes and ends with the same numbers as an uninterrupted run.
"""

import os
import pathlib
import runpy
import signal
import sys

from jaxirl.checkpoint import Checkpointer

_original_save = Checkpointer.save
_irl_saves = 0


def _save_then_die(self, step, *args, **kwargs):
    global _irl_saves
    saved = _original_save(self, step, *args, **kwargs)
    if "/irl-" in str(self.directory) and saved:
        _irl_saves += 1
        if _irl_saves == 2:
            os.kill(os.getpid(), signal.SIGKILL)
    return saved


Checkpointer.save = _save_then_die
root = pathlib.Path(__file__).resolve().parents[2]
# As `python experiments/X.py` would: the launcher imports its sibling modules.
sys.path.insert(0, str(root / "experiments"))
sys.argv = [str(root / "experiments" / "pipeline.py"), *sys.argv[1:]]
runpy.run_path(sys.argv[0], run_name="__main__")
