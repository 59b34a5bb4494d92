"""The device mesh: one ``jax.sharding.Mesh`` with the named axes ``data`` and ``fsdp``.

Every jitted step of jaxirl (PPO experience and update, generation, IRL, SAE,
activation capture) runs on such a mesh:

* ``data``: batch rows are split over it; parameters are replicated along it.
* ``fsdp``: batch rows are split over it too, and parameters, gradients and
  optimizer state are split along one dimension each (ZeRO-3 / FSDP); XLA's
  SPMD partitioner inserts the all-gathers and reduce-scatters.

So a batch is split over ``data × fsdp`` devices, and ``--num_devices N`` is the
mesh ``data=N, fsdp=1``. With one device the mesh is 1 × 1 and every program is
the plain single-device one.
"""

from __future__ import annotations

import dataclasses

import jax
import numpy as np
from jax.sharding import AxisType, Mesh

from jaxirl.errors import ConfigError

DATA, FSDP = "data", "fsdp"
AXES = (DATA, FSDP)
# Batch rows are split over both axes (FSDP shards the batch as well as the parameters).
BATCH_AXES = (DATA, FSDP)


@dataclasses.dataclass(frozen=True)
class MeshConfig:
    """The mesh shape: ``data × fsdp`` devices.

    Attributes:
      data: data-parallel replicas (parameters replicated, batch split).
      fsdp: devices that split every parameter leaf (and the batch).
    """

    data: int = 1
    fsdp: int = 1

    def __post_init__(self):
        for name in AXES:
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"--mesh {name} must be a positive integer, got {value!r}")

    @property
    def size(self) -> int:
        return self.data * self.fsdp

    @classmethod
    def parse(cls, text: str) -> MeshConfig:
        """``"data=2,fsdp=4"`` (either axis may be left out; it is then 1)."""
        sizes = {}
        for part in filter(None, (p.strip() for p in str(text).split(","))):
            name, sep, value = part.partition("=")
            name = name.strip()
            if not sep or name not in AXES:
                raise ConfigError(f"--mesh '{text}': expected data=D,fsdp=F, got '{part}'")
            if name in sizes:
                raise ConfigError(f"--mesh '{text}' names '{name}' twice")
            try:
                sizes[name] = int(value)
            except ValueError:
                raise ConfigError(f"--mesh '{text}': '{value}' is not an integer") from None
        return cls(**sizes)

    @classmethod
    def from_flags(cls, mesh: str | None, num_devices: int | None) -> MeshConfig:
        """``--mesh`` when given, else ``--num_devices N`` as a data mesh of N devices."""
        if mesh:
            if num_devices not in (None, 1):
                raise ConfigError("pass either --mesh or --num_devices, not both")
            return cls.parse(mesh)
        return cls(data=1 if num_devices is None else num_devices)

    def __str__(self) -> str:
        return f"data={self.data},fsdp={self.fsdp}"


def make_mesh(config: MeshConfig = MeshConfig(), devices=None) -> Mesh:
    """The ``data × fsdp`` mesh over the first ``config.size`` devices (global, all processes).

    Devices are taken in ``jax.devices()`` order (process-major), so ``fsdp`` groups
    neighbouring devices (within a host when F divides the local device count) and
    ``data`` spans hosts, the layout a TPU pod or a multi-node GPU job wants. Both axes
    are ``Auto``: shardings are hints that XLA's SPMD partitioner completes.

    Raises:
      ConfigError: fewer devices than the mesh needs, or (multi-process) a mesh that
        leaves out some process's devices.
    """
    devices = list(jax.devices() if devices is None else devices)
    if config.size > len(devices):
        raise ConfigError(f"--mesh {config} needs {config.size} devices but JAX sees "
                          f"{len(devices)} (--num_devices / --mesh)")
    if jax.process_count() > 1 and config.size != len(devices):
        raise ConfigError(f"--mesh {config} uses {config.size} of the {len(devices)} devices of "
                          f"{jax.process_count()} processes; a multi-process mesh must use all")
    grid = np.asarray(devices[: config.size], dtype=object).reshape(config.data, config.fsdp)
    return Mesh(grid, AXES, axis_types=(AxisType.Auto, AxisType.Auto))


def mesh_config(mesh: Mesh) -> MeshConfig:
    """The :class:`MeshConfig` of a mesh built by :func:`make_mesh`."""
    return MeshConfig(data=mesh.shape[DATA], fsdp=mesh.shape[FSDP])


def batch_split(mesh: Mesh) -> int:
    """How many ways batch rows are split: ``data × fsdp``."""
    return mesh.shape[DATA] * mesh.shape[FSDP]


def check_rows(rows: int, mesh: Mesh, what: str) -> None:
    """ConfigError unless ``rows`` (named ``what``, e.g. ``--batch_size 6``) splits over the mesh."""
    split = batch_split(mesh)
    if rows % split:
        raise ConfigError(f"{what} is not divisible by the {split} devices of --mesh "
                          f"{mesh_config(mesh)} (--num_devices / --mesh)")
