"""Multi-process (multi-host) runs: joining the job, and which process writes.

Every process runs the same program on the same seeds; each feeds the batch rows
of its own devices (:func:`jaxirl.parallel.shard_rows`) and the global arrays
span all hosts. Orbax checkpoints are written and restored by every process
(each its own shards); reports, JSON files, HF exports, logs and progress bars
come from process 0 only (:func:`is_main_process`).
"""

from __future__ import annotations

import dataclasses
import logging
import os

import jax

from jaxirl.errors import ConfigError

log = logging.getLogger(__name__)

# The environment variables a launcher script usually sets (JAX reads the first itself).
ENV_COORDINATOR, ENV_NUM_PROCESSES, ENV_PROCESS_ID = (
    "JAX_COORDINATOR_ADDRESS", "JAX_NUM_PROCESSES", "JAX_PROCESS_ID")


@dataclasses.dataclass(frozen=True)
class DistributedConfig:
    """How this process joins a multi-process job (all None: a single process).

    Attributes:
      coordinator_address: ``host:port`` of process 0's coordinator.
      num_processes: processes in the job.
      process_id: this process's index in ``[0, num_processes)``.
      auto: join even without the fields above, letting JAX detect the cluster
        (Cloud TPU, SLURM, Open MPI, Kubernetes): the old ``--multihost``.
    """

    coordinator_address: str | None = None
    num_processes: int | None = None
    process_id: int | None = None
    auto: bool = False

    @classmethod
    def from_env(cls, coordinator_address: str | None = None, num_processes: int | None = None,
                 process_id: int | None = None, auto: bool = False) -> DistributedConfig:
        """Flags first, then ``JAX_COORDINATOR_ADDRESS``, ``JAX_NUM_PROCESSES``, ``JAX_PROCESS_ID``."""
        def env_int(name):
            value = os.environ.get(name)
            if value in (None, ""):
                return None
            try:
                return int(value)
            except ValueError:
                raise ConfigError(f"environment variable {name}={value!r} is not an integer") from None

        return cls(coordinator_address or os.environ.get(ENV_COORDINATOR) or None,
                   num_processes if num_processes is not None else env_int(ENV_NUM_PROCESSES),
                   process_id if process_id is not None else env_int(ENV_PROCESS_ID), auto)

    @property
    def enabled(self) -> bool:
        return self.auto or any(v is not None for v in
                                (self.coordinator_address, self.num_processes, self.process_id))

    def __post_init__(self):
        if self.num_processes is not None and self.num_processes < 1:
            raise ConfigError(f"--num_processes must be >= 1, got {self.num_processes}")
        if self.process_id is not None and self.num_processes is not None and not (
                0 <= self.process_id < self.num_processes):
            raise ConfigError(f"--process_id {self.process_id} is not in [0, "
                              f"{self.num_processes})")


def initialize(config: DistributedConfig) -> None:
    """``jax.distributed.initialize`` when ``config`` asks for it; before any other JAX call."""
    if not config.enabled:
        return
    try:
        jax.distributed.initialize(config.coordinator_address, config.num_processes,
                                   config.process_id)
    except (ValueError, RuntimeError) as e:
        raise ConfigError(f"cannot join the multi-process job (--coordinator_address "
                          f"{config.coordinator_address}, --num_processes "
                          f"{config.num_processes}, --process_id {config.process_id}): "
                          f"{e}") from None
    log.info("process %d of %d, %d local / %d global devices", jax.process_index(),
             jax.process_count(), jax.local_device_count(), jax.device_count())


def is_main_process() -> bool:
    """True on process 0, the one that writes reports, JSON, exports, logs and progress bars."""
    return jax.process_index() == 0


def sync(name: str) -> None:
    """A barrier across processes (a no-op with one process)."""
    if jax.process_count() > 1:
        from jax.experimental import multihost_utils

        multihost_utils.sync_global_devices(name)
