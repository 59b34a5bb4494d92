"""bench_peak's FLOP counts: the forward in the roofline's causal count, the attention
core in the FLOPs its code executes (the full square below 2 * QUERY_CHUNK tokens, the
causal query chunks from there on)."""

from __future__ import annotations

import pathlib
import sys

import jax
import jax.numpy as jnp
import pytest

# benchmarks/ is a top-level folder of the repository, not part of the installed package.
sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[2]))

from benchmarks import bench_peak, common, roofline  # noqa: E402
from jaxirl.models import gpt_neox  # noqa: E402


def test_attention_core_flops_by_hand():
    config = common.jaxirl_config("toy")  # hidden 32
    assert gpt_neox.QUERY_CHUNK == 128
    # 128 tokens: one block, every (query, key) pair of the square; 2*2 * hidden each.
    assert bench_peak.attention_core_flops(config, 2, 128) == 4 * 2 * 128 * 128 * 32
    # 512 tokens: query chunks of 128 over keys [:128], [:256], [:384], [:512].
    chunked = 4 * 2 * 128 * (128 + 256 + 384 + 512) * 32
    assert bench_peak.attention_core_flops(config, 2, 512) == chunked
    assert chunked == 0.625 * 4 * 2 * 512 * 512 * 32
    # 300 tokens: the last chunk is 44 rows over all 300 keys.
    assert bench_peak.attention_core_flops(config, 1, 300) == \
        4 * (128 * 128 + 128 * 256 + 44 * 300) * 32


@pytest.mark.parametrize("batch,seq", [(2, 128), (1, 256)])
def test_attention_core_flops_match_xla_cost_analysis(batch, seq):
    # One batch row at 256 tokens: lax.map's body runs once, so cost_analysis (which
    # counts that body once) sees all of it. Elementwise work adds about 4%.
    config = common.jaxirl_config("tiny")
    q = jnp.zeros((batch, config.num_attention_heads, seq, config.head_dim), jnp.float32)
    mask = jnp.broadcast_to(jnp.tril(jnp.ones((seq, seq), bool)), (batch, seq, seq))
    analysis = jax.jit(bench_peak.attention_core).lower(q, q, q, mask).compile().cost_analysis()
    analysis = analysis[0] if isinstance(analysis, (list, tuple)) else analysis
    counted = bench_peak.attention_core_flops(config, batch, seq)
    assert analysis["flops"] == pytest.approx(counted, rel=0.06)
    if seq >= 2 * gpt_neox.QUERY_CHUNK:  # the square would be a third more
        assert analysis["flops"] < 0.9 * 4 * batch * seq * seq * config.hidden_size


def test_utilisation_row_uses_the_causal_forward_and_the_executed_core():
    config = common.jaxirl_config("toy")  # hidden 32, inter 64, 2 layers, vocab 97
    row = bench_peak.forward_utilisation("toy", batch=1, seq=256, repeats=1)
    blocks, head = 2 * (4 * 32 * 32 + 2 * 32 * 64), 32 * 97
    causal_attention = 4 * 2 * 32 * 256 * (256 + 1) / 2
    forward = 2 * (blocks + head) * 256 + causal_attention
    assert row["flops_analytic"] == forward == roofline.forward_work(config, 1, 256).flops
    assert row["gflops_best"] == pytest.approx(forward / row["forward_best_s"] / 1e9)
    assert row["trunk_gflops"] == pytest.approx((forward - 2 * head * 256) / row["trunk_s"] / 1e9)
    assert row["attention_flops_share"] == pytest.approx(causal_attention / forward)
    # The core, timed for one layer, executes chunks [0, 128) over 128 keys and
    # [128, 256) over 256: 75% of the square, not the causal 50.2%.
    core = 4 * 128 * (128 + 256) * 32
    per_layer_s = row["attention_core_s"] / 2
    assert row["attention_core_gflops"] == pytest.approx(core / per_layer_s / 1e9)
