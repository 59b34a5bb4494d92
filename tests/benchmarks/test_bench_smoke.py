"""Smoke tests of the benchmarks: every registered benchmark runs at toy sizes, and the
helpers they rest on (FLOP count, timing, shared weights) hold what they claim."""

from __future__ import annotations

import math
import os
import pathlib
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

# benchmarks/ is a top-level folder of the repository, not part of the installed package.
sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[2]))

from benchmarks import bench_peak, common, roofline, run_all  # noqa: E402
from benchmarks.bench_forward import forward_pair, make_jax_forward  # noqa: E402

# Benchmarks whose rows feed the lead table (the others report details only).
WITH_HEADLINES = {"forward", "generate", "ppo", "irl"}


def test_forward_work_flops_by_hand():
    config = common.jaxirl_config("toy")  # hidden 32, inter 64, 2 layers, vocab 97
    weights = 2 * (4 * 32 * 32 + 2 * 32 * 64) + 32 * 97
    # Causal attention: 2*2 * layers * hidden per (query, key) pair, (T + 1) / 2 keys a query.
    attention = 2 * 2 * 2 * 32 * (2 * 16) * (16 + 1) / 2
    assert roofline.forward_work(config, batch=2, seq=16).flops == 2 * weights * 2 * 16 + attention


def test_forward_flops_agree_with_xla_cost_analysis():
    config = common.jaxirl_config("tiny")
    from jaxirl.models.gpt_neox import GPTNeoXForCausalLM, init_params

    model = GPTNeoXForCausalLM(config)
    params = init_params(config, jax.random.PRNGKey(0))
    ids = jnp.zeros((2, 64), jnp.int32)
    compiled = make_jax_forward(model).lower(params, ids, jnp.ones_like(ids)).compile()
    analysis = compiled.cost_analysis()
    analysis = analysis[0] if isinstance(analysis, (list, tuple)) else analysis
    # XLA counts what runs: at 64 tokens the full T x T attention square, not the causal
    # half of the roofline's count. It also counts softmax, norms and GELU (1.4% here).
    causal = roofline.attention_flops(config, 2 * 64, (64 + 1) / 2)
    executed = (roofline.forward_work(config, 2, 64).flops - causal
                + config.num_hidden_layers * bench_peak.attention_core_flops(config, 2, 64))
    assert analysis["flops"] == pytest.approx(executed, rel=0.03)


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
    # Just under 1000, three significant digits would print 1e+03.
    assert common.markdown_table([{"a": 999.7, "b": 999.4}], ["a", "b"]).splitlines()[2] == \
        "| 1,000 | 999 |"


def test_roofline_bounds_each_phase_by_hand():
    config = common.jaxirl_config("toy")  # hidden 32, inter 64, 2 layers, vocab 97
    # Prefill of [2, 3] (LM head on the last column only), then one decode step that
    # reads every weight (19,488 with the head) and 4 filled KV slots per row and layer.
    work = roofline.decode_work(config, batch=2, prompt=3, new_tokens=2)
    prefill = (2 * 16384 * 6 + 2 * 32 * 97 * 2 + 4 * 2 * 6 * 2 * 32, 19488 * 4 + 4 * 2 * 97)
    step = (2 * 19488 * 2 + 4 * 2 * 2 * 4 * 32, 19488 * 4 + 2 * 2 * 4 * 2 * 32 * 4 + 4 * 2 * 97)
    assert work.all_phases() == (prefill, step)
    assert (work.flops, work.bytes) == (prefill[0] + step[0], prefill[1] + step[1])
    # Each phase takes the larger of its compute and memory times: the prefill is
    # compute-bound and the step memory-bound at 1 FLOP per byte.
    assert work.roofline_s(1e6, 1e6) == pytest.approx((prefill[0] + step[1]) / 1e6)
    adam = roofline.adam_work(1000)
    assert (adam * 3).roofline_s(1e4, 1e9) == pytest.approx(3 * 10.0 * 1000 / 1e4)


