"""SAE training on 2 simulated devices equals 1 device on the same global batches."""

import os
import pathlib
import re
import subprocess
import sys

HERE = pathlib.Path(__file__).resolve().parent


def test_two_devices_match_one():
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=2",
               JAX_PLATFORMS="cpu", PYTHONPATH=str(HERE.parents[1]))
    out = subprocess.run([sys.executable, str(HERE / "sae_pmap_main.py")], capture_output=True,
                         text=True, env=env, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    m = re.search(r"RESULT train=(\S+) step=(\S+) loss=(\S+) moved=(\S+)", out.stdout)
    train, step, loss, moved = map(float, m.groups())
    assert moved > 1e-3  # the steps did change the parameters
    assert train < 1e-5 and step < 1e-5 and loss < 1e-6, out.stdout
