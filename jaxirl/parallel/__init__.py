"""One sharded-parallel layer for every stage: a ``data × fsdp`` mesh, sharding rules, ``sharded_jit``.

See :mod:`jaxirl.parallel.mesh` (the mesh), :mod:`jaxirl.parallel.sharding` (the
rules and the jitted step) and :mod:`jaxirl.parallel.distributed` (multi-host).
"""

from jaxirl.parallel.distributed import DistributedConfig, initialize, is_main_process, sync
from jaxirl.parallel.mesh import (
    AXES,
    BATCH_AXES,
    DATA,
    FSDP,
    MeshConfig,
    batch_split,
    check_rows,
    make_mesh,
    mesh_config,
)
from jaxirl.parallel.sharding import (
    PARAM_FIELDS,
    constrain_rows,
    fsdp_spec,
    iter_rows,
    map_rows,
    param_shardings,
    place,
    place_params,
    process_rows,
    replicate,
    replicated,
    replicated_leaves,
    rows_sharding,
    rows_spec,
    shard_rows,
    sharded_jit,
    state_shardings,
    to_host,
)

__all__ = [
    "AXES",
    "BATCH_AXES",
    "DATA",
    "FSDP",
    "PARAM_FIELDS",
    "DistributedConfig",
    "MeshConfig",
    "batch_split",
    "check_rows",
    "constrain_rows",
    "fsdp_spec",
    "initialize",
    "is_main_process",
    "iter_rows",
    "make_mesh",
    "map_rows",
    "mesh_config",
    "param_shardings",
    "place",
    "place_params",
    "process_rows",
    "replicate",
    "replicated",
    "replicated_leaves",
    "rows_sharding",
    "rows_spec",
    "shard_rows",
    "sharded_jit",
    "state_shardings",
    "sync",
    "to_host",
]
