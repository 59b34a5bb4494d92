"""The mesh and its sharding rules: parsing, the FSDP rule, errors (one device)."""

import jax
import numpy as np
import pytest
from jax.sharding import PartitionSpec as P

from jaxirl import parallel
from jaxirl.errors import ConfigError
from jaxirl.parallel import MeshConfig


def test_mesh_flags_parse_and_num_devices_is_a_data_mesh():
    assert MeshConfig.parse("data=2,fsdp=4") == MeshConfig(2, 4)
    assert MeshConfig.parse("fsdp=8") == MeshConfig(1, 8)
    assert MeshConfig.from_flags(None, 4) == MeshConfig(data=4, fsdp=1)
    assert MeshConfig.from_flags("data=2,fsdp=2", None).size == 4
    assert str(MeshConfig(2, 4)) == "data=2,fsdp=4"


@pytest.mark.parametrize("text,message", [
    ("data=2,model=4", "expected data=D,fsdp=F, got 'model=4'"),
    ("data=two", "'two' is not an integer"),
    ("data=0", "--mesh data must be a positive integer"),
    ("data=1,data=2", "names 'data' twice"),
])
def test_bad_mesh_flags_are_one_line_errors(text, message):
    with pytest.raises(ConfigError, match=message):
        MeshConfig.parse(text)


def test_mesh_larger_than_the_devices_is_an_error():
    with pytest.raises(ConfigError, match=r"--mesh data=2,fsdp=4 needs 8 devices but JAX sees 1"):
        parallel.make_mesh(MeshConfig(2, 4))
    with pytest.raises(ConfigError, match="either --mesh or --num_devices"):
        MeshConfig.from_flags("data=2", 2)


def test_fsdp_rule_splits_the_largest_divisible_dimension():
    assert parallel.fsdp_spec((32, 96), 8) == P(None, "fsdp")
    assert parallel.fsdp_spec((96, 32), 8) == P("fsdp", None)
    assert parallel.fsdp_spec((13, 32), 8) == P(None, "fsdp")  # 13 does not split
    assert parallel.fsdp_spec((64, 64), 8) == P("fsdp", None)  # ties: the first
    assert parallel.fsdp_spec((1,), 8) == P()  # nothing splits: replicated
    assert parallel.fsdp_spec((), 8) == P()
    assert parallel.fsdp_spec((32, 96), 1) == P()  # no fsdp axis: replicated


def test_rows_batch_split_and_one_device_round_trip():
    mesh = parallel.make_mesh()
    x = np.arange(24, dtype=np.float32).reshape(6, 4)
    g = parallel.shard_rows(mesh, x)
    assert g.sharding.spec == P(("data", "fsdp"), None)
    np.testing.assert_array_equal(parallel.to_host(g), x)
    parallel.check_rows(6, mesh, "--batch_size 6")
    out = parallel.map_rows(lambda a: a * 2, (x,), batch_size=4)  # last batch padded
    np.testing.assert_array_equal(out, x * 2)
    state = {"params": {"w": np.ones((8, 4), np.float32)}}
    placed = parallel.place(state, parallel.param_shardings(state, mesh))
    assert isinstance(placed["params"]["w"], jax.Array)


def test_a_batch_that_does_not_split_over_the_mesh_is_an_error():
    mesh = jax.sharding.AbstractMesh((2, 4), ("data", "fsdp"))  # no devices needed
    parallel.check_rows(16, mesh, "--batch_size 16")
    with pytest.raises(ConfigError, match=r"--batch_size 12 is not divisible by the 8 devices "
                                          r"of --mesh data=2,fsdp=4"):
        parallel.check_rows(12, mesh, "--batch_size 12")
