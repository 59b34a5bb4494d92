"""Two processes on localhost (2 simulated CPU devices each) equal one process with 4 devices.

Also: only process 0 writes files (Orbax checkpoints aside, which every process writes);
and (``-m slow``) killing both processes after a checkpoint and rerunning restores the
same state.
"""

import json
import os
import pathlib
import re
import socket
import subprocess
import sys

import numpy as np
import pytest

HERE = pathlib.Path(__file__).parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("localhost", 0))
        return s.getsockname()[1]


def launch(out: pathlib.Path, nproc: int, phase: str) -> list[subprocess.CompletedProcess]:
    out.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ, JAX_PLATFORMS="cpu",
               PYTHONPATH=os.pathsep.join([str(HERE.parent), str(HERE.parent.parent)]))
    env.pop("XLA_FLAGS", None)
    port = str(free_port())
    procs = [subprocess.Popen([sys.executable, str(HERE / "multihost_main.py"), str(out), str(i),
                               str(nproc), port, phase], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True, env=env)
             for i in range(nproc)]
    done = []
    for p in procs:
        stdout, stderr = p.communicate(timeout=1200)
        done.append(subprocess.CompletedProcess(p.args, p.returncode, stdout, stderr))
    return done


def final_name(path: str) -> str:
    """The file a write lands in: ``.x.tmp-PID`` is renamed to ``x``, ``.x.building-*/`` to ``x/``."""
    path = re.sub(r"(^|/)\.([^/]+)\.tmp-\d+$", r"\1\2", path)
    return re.sub(r"(^|/)\.([^/]+)\.building-[^/]+", r"\1\2", path)


def result(out: pathlib.Path) -> dict:
    return json.loads((out / "result.json").read_text())


def assert_same(a: dict, b: dict) -> None:
    for part in ("ppo", "irl"):
        for key in ("sum", "abs"):
            assert abs(a[part][key] - b[part][key]) <= 1e-4 * max(1.0, abs(b[part][key])), part
        np.testing.assert_allclose(a[part]["first"], b[part]["first"], atol=1e-5)


@pytest.fixture(scope="module")
def one_process(tmp_path_factory):
    """The single-process reference run (4 devices in one process)."""
    out = tmp_path_factory.mktemp("one")
    ref = launch(out, 1, "full")
    assert ref[0].returncode == 0, ref[0].stderr[-3000:]
    return result(out)


def test_two_processes_equal_one_and_only_process_0_writes(tmp_path, one_process):
    two = launch(tmp_path / "two", 2, "full")
    for p in two:
        assert p.returncode == 0, p.stderr[-3000:]
    two_result = result(tmp_path / "two")
    assert one_process["processes"] == 1 and two_result["processes"] == 2
    assert one_process["devices"] == two_result["devices"] == 4
    assert_same(two_result, one_process)

    # Process 0 writes the logs, metrics, reports and model JSON (atomically, through a
    # temporary file or staging folder beside the final one); process 1 writes nothing.
    writes = [json.loads((tmp_path / "two" / f"writes_{i}.json").read_text()) for i in (0, 1)]
    assert writes[1] == [], writes[1]
    finals = {final_name(w) for w in writes[0]}
    for expected in ("ppo/metrics.jsonl", "irl/irl_metrics.json", "result.json",
                     "irl/reward_models/seed_0/reward_model.json"):
        assert expected in finals, (expected, writes[0])
        assert (tmp_path / "two" / expected).is_file(), expected
    lines = (tmp_path / "two" / "ppo" / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(x)["step"] for x in lines] == [1, 2, 3]


@pytest.mark.slow
def test_two_processes_killed_after_a_checkpoint_resume_to_the_same_result(tmp_path,
                                                                          one_process):
    # Killed in PPO iteration 3 (after iteration 2's checkpoint and 2 IRL epochs), then rerun.
    killed = launch(tmp_path / "kill", 2, "killed")
    assert all(p.returncode == 9 for p in killed), [p.stderr[-2000:] for p in killed]
    assert not (tmp_path / "kill" / "result.json").exists()
    resumed = launch(tmp_path / "kill", 2, "resumed")
    for p in resumed:
        assert p.returncode == 0, p.stderr[-3000:]
    assert_same(result(tmp_path / "kill"), one_process)
    lines = (tmp_path / "kill" / "ppo" / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(x)["step"] for x in lines] == [1, 2, 3]
