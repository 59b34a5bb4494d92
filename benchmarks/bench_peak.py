"""Where the forward's time goes: its phases timed alone, against the machine's float32 peak.

The peak (the better of XLA's and MKL's n x n matmul) comes from
:func:`benchmarks.roofline.measure_machine`. The forward's FLOPs (``flops_analytic``)
are the roofline's count, :func:`benchmarks.roofline.forward_work`: causal attention,
(T + 1) / 2 keys per query, the count every other benchmark's roofline uses. A phase
breakdown (transformer trunk, LM head, attention core) says where the time goes; the
attention core's rate counts the FLOPs its code executes (:func:`attention_core_flops`:
the full square below 2 * QUERY_CHUNK tokens, the causal query chunks from there on).

``flops_xla`` is XLA's ``cost_analysis`` of the compiled forward, for reference only:
from 2 * QUERY_CHUNK tokens on the attention core runs under ``lax.map`` over the batch
rows, whose body ``cost_analysis`` counts once, not once per row, so the column
undercounts there (at 8 x 512, 368.3 against 378.5 GFLOP analytic).
Run alone with ``python -m benchmarks.bench_peak``.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
from absl import app, flags

from benchmarks import common, roofline
from jaxirl.models.gpt_neox import GPTNeoXForCausalLM, init_params


def _xla_flops(compiled) -> float:
    analysis = compiled.cost_analysis()
    if isinstance(analysis, (list, tuple)):
        analysis = analysis[0] if analysis else {}
    return float((analysis or {}).get("flops", float("nan")))


def attention_core(q: jax.Array, k: jax.Array, v: jax.Array, key_mask: jax.Array) -> jax.Array:
    """The score -> mask -> softmax -> PV part of ``jaxirl.models.gpt_neox.Attention``.

    q, k, v: [B, heads, T, D] float32; key_mask [B, T, T] bool. Calls the model's own
    code path for this length (row-by-row causal chunks from 2 * QUERY_CHUNK tokens
    on), so that its share of the forward can be timed alone.
    """
    from jaxirl.models import gpt_neox

    if q.shape[2] >= 2 * gpt_neox.QUERY_CHUNK:
        return gpt_neox._attend_long(q, k, v, key_mask, jnp.float32)
    return gpt_neox._attend(q, k, v, key_mask, jnp.float32)


def attention_core_flops(config, batch: int, seq: int) -> float:
    """FLOPs that :func:`attention_core` executes for one layer: QK^T and PV, 2 * 2 * hidden
    per (query, key) pair it computes.

    Below 2 * QUERY_CHUNK tokens ``_attend`` scores every pair (the full T x T square,
    masked afterwards); from there on ``_attend_long`` runs query chunks [i, j) over the
    keys before j only. At T = 512 that is 128 * (128 + 256 + 384 + 512) pairs, 62.5% of
    the square (the causal count, (T + 1) / 2 keys per query, would be 50.1%).
    """
    from jaxirl.models import gpt_neox

    if seq >= 2 * gpt_neox.QUERY_CHUNK:
        pairs = sum((min(i + gpt_neox.QUERY_CHUNK, seq) - i) * min(i + gpt_neox.QUERY_CHUNK, seq)
                    for i in range(0, seq, gpt_neox.QUERY_CHUNK))
    else:
        pairs = seq * seq
    return 4.0 * batch * pairs * config.hidden_size


def forward_utilisation(shape: str = "pythia-70m", batch: int = 8, seq: int = 512,
                        repeats: int = 3, peak_gflops: float | None = None) -> dict[str, Any]:
    """Achieved GFLOP/s of the jitted forward and of its phases; shares of ``peak_gflops``.

    Phases, each timed alone: ``trunk`` (embedding + blocks + final norm: the same
    jit returning only the final hidden state, so XLA drops the LM head), the LM
    head matmul [B*T, H] x [H, V], and the attention core of all layers. The forward's
    and the trunk's rates use the roofline's causal count; the attention core's, the
    FLOPs its code executes (:func:`attention_core_flops`).
    """
    config = common.jaxirl_config(shape)
    model = GPTNeoXForCausalLM(config)
    params = init_params(config, jax.random.PRNGKey(0))
    ids = jax.random.randint(jax.random.PRNGKey(1), (batch, seq), 0, config.vocab_size, jnp.int32)
    mask = jnp.ones_like(ids)

    # Compiled once: the same executable gives the cost analysis and the timings.
    full = jax.jit(lambda p, i, m: model.apply({"params": p}, i, m).logits).lower(
        params, ids, mask).compile()
    trunk = jax.jit(lambda p, i, m: model.apply({"params": p}, i, m).final_hidden)
    head = jax.jit(lambda x, w: jnp.einsum("mh,vh->mv", x, w))  # the LM head's [V, H] weight
    core = jax.jit(attention_core)

    xla_flops = _xla_flops(full)
    flops = roofline.forward_work(config, batch, seq).flops
    h, v, layers = config.hidden_size, config.vocab_size, config.num_hidden_layers
    head_flops = 2.0 * batch * seq * h * v
    core_flops = attention_core_flops(config, batch, seq)  # per layer, as executed
    x = jax.random.normal(jax.random.PRNGKey(2), (batch * seq, h), jnp.float32)
    w = params["embed_out"]["weight"]
    heads = config.num_attention_heads
    q = jax.random.normal(jax.random.PRNGKey(3), (batch, heads, seq, config.head_dim), jnp.float32)
    causal = jnp.tril(jnp.ones((seq, seq), bool))
    key_mask = jnp.broadcast_to(causal, (batch, seq, seq))

    full_t = common.time_fn(lambda: full(params, ids, mask).block_until_ready(), repeats)
    trunk_t = common.time_fn(lambda: trunk(params, ids, mask).block_until_ready(), repeats)
    head_t = common.time_fn(lambda: head(x, w).block_until_ready(), repeats)
    core_t = common.time_fn(lambda: core(q, q, q, key_mask).block_until_ready(), repeats)

    best = full_t.best_s
    row = {
        "benchmark": "utilisation", "shape": shape, "batch": batch, "seq": seq,
        # flops_xla undercounts from 2 * QUERY_CHUNK tokens on (lax.map's body counted once).
        "flops_analytic": flops, "flops_xla": xla_flops,
        "compile_s": full_t.first_s, "forward_s": full_t.median_s, "forward_best_s": best,
        "gflops": flops / full_t.median_s / 1e9, "gflops_best": flops / best / 1e9,
        "trunk_s": trunk_t.best_s, "head_matmul_s": head_t.best_s,
        "attention_core_s": layers * core_t.best_s,
        "head_gflops": head_flops / head_t.best_s / 1e9,
        "attention_core_gflops": core_flops / core_t.best_s / 1e9,
        "trunk_gflops": (flops - head_flops) / trunk_t.best_s / 1e9,
        # What is neither trunk nor head matmul: writing the logits, layout copies.
        "rest_s": best - trunk_t.best_s - head_t.best_s,
    }
    # Causal attention's share of the forward, both in the roofline's count.
    causal_attention = roofline.attention_flops(config, batch * seq, (seq + 1) / 2)
    row["attention_flops_share"] = causal_attention / flops
    if peak_gflops:
        row["peak_gflops"] = peak_gflops
        row["share_of_peak"] = row["gflops_best"] / peak_gflops
        row["share_of_peak_median"] = row["gflops"] / peak_gflops
    return row


def run(shape: str = "pythia-70m", batch: int = 8, seqs: Sequence[int] = (128, 512),
        repeats: int = 3, machine: roofline.Machine | None = None) -> list[dict[str, Any]]:
    """One utilisation row per sequence length (shares of the machine's float32 peak)."""
    peak = machine.f32_peak / 1e9 if machine is not None else None
    return [forward_utilisation(shape, batch, seq, repeats, peak) for seq in seqs]


UTIL_COLUMNS = ["shape", "batch", "seq", "flops_analytic", "flops_xla", "forward_best_s", "gflops_best",
                "share_of_peak", "trunk_s", "head_matmul_s", "attention_core_s", "rest_s",
                "head_gflops", "attention_core_gflops", "trunk_gflops"]

FLAGS = flags.FLAGS


def define_flags():
    """Command-line flags, defined only when this module is the program (absl flags are global)."""
    flags.DEFINE_string("shape", "pythia-70m", "Model shape of the utilisation forward.")
    flags.DEFINE_integer("batch", 8, "Batch size.")
    flags.DEFINE_list("seqs", ["128", "512"], "Sequence lengths.")
    flags.DEFINE_integer("repeats", 3, "Timed repeats.")


def main(argv):
    del argv
    rows = run(FLAGS.shape, FLAGS.batch, [int(s) for s in FLAGS.seqs], FLAGS.repeats,
               roofline.measure_machine())
    print(common.markdown_table(rows, UTIL_COLUMNS))
    print(json.dumps(rows, indent=1))


if __name__ == "__main__":
    define_flags()
    app.run(main)
