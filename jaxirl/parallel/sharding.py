"""How pytrees are laid out on the mesh, and the one way a step is jitted onto it.

Three rules, used by every stage:

* **rows**: a batch array is split along its row axis over ``data × fsdp``
  (:func:`rows_sharding`, :func:`shard_rows`, :func:`constrain_rows`);
* **parameters**: every leaf of a parameter or optimizer-state tree is split over
  ``fsdp`` along its largest dimension divisible by F, and replicated over
  ``data``; a leaf with no such dimension is replicated (and reported by
  :func:`replicated_leaves`). With F = 1 everything is replicated: plain data
  parallelism;
* **everything else** (step counters, PRNG keys, controller state) is replicated.

A train state is a ``flax.struct`` dataclass; its fields named in
:data:`PARAM_FIELDS` follow the parameter rule (:func:`state_shardings`).

Steps are ``jax.jit`` with these shardings as ``in_shardings``/``out_shardings``
(:func:`sharded_jit`): the step is written for the global batch, exactly as on
one device, and XLA's SPMD partitioner splits it, reducing gradients over the
mesh where the global means need it. Nothing in a loss knows about devices.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable
from typing import Any

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from jaxirl.parallel.mesh import BATCH_AXES, FSDP, batch_split

# Fields of a train state that hold parameters or optimizer state.
PARAM_FIELDS = ("params", "opt_state", "ref_branch", "frozen_params")


def replicated(mesh: Mesh) -> NamedSharding:
    return NamedSharding(mesh, P())


def rows_spec(ndim: int, axis: int = 0) -> P:
    """PartitionSpec splitting dimension ``axis`` of an ``ndim``-array over the batch axes."""
    return P(*([None] * axis), BATCH_AXES, *([None] * (ndim - axis - 1)))


def rows_sharding(mesh: Mesh, ndim: int, axis: int = 0) -> NamedSharding:
    return NamedSharding(mesh, rows_spec(ndim, axis))


def fsdp_spec(shape: tuple[int, ...], fsdp: int) -> P:
    """The parameter rule for one leaf: its largest dimension divisible by ``fsdp`` is split.

    Ties go to the first such dimension; a leaf with none (or ``fsdp == 1``) is replicated.
    """
    dims = [i for i, n in enumerate(shape) if n % fsdp == 0] if fsdp > 1 else []
    if not dims:
        return P()
    axis = max(dims, key=lambda i: (shape[i], -i))
    spec = [None] * len(shape)
    spec[axis] = FSDP
    return P(*spec)


def param_shardings(tree: Any, mesh: Mesh) -> Any:
    """NamedShardings of a parameter (or optimizer-state) pytree by the parameter rule."""
    fsdp = mesh.shape[FSDP]
    return jax.tree_util.tree_map(lambda x: NamedSharding(mesh, fsdp_spec(np.shape(x), fsdp)),
                                  tree)


def replicated_leaves(tree: Any, mesh: Mesh) -> list[str]:
    """Paths and shapes of the non-scalar leaves the parameter rule leaves replicated."""
    fsdp = mesh.shape[FSDP]
    if fsdp == 1:
        return []
    out = []
    for path, leaf in jax.tree_util.tree_leaves_with_path(tree):
        shape = tuple(np.shape(leaf))
        if shape and fsdp_spec(shape, fsdp) == P():
            out.append(f"{jax.tree_util.keystr(path)} {list(shape)}")
    return out


def state_shardings(state: Any, mesh: Mesh) -> Any:
    """Shardings of a whole train state: :data:`PARAM_FIELDS` by the parameter rule, the rest replicated.

    ``state`` may hold arrays or ``jax.ShapeDtypeStruct`` (from ``jax.eval_shape``).
    """
    repl = replicated(mesh)
    if not dataclasses.is_dataclass(state):
        return param_shardings(state, mesh)
    fields = {}
    for field in dataclasses.fields(state):
        if field.metadata.get("pytree_node", True) is False:
            continue
        value = getattr(state, field.name)
        fields[field.name] = (param_shardings(value, mesh) if field.name in PARAM_FIELDS
                              else jax.tree_util.tree_map(lambda _: repl, value))
    return state.replace(**fields)


def place(tree: Any, shardings: Any) -> Any:
    """``device_put`` of a host or device pytree with the given shardings (a copy, never an alias).

    Every process passes the same full values; each keeps only its devices' shards.
    """
    def put(x, sharding):
        if jax.process_count() == 1 or (isinstance(x, jax.Array) and not x.is_fully_addressable):
            return jax.device_put(x, sharding, may_alias=False)
        host = np.asarray(x)
        return jax.make_array_from_callback(host.shape, sharding, lambda index: host[index])

    return jax.tree_util.tree_map(put, tree, shardings)


def process_rows(rows: int, mesh: Mesh) -> slice:
    """The contiguous block of batch rows (of ``rows``) whose shards live on this process."""
    sharding = rows_sharding(mesh, 1)
    starts, stops = [], []
    for index in sharding.addressable_devices_indices_map((rows,)).values():
        sl = index[0]
        starts.append(sl.start or 0)
        stops.append(rows if sl.stop is None else sl.stop)
    return slice(min(starts), max(stops))


def shard_rows(mesh: Mesh, tree: Any, axis: int = 0) -> Any:
    """Global arrays, rows (dimension ``axis``) split over the mesh, from full host arrays.

    Every process holds the same host arrays (a seeded batch order); each reads only
    the rows of its own devices and the global array is assembled with
    ``jax.make_array_from_process_local_data``, so nothing crosses hosts.
    """
    def put(x):
        x = np.asarray(x)
        sharding = rows_sharding(mesh, x.ndim, axis)
        rows = process_rows(x.shape[axis], mesh)
        local = np.take(x, np.arange(rows.start, rows.stop), axis=axis)
        return jax.make_array_from_process_local_data(sharding, local, x.shape)

    return jax.tree_util.tree_map(put, tree)


def place_params(mesh: Mesh, params: Any) -> Any:
    """A parameter pytree placed on the mesh by the parameter rule."""
    return place(params, param_shardings(params, mesh))


def replicate(mesh: Mesh, tree: Any) -> Any:
    """A host or device pytree replicated on every device of the mesh."""
    repl = replicated(mesh)
    return place(tree, jax.tree_util.tree_map(lambda _: repl, tree))


def to_host(tree: Any) -> Any:
    """NumPy copies of (possibly multi-process) global arrays, gathered on every process."""
    from jax.experimental import multihost_utils

    def get(x):
        if not isinstance(x, jax.Array) or x.is_fully_addressable:
            return np.asarray(x)
        if x.is_fully_replicated:
            return np.asarray(x.addressable_data(0))
        return np.asarray(multihost_utils.process_allgather(x, tiled=True))

    return jax.tree_util.tree_map(get, tree)


def iter_rows(fn: Callable, arrays: tuple[np.ndarray, ...], batch_size: int,
              mesh: Mesh | None = None, out_axis: int = 0):
    """Yields ``(rows, outputs)``: ``fn`` over fixed-size row batches of host arrays [N, ...].

    Every call has ``batch_size`` rows (the last batch is topped up with repeats of the
    first rows, whose outputs are dropped), so ``fn`` compiles once. With ``mesh`` the
    batch size is rounded up to a multiple of its batch split, each batch's rows are
    split over the mesh (``fn`` runs under it) and the outputs are gathered to the host.
    ``fn`` must be row-wise; ``out_axis`` is the row axis of its outputs. ``rows`` is the
    slice of the N rows an output covers.
    """
    n = len(arrays[0])
    batch_size = rows_multiple(max(1, min(batch_size, n)), mesh)
    for start in range(0, n, batch_size):
        idx = np.arange(start, start + batch_size) % n
        out = apply_rows(fn, tuple(np.asarray(a)[idx] for a in arrays), mesh)
        keep = np.arange(min(batch_size, n - start))
        yield slice(start, start + len(keep)), jax.tree_util.tree_map(
            lambda x, keep=keep: np.take(x, keep, axis=out_axis), out)


def rows_multiple(batch_size: int, mesh: Mesh | None = None) -> int:
    """``batch_size`` rounded up to a multiple of the mesh's batch split (unchanged without one)."""
    split = 1 if mesh is None else batch_split(mesh)
    return -(-batch_size // split) * split


def apply_rows(fn: Callable, arrays: tuple[np.ndarray, ...], mesh: Mesh | None = None) -> Any:
    """``fn(*arrays)`` on host arrays, their rows split over ``mesh``; the outputs on the host.

    With ``mesh`` the row count must split over its batch axes (:func:`rows_multiple`)
    and ``fn`` runs under the mesh; without one it is a plain call.
    """
    if mesh is None:
        return to_host(fn(*arrays))
    with jax.set_mesh(mesh):
        return to_host(fn(*shard_rows(mesh, arrays)))


def map_rows(fn: Callable, arrays: tuple[np.ndarray, ...], batch_size: int,
             mesh: Mesh | None = None, out_axis: int = 0) -> Any:
    """The outputs of :func:`iter_rows`, concatenated on the host along ``out_axis``."""
    outs = [out for _, out in iter_rows(fn, arrays, batch_size, mesh, out_axis)]
    return jax.tree_util.tree_map(lambda *xs: np.concatenate(xs, axis=out_axis), *outs)


def constrain_rows(tree: Any, axis: int = 0) -> Any:
    """Inside a step traced on a mesh: keep dimension ``axis`` of every leaf split over the batch axes.

    Used where a gather (a minibatch drawn by index) would otherwise leave XLA free to
    replicate the rows. A no-op outside a mesh context, so pure steps still run under a
    plain ``jax.jit``.
    """
    if jax.sharding.get_abstract_mesh().empty:
        return tree
    return jax.tree_util.tree_map(
        lambda x: jax.lax.with_sharding_constraint(x, rows_spec(x.ndim, axis))
        if x.ndim > axis else x, tree)


def sharded_jit(fn: Callable, mesh: Mesh, *, in_shardings: Any, out_shardings: Any,
                donate_argnums: tuple[int, ...] = (), static_argnums: tuple[int, ...] = ()
                ) -> Callable:
    """The one way a step is put on the mesh: ``jax.jit`` with explicit in/out shardings.

    Calls (and ``.lower``) run under ``jax.set_mesh(mesh)``, so that
    :func:`constrain_rows` inside the step sees the mesh.
    """
    jitted = jax.jit(fn, in_shardings=in_shardings, out_shardings=out_shardings,
                     donate_argnums=donate_argnums, static_argnums=static_argnums)

    @functools.wraps(fn)
    def call(*args, **kwargs):
        with jax.set_mesh(mesh):
            return jitted(*args, **kwargs)

    def lower(*args, **kwargs):
        with jax.set_mesh(mesh):
            return jitted.lower(*args, **kwargs)

    call.lower = lower
    call.jitted = jitted
    return call
