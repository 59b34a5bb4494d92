"""IRL training under pmap: 4 simulated devices give the 1-device update (subprocess)."""

import os
import pathlib
import re
import subprocess
import sys

HERE = pathlib.Path(__file__).parent


def test_pmap_four_devices_match_one_device():
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=4",
               PYTHONPATH=os.pathsep.join([str(HERE.parent), str(HERE.parent.parent)]))
    out = subprocess.run([sys.executable, str(HERE / "irl_pmap_main.py"), "4"],
                         capture_output=True, text=True, env=env, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    m = re.search(r"RESULT maxdiff=(\S+) moved=(\S+) lossdiff=(\S+) scorediff=(\S+)", out.stdout)
    maxdiff, moved, lossdiff, scorediff = map(float, m.groups())
    assert moved > 1e-4
    assert maxdiff <= 1e-5 and lossdiff <= 1e-5 and scorediff <= 1e-5
