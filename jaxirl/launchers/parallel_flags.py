"""The device and multi-host flags every launcher shares (imported by the launchers).

    --num_devices N            a data mesh of N devices (the old meaning)
    --mesh data=D,fsdp=F       the general mesh: batch over D*F devices, parameters over F
    --coordinator_address host:port --num_processes P --process_id i
                               join a multi-process job (or JAX_COORDINATOR_ADDRESS,
                               JAX_NUM_PROCESSES, JAX_PROCESS_ID)
    --multihost                join with JAX's cluster auto-detection (TPU pods, SLURM)
"""

from absl import flags

from jaxirl.parallel import DistributedConfig, MeshConfig

FLAGS = flags.FLAGS
flags.DEFINE_integer("num_devices", None, "Devices of a data-parallel mesh (default 1); "
                     "--mesh is the general form.", lower_bound=1)
flags.DEFINE_string("mesh", None, "Device mesh data=D,fsdp=F: batches split over D*F devices, "
                    "parameters and optimizer state over F (FSDP).")
flags.DEFINE_string("coordinator_address", None, "host:port of process 0 in a multi-process "
                    "job (default: $JAX_COORDINATOR_ADDRESS).")
flags.DEFINE_integer("num_processes", None, "Processes of a multi-process job "
                     "(default: $JAX_NUM_PROCESSES).", lower_bound=1)
flags.DEFINE_integer("process_id", None, "This process's index in the job "
                     "(default: $JAX_PROCESS_ID).", lower_bound=0)
flags.DEFINE_bool("multihost", False, "Join a multi-process job with JAX's cluster "
                  "auto-detection (Cloud TPU, SLURM, Open MPI).")


def distributed_config() -> DistributedConfig:
    return DistributedConfig.from_env(FLAGS.coordinator_address, FLAGS.num_processes,
                                      FLAGS.process_id, auto=FLAGS.multihost)


def mesh_config() -> MeshConfig:
    return MeshConfig.from_flags(FLAGS.mesh, FLAGS.num_devices)


def mesh_aliases():
    """``--mesh`` and ``--num_devices`` as short flags of a config's ``mesh`` field."""
    from jaxirl.launchers.config_flags import Alias

    return (Alias("mesh", ("mesh",), lambda _: mesh_config()),
            Alias("num_devices", ("mesh",), lambda _: mesh_config()))
