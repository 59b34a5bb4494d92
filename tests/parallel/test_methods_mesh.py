"""The methods stage trains on the study's mesh: on 2 simulated CPU devices (subprocess)
its IRL methods receive the data=2 mesh and equal the one-device run."""

import json
import os
import pathlib
import subprocess
import sys

HERE = pathlib.Path(__file__).parent
TOL = 1e-5


def test_a_method_trains_on_the_given_mesh_and_equals_one_device():
    flags = os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=2"
    env = dict(os.environ, XLA_FLAGS=flags.strip(), JAX_PLATFORMS="cpu",
               PYTHONPATH=os.pathsep.join([str(HERE.parent), str(HERE.parent.parent)]))
    out = subprocess.run([sys.executable, str(HERE / "methods_mesh_main.py")],
                         capture_output=True, text=True, env=env, timeout=900)
    assert out.returncode == 0, out.stderr[-3000:]
    (row,) = [json.loads(line.split(" ", 1)[1]) for line in out.stdout.splitlines()
              if line.startswith("RESULT ")]
    # One device (no mesh given), then the mesh for training and for saving the seeds.
    assert row["devices"] == [None, 2, 2], row
    assert row["test"] <= TOL and row["train"] <= TOL and row["saved"] <= 1e-4, row
    assert row["moved"] > 1e-3, row  # training moved the rewards: equality is not vacuous