def test_adam_state_that_fits_in_the_last_level_cache_moves_no_bytes(tmp_path):
    """1,000 parameters' params, grads, m and v are 16 kB: from a 16 kB cache up they stay
    cached between steps, and only the FLOPs bound the step (found by the twenty-second
    session's benchmark audit: the IRL head's 3.2 MB of state was counted at DRAM speed,
    84% of its roofline)."""
    assert (roofline.adam_work(1000).flops, roofline.adam_work(1000).bytes) == (1e4, 28e3)
    assert roofline.adam_work(1000, cache_bytes=15_999).bytes == 28e3
    fits = roofline.adam_work(1000, cache_bytes=16_000)
    assert (fits.flops, fits.bytes) == (1e4, 0.0)
    assert (fits * 3).roofline_s(1e9, 1.0) == pytest.approx(3 * 1e4 / 1e9)
    # The cache size as Linux reports it: the highest level wins.
    for i, (level, size) in enumerate([(1, "48K"), (2, "1024K"), (3, "32768K"), (2, "2M")]):
        (tmp_path / f"index{i}").mkdir()
        (tmp_path / f"index{i}" / "level").write_text(f"{level}\n")
        (tmp_path / f"index{i}" / "size").write_text(f"{size}\n")
    assert roofline.last_level_cache_bytes(str(tmp_path)) == 32 << 20
    assert roofline.last_level_cache_bytes(str(tmp_path / "missing")) == 0


def test_headline_ratio_and_share_for_rates_and_seconds():
    rate = common.headline("gen", "tok/s", "peer", peer=100.0, jaxirl=300.0, roofline=600.0)
    assert (rate["ratio"], rate["share_of_roofline"]) == (3.0, 0.5)
    secs = common.headline("epoch", "s", "peer", peer=6.0, jaxirl=2.0, roofline=0.5, seconds=True)
    assert (secs["ratio"], secs["share_of_roofline"]) == (3.0, 0.25)


def test_lead_table_replaces_only_its_block():
    results = {"benchmarks": {"x": {"rows": [
        common.headline("gen", "tok/s", "HF eager", 100.0, 300.0, 600.0), {"benchmark": "x"},
        common.headline("gen, bf16", "tok/s", "HF eager", 100.0, 500.0, 900.0)]}},
        "environment": {"usable_cores": 1, "cpu": "cpu"},
        "machine": {"bandwidth_gb_s": 15.0, "f32_peak_gflops": 200.0, "mkl_f32_peak": 200.0,
                    "xla_f32_peak": 160.0, "bf16_peak_gflops": 650.0, "xla_bf16_peak": 650.0,
                    "torch_bf16_peak": 50.0, "load_before": 0.5}}
    table = run_all.lead_table(results)
    assert table.splitlines()[2] == "| gen | tok/s | HF eager | 100 | 300 | 600 | 0.5 | 3 |"
    # Every peer runs float32: a bf16 row says so.
    assert table.splitlines()[3].startswith("| gen, bf16 | tok/s | HF eager, float32 | 100 |")
    assert "15.0 GB/s" in table and "MKL 200, XLA 160" in table
    doc = f"# B\nintro\n{run_all.LEAD_START}\nold table\n{run_all.LEAD_END}\nrest\n"
    new = run_all.replace_lead_table(doc, "NEW")
    assert new == f"# B\nintro\n{run_all.LEAD_START}\nNEW\n{run_all.LEAD_END}\nrest\n"
    assert run_all.replace_lead_table(new, "NEW") == new
    with pytest.raises(ValueError, match="lead table"):
        run_all.replace_lead_table("# no block\n", "NEW")


def test_a_peer_that_fails_is_reported_not_fatal(tmp_path):
    torch_model, jax_model, params = common.build_pair("toy", workdir=tmp_path)

    def broken(**_):
        raise RuntimeError("no compiler\nsecond line")

    row = forward_pair(torch_model, jax_model, params, 2, 8, repeats=1, compiled_model=broken,
                       bf16=False)
    assert row["compiled_peer_error"] == "RuntimeError: no compiler"
    assert math.isnan(row["compiled_torch_tok_s"]) and math.isnan(row["bf16_tok_s"])
    assert row["speedup"] > 0


@pytest.fixture(scope="module")
def toy_machine():
    return roofline.measure_machine(sizes=(256,), repeats=1, nbytes=16 << 20)


# The PPO and scaling benchmarks take a minute each even at toy size, generation and IRL
# half a minute: opt-in (-m slow). The forward keeps the lead table's plumbing in the
# default suite.
SLOW_BENCHMARKS = ("generate", "irl", "ppo", "scaling")


