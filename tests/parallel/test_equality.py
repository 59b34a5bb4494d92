"""Every stage on a mesh of N simulated CPU devices equals the one-device run (subprocess).

The default suite checks a data mesh of 2 and the FSDP mesh data=2 x fsdp=4 (8
devices); ``-m slow`` adds data meshes of 4 and 8 and data=1 x fsdp=8.
"""

import json
import os
import pathlib
import subprocess
import sys

import pytest

HERE = pathlib.Path(__file__).parent
TOL = 1e-5


def run_meshes(*meshes: str) -> list[dict]:
    flags = os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=8"
    env = dict(os.environ, XLA_FLAGS=flags.strip(),
               JAX_PLATFORMS="cpu",
               PYTHONPATH=os.pathsep.join([str(HERE.parent), str(HERE.parent.parent)]))
    out = subprocess.run([sys.executable, str(HERE / "equality_main.py"), *meshes],
                         capture_output=True, text=True, env=env, timeout=1500)
    assert out.returncode == 0, out.stderr[-3000:]
    rows = [json.loads(line.split(" ", 1)[1]) for line in out.stdout.splitlines()
            if line.startswith("RESULT ")]
    assert [r["mesh"] for r in rows] == [str(m) for m in meshes_parsed(meshes)]
    return rows


def meshes_parsed(meshes):
    from jaxirl.parallel import MeshConfig

    return [MeshConfig.parse(m) for m in meshes]


def check(row: dict) -> None:
    assert row["tokens_equal"] and row["texts_equal"], row  # sampling keys per global row
    assert row["prompt_width"] == 4, row  # 8 padded columns trimmed to the longest prompt
    for key in ("experience", "experience_stats", "update_params", "update_metrics",
                "irl_features", "irl_params", "irl_metrics", "irl_scores", "irl_scalar_params",
                "irl_scalar_scores", "sae_params",
                "sae_loss", "sae_resumed", "capture"):
        assert row[key] <= TOL, (key, row)
    assert row["sae_resumed_same_mesh"] == 0.0, row  # a resumed SAE is the uninterrupted one
    # The steps really moved the parameters, so equality is not vacuous.
    assert row["update_moved"] > 1e-4 and row["irl_moved"] > 1e-4, row
    assert row["irl_scalar_moved"] > 1e-4, row


def check_fsdp_shards(row: dict, fsdp: int) -> None:
    # The top block's QKV kernel [32, 96] is split along its largest dimension (96), and
    # its Adam moment alike; over data it is replicated.
    shards = row["shards"]
    assert shards["global"] == [32, 96]
    assert shards["kernel"] == [[32, 96 // fsdp]] and shards["adam_mu"] == [[32, 96 // fsdp]]


def test_data_and_fsdp_meshes_equal_one_device():
    data2, fsdp4 = run_meshes("data=2", "data=2,fsdp=4")
    check(data2)
    assert data2["shards"]["kernel"] == [[32, 96]]  # data parallelism replicates
    check(fsdp4)
    check_fsdp_shards(fsdp4, 4)


@pytest.mark.slow
def test_larger_meshes_equal_one_device():
    data4, data8, fsdp8 = run_meshes("data=4", "data=8", "data=1,fsdp=8")
    for row in (data4, data8, fsdp8):
        check(row)
    check_fsdp_shards(fsdp8, 8)
