"""Scaling: forward time against sequence length and batch size (jaxirl vs torch), and the mesh.

The mesh part runs one subprocess per simulated device count
(``XLA_FLAGS=--xla_force_host_platform_device_count=N``) and compares the forward
jitted on a data mesh of N devices (:func:`jaxirl.parallel.sharded_jit`, the global
batch split N ways, params replicated: the layout every stage uses) with a plain jit
of the same global batch in the same process. N simulated devices share the same
cores, so the mesh cannot be faster here; what it measures is the overhead of the
sharded path.
Run alone with ``python -m benchmarks.bench_scaling``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Sequence
from typing import Any

from absl import app, flags

from benchmarks import common


def sweep(shape: str = "pythia-70m", seqs: Sequence[int] = (64, 128, 256, 512), seq_batch: int = 4,
          batches: Sequence[int] = (1, 2, 4, 8, 16), batch_seq: int = 128,
          repeats: int = 3) -> list[dict[str, Any]]:
    """Forward times over ``seqs`` at ``seq_batch`` rows, then over ``batches`` at ``batch_seq``."""
    from benchmarks.bench_forward import forward_pair

    torch_model, jax_model, params = common.build_pair(shape)
    rows = []
    points = [("seq", seq_batch, s) for s in seqs] + [("batch", b, batch_seq) for b in batches]
    for axis, batch, seq in points:
        row = forward_pair(torch_model, jax_model, params, batch, seq, repeats, bf16=False)
        rows.append({"benchmark": "scaling", "axis": axis, "shape": shape, **row})
    return rows


def mesh_child(shape: str, batch: int, seq: int, repeats: int) -> dict[str, Any]:
    """In a process whose XLA sees N CPU devices: plain jit vs the data mesh of N devices."""
    import jax
    import jax.numpy as jnp

    from jaxirl import parallel
    from jaxirl.models.gpt_neox import GPTNeoXForCausalLM, init_params

    n = jax.device_count()
    if batch % n:
        raise ValueError(f"batch {batch} does not split over {n} devices")
    config = common.jaxirl_config(shape)
    model = GPTNeoXForCausalLM(config)
    params = init_params(config, jax.random.PRNGKey(0))
    ids = jax.random.randint(jax.random.PRNGKey(1), (batch, seq), 0, config.vocab_size, jnp.int32)
    mask = jnp.ones_like(ids)

    def forward(p, i, m):
        return model.apply({"params": p}, i, m).logits

    jitted = jax.jit(forward)
    mesh = parallel.make_mesh(parallel.MeshConfig(data=n))
    rows = parallel.rows_sharding(mesh, 2)
    sharded = parallel.sharded_jit(forward, mesh, in_shardings=(parallel.replicated(mesh), rows, rows),
                                   out_shardings=parallel.rows_sharding(mesh, 3))
    mesh_params = parallel.replicate(mesh, params)
    mesh_ids, mesh_mask = parallel.shard_rows(mesh, (ids, mask))
    jit_t, mesh_t = common.time_pair(
        lambda: jitted(params, ids, mask).block_until_ready(),
        lambda: sharded(mesh_params, mesh_ids, mesh_mask).block_until_ready(), repeats)
    return {"devices": n, "batch": batch, "seq": seq, "shape": shape,
            "jit_compile_s": jit_t.first_s, "mesh_compile_s": mesh_t.first_s,
            "jit_s": jit_t.median_s, "mesh_s": mesh_t.median_s,
            "jit_best_s": jit_t.best_s, "mesh_best_s": mesh_t.best_s}


def mesh_overhead(device_counts: Sequence[int] = (1, 2, 4), shape: str = "pythia-70m",
                  batch: int = 8, seq: int = 128, repeats: int = 3,
                  timeout_s: float = 600) -> list[dict[str, Any]]:
    """One subprocess per device count; overheads relative to the 1-device jit."""
    rows = []
    for n in device_counts:
        env = dict(os.environ)
        flag = f"--xla_force_host_platform_device_count={n}"
        env["XLA_FLAGS"] = (env.get("XLA_FLAGS", "") + " " + flag).strip()
        env["JAX_PLATFORMS"] = "cpu"
        cmd = [sys.executable, "-m", "benchmarks.bench_scaling", f"--mesh_child={n}",
               f"--shape={shape}", f"--mesh_batch={batch}", f"--mesh_seq={seq}", f"--repeats={repeats}"]
        root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
        proc = subprocess.run(cmd, env=env, cwd=root, capture_output=True, text=True, timeout=timeout_s,
                              check=False)
        lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("MESH_RESULT ")]
        if proc.returncode or not lines:
            raise RuntimeError(f"mesh child with {n} devices failed: {proc.stderr.strip()[-500:]}")
        rows.append({"benchmark": "mesh", **json.loads(lines[-1].split(" ", 1)[1])})
    # The first count's plain jit is the reference (the 1-device process by default).
    base = rows[0]["jit_best_s"]
    for row in rows:
        row["mesh_over_jit"] = row["mesh_best_s"] / row["jit_best_s"]
        row["mesh_over_1dev_jit"] = row["mesh_best_s"] / base
    return rows


def run(shape: str = "pythia-70m", repeats: int = 3, device_counts: Sequence[int] = (1, 2, 4),
        mesh_batch: int = 8, mesh_seq: int = 128, **sweep_kwargs) -> list[dict[str, Any]]:
    """The sequence/batch sweep (see :func:`sweep` for ``sweep_kwargs``), then mesh overheads."""
    rows = sweep(shape, repeats=repeats, **sweep_kwargs)
    return rows + mesh_overhead(device_counts, shape, mesh_batch, mesh_seq, repeats)


SWEEP_COLUMNS = ["axis", "batch", "seq", "jaxirl_s", "torch_s", "jaxirl_tok_s", "torch_tok_s", "speedup"]
MESH_COLUMNS = ["devices", "batch", "seq", "jit_compile_s", "mesh_compile_s", "jit_best_s",
                "mesh_best_s", "mesh_over_jit", "mesh_over_1dev_jit"]

FLAGS = flags.FLAGS


def define_flags():
    """Command-line flags, defined only when this module is the program (absl flags are global)."""
    flags.DEFINE_string("shape", "pythia-70m", "Model shape.")
    flags.DEFINE_integer("repeats", 3, "Timed repeats.")
    flags.DEFINE_list("devices", ["1", "2", "4"], "Simulated CPU device counts for the mesh.")
    flags.DEFINE_integer("mesh_child", 0, "Internal: run the mesh measurement in this process.")
    flags.DEFINE_integer("mesh_batch", 8, "Global batch of the mesh forward.")
    flags.DEFINE_integer("mesh_seq", 128, "Sequence length of the mesh forward.")


def main(argv):
    del argv
    if FLAGS.mesh_child:
        row = mesh_child(FLAGS.shape, FLAGS.mesh_batch, FLAGS.mesh_seq, FLAGS.repeats)
        print("MESH_RESULT " + json.dumps(row), flush=True)
        return
    rows = run(FLAGS.shape, FLAGS.repeats, [int(n) for n in FLAGS.devices])
    print(common.markdown_table([r for r in rows if r["benchmark"] == "scaling"], SWEEP_COLUMNS))
    print(common.markdown_table([r for r in rows if r["benchmark"] == "mesh"], MESH_COLUMNS))
    print(json.dumps(rows, indent=1))


if __name__ == "__main__":
    define_flags()
    app.run(main)
