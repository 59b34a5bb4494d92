"""Smoke tests of the benchmarks: every registered benchmark runs at toy sizes, and the
helpers they rest on (FLOP count, timing, shared weights) hold what they claim."""

from __future__ import annotations

import math
import pathlib
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

# benchmarks/ is a top-level folder of the repository, not part of the installed package.
sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[2]))

from benchmarks import common, run_all  # noqa: E402
from benchmarks.bench_forward import make_jax_forward  # noqa: E402


def test_forward_flops_by_hand():
    config = common.jaxirl_config("toy")  # hidden 32, inter 64, 2 layers, vocab 97
    weights = 2 * (4 * 32 * 32 + 2 * 32 * 64) + 32 * 97
    attention = 2 * 2 * 2 * 16 * 16 * 32 * 2  # 2*2 * layers * T^2 * hidden * batch
    assert common.forward_flops(config, batch=2, seq=16) == 2 * weights * 2 * 16 + attention


def test_forward_flops_agree_with_xla_cost_analysis():
    config = common.jaxirl_config("tiny")
    from jaxirl.models.gpt_neox import GPTNeoXForCausalLM, init_params

    model = GPTNeoXForCausalLM(config)
    params = init_params(config, jax.random.PRNGKey(0))
    ids = jnp.zeros((2, 64), jnp.int32)
    compiled = make_jax_forward(model).lower(params, ids, jnp.ones_like(ids)).compile()
    analysis = compiled.cost_analysis()
    analysis = analysis[0] if isinstance(analysis, (list, tuple)) else analysis
    # XLA also counts softmax, norms and GELU, which the analytic count leaves out.
    assert analysis["flops"] == pytest.approx(common.forward_flops(config, 2, 64), rel=0.1)


def test_time_fn_runs_first_warmup_and_repeats():
    calls = []
    timing = common.time_fn(lambda: calls.append(1), repeats=4, warmup=2)
    assert len(calls) == 1 + 2 + 4
    assert len(timing.times_s) == 4
    assert timing.best_s <= timing.median_s and timing.first_s >= 0


def test_time_pair_interleaves_repeats():
    order = []
    first, second = common.time_pair(lambda: order.append("a"), lambda: order.append("b"),
                                     repeats=3, warmup=1)
    assert "".join(order) == "aa" + "bb" + "ab" * 3
    assert len(first.times_s) == len(second.times_s) == 3


def test_ratio_is_jaxirl_over_peer():
    assert common.ratio(300.0, 100.0) == 3.0
    assert math.isnan(common.ratio(1.0, 0.0))


def test_build_pair_gives_both_sides_the_same_weights(tmp_path):
    import torch

    torch_model, jax_model, params = common.build_pair("toy", workdir=tmp_path)
    ids = np.random.RandomState(0).randint(0, 97, size=(2, 8))
    with torch.no_grad():
        expected = torch_model(input_ids=torch.tensor(ids)).logits.numpy()
    got = make_jax_forward(jax_model)(params, jnp.asarray(ids, jnp.int32), jnp.ones((2, 8), jnp.int32))
    np.testing.assert_allclose(np.asarray(got), expected, atol=1e-4)


def test_markdown_table_formats_numbers():
    table = common.markdown_table([{"a": 1234567.0, "b": 0.123456, "c": "x"}], ["a", "b", "c"])
    assert table.splitlines() == ["| a | b | c |", "|---|---|---|", "| 1,234,567 | 0.123 | x |"]


@pytest.mark.parametrize("name", sorted(run_all.REGISTRY))
def test_registered_benchmark_runs_at_toy_size(name):
    results = run_all.run_benchmarks([name], repeats=1, toy=True)
    rows = results["benchmarks"][name]["rows"]
    for table in run_all.REGISTRY[name].tables:
        chosen = [r for r in rows if r["benchmark"] == table.kind]
        assert chosen, f"{name} produced no '{table.kind}' row"
        for row in chosen:
            assert set(table.columns) <= set(row), set(table.columns) - set(row)
    for row in rows:
        for key in ("speedup", "jaxirl_tok_s", "torch_tok_s", "jax_gflops", "gflops_best", "mesh_best_s"):
            if key in row:
                assert np.isfinite(row[key]) and row[key] > 0, (key, row[key])
    assert f"## {run_all.REGISTRY[name].tables[0].title}" in run_all.to_markdown(results)
