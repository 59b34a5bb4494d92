"""Remat saves memory on CPU: the launchers turn on XLA:CPU's memory-aware scheduler
(jaxirl/models/remat.py) before JAX starts, and under it a rematerialised model's
gradient needs far less temporary memory than the plain one."""

import json
import subprocess
import sys

import pytest

from jaxirl.models.remat import MEMORY_AWARE_CPU_SCHEDULER

# The gradient of an 8-block model on [4, 512] tokens, compiled with and without remat;
# XLA's own count of the program's temporary buffers. Attention scores dominate: 1 MiB
# per head and row, [4, 4, 512, 512] float32 = 16 MiB per block.
_COMPILE_BOTH = """
import json, jax, jax.numpy as jnp
from jaxirl.models.gpt_neox import GPTNeoXForCausalLM
from jaxirl.models.gpt_neox_config import GPTNeoXConfig
cfg = GPTNeoXConfig(vocab_size=64, hidden_size=64, num_hidden_layers=8, num_attention_heads=4,
                    intermediate_size=256, max_position_embeddings=512)
ids = jax.ShapeDtypeStruct((4, 512), jnp.int32)
temps = {}
for remat in (False, True):
    model = GPTNeoXForCausalLM(cfg, remat=remat, attention="xla")
    params = jax.eval_shape(lambda k: model.init(k, jnp.zeros((1, 2), jnp.int32))["params"],
                            jax.random.PRNGKey(0))
    loss = lambda p, x: model.apply({"params": p}, x).logits.mean()
    compiled = jax.jit(jax.grad(loss)).lower(params, ids).compile()
    temps[str(remat)] = compiled.memory_analysis().temp_size_in_bytes
print(json.dumps(temps))
"""


def _run(code: str) -> str:
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True)
    return out.stdout.splitlines()[-1]


def test_remat_needs_under_half_the_temporary_memory_with_the_scheduler_flag():
    code = ("from jaxirl.models.remat import memory_aware_cpu_scheduler\n"
            "assert memory_aware_cpu_scheduler()\n" + _COMPILE_BOTH)
    temps = json.loads(_run(code))
    assert temps["True"] < 0.5 * temps["False"], temps


@pytest.mark.parametrize("launcher", ["irl", "rlhf"])
def test_launchers_turn_the_flag_on_before_jax_starts(launcher):
    # Importing a launcher must not start JAX's backends, or the flag would come too late.
    code = ("import os, json\n"
            f"import jaxirl.launchers.{launcher}\n"
            "from jax._src import xla_bridge\n"
            "started = xla_bridge.backends_are_initialized()\n"
            "from jaxirl.cli import start_launcher\n"
            "start_launcher(['prog'], None, remat=True)\n"
            "print(json.dumps([started, os.environ['XLA_FLAGS']]))")
    started, flags = json.loads(_run(code))
    assert not started
    assert MEMORY_AWARE_CPU_SCHEDULER in flags.split()


def test_too_late_is_a_warning_and_false_and_a_users_setting_is_kept():
    late = ("import jax, logging; jax.devices()\n"
            "from jaxirl.models.remat import memory_aware_cpu_scheduler\n"
            "print(memory_aware_cpu_scheduler())")
    out = subprocess.run([sys.executable, "-c", late], capture_output=True, text=True,
                         check=True)
    assert out.stdout.split()[-1] == "False"
    assert "remat saves no memory" in out.stderr
    kept = ("import os; os.environ['XLA_FLAGS'] = "
            "'--xla_cpu_scheduler_type=CPU_SCHEDULER_TYPE_CONCURRENCY_OPTIMIZED'\n"
            "from jaxirl.models.remat import memory_aware_cpu_scheduler\n"
            "print(memory_aware_cpu_scheduler(), os.environ['XLA_FLAGS'])")
    assert _run(kept) == "False --xla_cpu_scheduler_type=CPU_SCHEDULER_TYPE_CONCURRENCY_OPTIMIZED"