@pytest.mark.parametrize("name", [
    pytest.param(name, marks=pytest.mark.slow) if name in SLOW_BENCHMARKS else name
    for name in sorted(run_all.REGISTRY)])
def test_registered_benchmark_runs_at_toy_size(name, toy_machine):
    results = run_all.run_benchmarks([name], repeats=1, toy=True, machine=toy_machine)
    rows = results["benchmarks"][name]["rows"]
    for table in run_all.REGISTRY[name].tables:
        chosen = [r for r in rows if r["benchmark"] == table.kind]
        assert chosen, f"{name} produced no '{table.kind}' row"
        for row in chosen:
            assert set(table.columns) <= set(row), set(table.columns) - set(row)
    for row in rows:
        for key in ("speedup", "jaxirl_tok_s", "torch_tok_s", "jax_gflops", "gflops_best",
                    "mesh_best_s", "share", "roofline_s", "gflop"):
            if key in row:
                assert np.isfinite(row[key]) and row[key] > 0, (key, row[key])
    headlines = [r for r in rows if r["benchmark"] == "headline"]
    assert bool(headlines) == (name in WITH_HEADLINES)
    for row in headlines:
        for key in ("peer", "jaxirl", "roofline", "share_of_roofline", "ratio"):
            assert np.isfinite(row[key]) and row[key] > 0, (row["what"], key, row[key])
    markdown = run_all.to_markdown(results)
    assert f"## {run_all.REGISTRY[name].tables[0].title}" in markdown
    assert ("## Against the peers and the machine's limit" in markdown) == bool(headlines)


def test_profile_trace_lists_the_compiled_ops_of_a_traced_call():
    """``benchmarks.profile_trace`` in its own process (the trace flag is read at start-up)."""
    import os
    import subprocess

    root = pathlib.Path(__file__).resolve().parents[2]
    env = {**os.environ, "PYTHONPATH": str(root)}
    out = subprocess.run([sys.executable, "-m", "benchmarks.profile_trace", "--what=generate",
                          "--shape=toy", "--batch=2", "--repeats=1", "--top=5"],
                         cwd=root, env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    rows = [line for line in out.stdout.splitlines() if line.startswith("| ") and "calls" not in line]
    assert len(rows) == 5, out.stdout
    cells = [[cell.strip() for cell in row.strip("|").split("|")] for row in rows]
    assert all(float(ms) > 0 and name for ms, _, name in cells), rows
    assert not any(name.startswith(("$", "PjitFunction", "while")) for _, _, name in cells), rows
    # The decode loop's ops run once per step (63 steps for 64 new tokens).
    assert any(int(calls) == 63 for _, calls, _ in cells), rows


def test_memory_plan_compiles_the_irl_step_at_toy_size():
    """The plan's IRL row end to end (its call had rotted once, unnoticed, when the epoch
    program gained an argument): per-device bytes from the compiled program."""
    flags_before = os.environ.get("XLA_FLAGS")
    from benchmarks import memory_plan

    # Importing it must not touch XLA_FLAGS: this process's later subprocesses (the
    # launchers' bad-input runs) would inherit 8 simulated devices.
    assert os.environ.get("XLA_FLAGS") == flags_before
    row = memory_plan.plan("irl", "toy", "data=1", "float32", False, -1)
    assert row["argument_gib"] > 0 and row["temp_gib"] > 0
    assert row["peak_gib"] == pytest.approx(row["argument_gib"] + row["output_gib"]
                                            - row["alias_gib"] + row["temp_gib"])
    assert row["fits_80gb"] and row["batch"] == 8


def test_frozen_trunk_ablation_ends_at_the_same_params_at_toy_size():
    from benchmarks import bench_frozen_trunk

    row = bench_frozen_trunk.run("toy", num_layers_unfrozen=1, repeats=1, num_rollouts=8,
                                 batch_size=4, ppo_epochs=1)
    # Equal to float rounding (bit-equal in the optimised builds measured; the suite
    # compiles with fewer optimisations, where a kernel may round with the row count).
    assert row["layers"] == 2 and row["trunk_max_param_diff"] < 1e-6
    for key in ("update_trunk_s", "update_recompute_s", "trunk_speedup"):
        assert np.isfinite(row[key]) and row[key] > 0, (key, row[key])
