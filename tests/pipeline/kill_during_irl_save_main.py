"""Runs experiments/irl.py and SIGKILLs itself at a point of saving the reward models.

``JAXIRL_KILL_AT``:
  * ``finish``: every reward model is saved, the run is not yet marked finished;
  * ``swap_seed_1``: re-saving ``seed_1``, between the two renames of the swap (the
    finished copy is moved aside, the new one is not yet in place).
A real ``kill -9`` at a deterministic point; the test then checks that no finished
reward model is lost and that ``--resume`` completes the run.
"""

import os
import pathlib
import runpy
import signal
import sys

from jaxirl import runs


def _die():
    os.kill(os.getpid(), signal.SIGKILL)


point = os.environ["JAXIRL_KILL_AT"]
if point == "finish":
    runs.RunFolder.finish = lambda self, **extra: _die()
elif point == "swap_seed_1":
    _replace = os.replace

    def replace_then_die(src, dst):
        _replace(src, dst)
        if pathlib.Path(dst).name.startswith(".seed_1.old-"):
            _die()

    runs.os.replace = replace_then_die
else:
    raise SystemExit(f"unknown JAXIRL_KILL_AT {point!r}")
root = pathlib.Path(__file__).resolve().parents[2]
# As `python experiments/X.py` would: the launcher imports its sibling modules.
sys.path.insert(0, str(root / "experiments"))
sys.argv = [str(root / "experiments" / "irl.py"), *sys.argv[1:]]
runpy.run_path(sys.argv[0], run_name="__main__")
