"""Two processes on localhost (2 simulated CPU devices each) equal one process with 4 devices.

Only process 0 writes files (Orbax checkpoints aside, which every process writes). The
opt-in slow test also kills the two processes after a checkpoint and reruns them: they
must still end where the one process ends.
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
    # multihost_main.py adds its device count to the suite's XLA flags (conftest.py).
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
    """The file a write lands in: ``.x.tmp-PID-THREAD`` is renamed to ``x``, ``.x.building-*/``
    to ``x/``."""
    path = re.sub(r"(^|/)\.([^/]+)\.tmp-\d+(-\d+)?$", r"\1\2", path)
    return re.sub(r"(^|/)\.([^/]+)\.building-[^/]+", r"\1\2", path)


def result(out: pathlib.Path) -> dict:
    return json.loads((out / "result.json").read_text())


def assert_same(a: dict, b: dict) -> None:
    for part in ("ppo", "irl", "sae"):
        for key in ("sum", "abs"):
            assert abs(a[part][key] - b[part][key]) <= 1e-4 * max(1.0, abs(b[part][key])), part
        np.testing.assert_allclose(a[part]["first"], b[part]["first"], atol=1e-5)


def reference(tmp_path: pathlib.Path) -> dict:
    """The one-process run: 4 devices in one XLA client."""
    ref = launch(tmp_path / "one", 1, "full")
    assert ref[0].returncode == 0, ref[0].stderr[-3000:]
    one = result(tmp_path / "one")
    assert one["processes"] == 1 and one["devices"] == 4
    return one


def assert_only_process_0_writes(out: pathlib.Path, phases: tuple[str, ...]) -> None:
    """Process 0 writes the logs, metrics, reports and model JSON (atomically, through a
    temporary file or staging folder beside the final one); process 1 writes nothing."""
    for phase in phases:
        writes = [json.loads((out / f"writes_{phase}_{i}.json").read_text()) for i in (0, 1)]
        assert writes[1] == [], (phase, writes[1])
    finals = {final_name(w) for phase in phases
              for w in json.loads((out / f"writes_{phase}_0.json").read_text())}
    for expected in ("ppo/metrics.jsonl", "irl/irl_metrics.json", "result.json",
                     "irl/reward_models/seed_0/reward_model.json"):
        assert expected in finals, (expected, finals)
        assert (out / expected).is_file(), expected
    lines = (out / "ppo" / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(x)["step"] for x in lines] == [1, 2, 3]


def two_process_result(out: pathlib.Path, procs: list[subprocess.CompletedProcess]) -> dict:
    """The finished 2-process run's result, after checking that both processes succeeded."""
    for p in procs:
        assert p.returncode == 0, p.stderr[-3000:]
    two = result(out)
    assert two["processes"] == 2 and two["devices"] == 4
    return two


def test_two_processes_equal_one_process(tmp_path):
    """A 2-process run (3 IRL epochs, 3 PPO iterations) ends where one 4-device process
    ends, and process 1 writes nothing."""
    one = reference(tmp_path)
    two = two_process_result(tmp_path / "two", launch(tmp_path / "two", 2, "full"))
    assert_same(two, one)
    assert_only_process_0_writes(tmp_path / "two", ("full",))


# Three launches of several processes: opt-in. The one-process kill-and-resume tests
# (tests/ppo/test_ppo_trainer.py, tests/irl/test_irl_train.py) are in the default suite.
@pytest.mark.slow
def test_two_processes_killed_and_resumed_equal_one_process(tmp_path):
    """One 2-process run, killed in PPO iteration 3 (after iteration 2's checkpoint and 2
    of 3 IRL epochs) and rerun, ends where one 4-device process ends; process 1 writes
    nothing in either phase."""
    one = reference(tmp_path)
    killed = launch(tmp_path / "two", 2, "killed")
    assert all(p.returncode == 9 for p in killed), [p.stderr[-2000:] for p in killed]
    assert not (tmp_path / "two" / "result.json").exists()
    two = two_process_result(tmp_path / "two", launch(tmp_path / "two", 2, "resumed"))
    assert_same(two, one)
    # The SAE finished before the kill: read back, its history whole.
    assert two["sae_read_back"] and two["sae_epochs"] == 3 and not one["sae_read_back"]
    assert_only_process_0_writes(tmp_path / "two", ("killed", "resumed"))
