"""kill -9 while ``irl --resume`` re-saves the reward models loses no finished model.

A run is killed after saving its reward models but before it is marked finished; its
``--resume`` is killed in the middle of swapping the new ``seed_1`` in (the finished copy
moved aside, the new one not yet in place). Both finished models still load with their
original scores, a last ``--resume`` finishes the run, and a rerun is a no-op.
"""

import os
import pathlib
import signal
import subprocess
import sys

import numpy as np
from tiny_setup import write_tiny_demos, write_tiny_model

from jaxirl.irl.reward_model import load_reward_model

ROOT = pathlib.Path(__file__).resolve().parents[2]
HERE = pathlib.Path(__file__).parent
TEXTS = ["the cat sat good", "a dog ran bad", "the mat nice"]


def _irl(script, workdir, inputs, kill_at=None, *extra):
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), str(ROOT / "tests")]),
               JAXIRL_CACHE=str(inputs / "cache"), HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1")
    if kill_at:
        env["JAXIRL_KILL_AT"] = kill_at
    args = ["--demos", str(inputs / "demos"), "--backbone", str(inputs / "model"),
            "--workdir", str(workdir), "--seeds", "2", "--epochs", "1", "--batch_size", "4",
            "--max_length", "8", "--noprogress", *extra]
    return subprocess.run([sys.executable, str(script), *args], capture_output=True, text=True,
                          env=env, timeout=900)


def _scores(workdir):
    return {s: load_reward_model(workdir / "reward_models" / f"seed_{s}").score(TEXTS)
            for s in (0, 1)}


def test_kill_during_resumed_save_loses_no_finished_model(tmp_path):
    write_tiny_model(tmp_path / "model")
    write_tiny_demos(tmp_path / "demos")
    workdir = tmp_path / "irl"
    killed = _irl(HERE / "kill_during_irl_save_main.py", workdir, tmp_path, "finish")
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-3000:]
    finished = _scores(workdir)

    killed = _irl(HERE / "kill_during_irl_save_main.py", workdir, tmp_path, "swap_seed_1",
                  "--resume")
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-3000:]
    # The kill left seed_1's finished copy aside, under a hidden name: nothing is lost.
    assert not (workdir / "reward_models" / "seed_1").exists()
    assert len(list((workdir / "reward_models").glob(".seed_1.old-*"))) == 1
    for seed, scores in _scores(workdir).items():  # loading puts the finished copy back
        np.testing.assert_array_equal(scores, finished[seed])

    resumed = _irl(ROOT / "experiments" / "irl.py", workdir, tmp_path, None, "--resume")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    for seed, scores in _scores(workdir).items():
        np.testing.assert_array_equal(scores, finished[seed])
    assert sorted(p.name for p in (workdir / "reward_models").iterdir()) == ["seed_0", "seed_1"]

    again = _irl(ROOT / "experiments" / "irl.py", workdir, tmp_path)
    assert again.returncode == 0 and "nothing to do" in again.stdout, again.stderr[-3000:]
