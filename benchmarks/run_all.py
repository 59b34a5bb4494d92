"""Runs every registered benchmark; writes ``results.json`` and ``results.md``.

    python -m benchmarks.run_all --one_core --out_dir=benchmarks/results/one_core \
        --benchmarks_md=BENCHMARKS.md                            # the suite, one pinned core
    python -m benchmarks.run_all --toy --repeats=1 --out_dir=/tmp/bench   # toy sizes, minutes
    python -m benchmarks.run_all --only=forward,generate

The machine's limits (streaming bandwidth, float32 and bf16 matmul peaks) are
measured first, in the same process, and every benchmark reports its FLOPs,
bytes, roofline time and the share of it reached (:mod:`benchmarks.roofline`).
``results.md`` leads with one table: benchmark, peer, jaxirl, roofline, share of
roofline, ratio. With ``--benchmarks_md``, the same table (and the machine's
measured limits) replaces the block between :data:`LEAD_START` and
:data:`LEAD_END` in that file (BENCHMARKS.md).

New benchmarks join with one :func:`register` call: a
``run(repeats=..., machine=..., **kwargs) -> list[dict]`` function, its full-size
and toy-size keyword arguments, and the tables to print from its rows. Rows of
kind ``"headline"`` (:func:`benchmarks.common.headline`) go into the lead table.
"""

from __future__ import annotations

import dataclasses
import inspect
import json
import os
import pathlib
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from absl import app, flags

from benchmarks import (
    bench_forward,
    bench_generate,
    bench_irl,
    bench_peak,
    bench_ppo,
    bench_scaling,
    common,
    roofline,
)
from jaxirl.cli import one_line_errors
from jaxirl.errors import ConfigError

Row = dict[str, Any]


@dataclasses.dataclass(frozen=True)
class Table:
    """One markdown table: the rows whose ``benchmark`` field is ``kind``, shown by ``columns``."""

    title: str
    kind: str
    columns: Sequence[str]


@dataclasses.dataclass(frozen=True)
class Benchmark:
    """A registered benchmark.

    Attributes:
      name: its key for ``--only``.
      run: called as ``run(repeats=..., **kwargs)``; returns result rows, each a
        flat dict with a ``benchmark`` field naming its table.
      kwargs: the full-size arguments.
      toy_kwargs: arguments that make it finish in seconds (smoke tests, ``--toy``).
      tables: how to show its rows.
    """

    name: str
    run: Callable[..., list[Row]]
    kwargs: Mapping[str, Any]
    toy_kwargs: Mapping[str, Any]
    tables: Sequence[Table]


REGISTRY: dict[str, Benchmark] = {}


def register(benchmark: Benchmark) -> Benchmark:
    if benchmark.name in REGISTRY:
        raise ValueError(f"benchmark '{benchmark.name}' is registered twice")
    REGISTRY[benchmark.name] = benchmark
    return benchmark


register(Benchmark(
    name="forward", run=bench_forward.run,
    kwargs=dict(shapes=("tiny", "pythia-70m"), batch=8, seqs=(128, 512)),
    toy_kwargs=dict(shapes=("toy",), batch=2, seqs=(16,), compiled_peer=False),
    tables=[Table("Forward pass, float32 and bf16 (tokens/s)", "forward", bench_forward.COLUMNS)]))
register(Benchmark(
    name="peak", run=bench_peak.run,
    kwargs=dict(shape="pythia-70m", batch=8, seqs=(128, 512)),
    toy_kwargs=dict(shape="toy", batch=2, seqs=(16,)),
    tables=[Table("Where the forward's time goes (phases timed alone)", "utilisation",
                  bench_peak.UTIL_COLUMNS)]))
register(Benchmark(
    name="generate", run=bench_generate.run,
    kwargs=dict(shapes=("tiny", "pythia-70m"), batch=16, prompt_len=64, new_tokens=64,
                trained_default=True),
    toy_kwargs=dict(shapes=("toy",), batch=2, prompt_len=4, new_tokens=4, compiled_peer=False),
    tables=[Table("Generation, top-k 30 sampling with a KV cache (new tokens/s)", "generate",
                  bench_generate.COLUMNS),
            Table("bf16 against float32 on the same tokens", "generate_fidelity",
                  bench_generate.FIDELITY_COLUMNS)]))
register(Benchmark(
    name="ppo", run=bench_ppo.run,
    kwargs=dict(shapes=("tiny", "pythia-70m"), prompt_len=8),
    toy_kwargs=dict(shapes=("toy",), prompt_len=8, num_rollouts=8, batch_size=4, chunk_size=8,
                    ppo_epochs=1, max_new_tokens=4),
    tables=[Table("One PPO iteration, `default` preset sizes (s per iteration)", "ppo",
                  bench_ppo.COLUMNS)]))
register(Benchmark(
    name="irl", run=bench_irl.run,
    kwargs=dict(shape="tiny", num_pairs=200, text_len=60, batch_sizes=(2, 8, 32)),
    toy_kwargs=dict(shape="toy", num_pairs=8, text_len=10, batch_sizes=(2,),
                    peer_batch_sizes=(2,), bf16_batch_sizes=(2,)),
    tables=[Table("One IRL epoch, max-margin, top block + head trained (s per epoch)", "irl",
                  bench_irl.COLUMNS)]))
register(Benchmark(
    name="scaling", run=bench_scaling.run,
    kwargs=dict(shape="pythia-70m", device_counts=(1, 2, 4), seqs=(64, 128, 256, 512), seq_batch=4,
                batches=(1, 2, 4, 8, 16), batch_seq=128),
    toy_kwargs=dict(shape="toy", device_counts=(2,), mesh_batch=2, mesh_seq=8, seqs=(8,),
                    seq_batch=2, batches=(1,), batch_seq=8),
    tables=[Table("Forward time against sequence length and batch size", "scaling",
                  bench_scaling.SWEEP_COLUMNS),
            Table("A data mesh of simulated CPU devices (same global batch)", "mesh",
                  bench_scaling.MESH_COLUMNS)]))

MACHINE_COLUMNS = ["bandwidth_gb_s", "f32_peak_gflops", "bf16_peak_gflops", "mkl_f32_peak_gflops",
                   "xla_f32_peak", "mkl_f32_peak", "xla_bf16_peak", "torch_bf16_peak",
                   "xla_sum_bw", "numpy_sum_bw", "torch_sum_bw"]


def run_benchmarks(names: Sequence[str], repeats: int = 3, toy: bool = False,
                   max_load: float = 0.0, wait_s: float = 0.0,
                   machine: roofline.Machine | None = None) -> dict[str, Any]:
    """Measures the machine (unless ``machine`` is given), then runs the named benchmarks.

    Returns {environment, machine, benchmarks: {name: {...}}}. With ``max_load`` > 0,
    each benchmark first waits up to ``wait_s`` seconds for the 1-minute load average
    to fall below it (other users of a shared machine).
    """
    unknown = [n for n in names if n not in REGISTRY]
    if unknown:
        raise ValueError(f"unknown benchmark '{unknown[0]}' (known: {', '.join(REGISTRY)})")
    results: dict[str, Any] = {"environment": common.environment_info(), "toy": toy,
                               "repeats": repeats, "benchmarks": {}}
    load_before = os.getloadavg()[0]
    if machine is None and toy:
        machine = roofline.measure_machine(sizes=(256,), repeats=1, nbytes=16 << 20)
    elif machine is None:
        machine = roofline.measure_machine()
    results["machine"] = {**machine.as_row(), "load_before": load_before,
                          "load_after": os.getloadavg()[0]}
    for name in names:
        bench = REGISTRY[name]
        if max_load > 0:
            common.wait_for_quiet(max_load, wait_s)
        load_before = os.getloadavg()[0]
        start = time.perf_counter()
        kwargs = dict(bench.toy_kwargs if toy else bench.kwargs)
        if "machine" in inspect.signature(bench.run).parameters:
            kwargs["machine"] = machine
        rows = bench.run(repeats=repeats, **kwargs)
        results["benchmarks"][name] = {
            "wall_s": time.perf_counter() - start,
            "load_before": load_before, "load_after": os.getloadavg()[0], "rows": rows}
    return results


def headline_rows(results: dict[str, Any]) -> list[dict[str, Any]]:
    return [row for result in results["benchmarks"].values() for row in result["rows"]
            if row.get("benchmark") == "headline"]


LEAD_COLUMNS = ["benchmark", "unit", "peer", "peer value", "jaxirl", "roofline",
                "share of roofline", "ratio"]
LEAD_START = "<!-- run_all: lead table -->"
LEAD_END = "<!-- run_all: end of lead table -->"


def _peer_label(row: dict[str, Any]) -> str:
    """The peer's name, with its precision on a low-precision jaxirl row: every peer in
    this suite runs float32 (a bf16 row compares jaxirl bf16 with the float32 peer)."""
    low = any(t in row["what"] for t in ("bf16", "bfloat16"))
    name = row["peer_name"]
    return f"{name}, float32" if low and "float32" not in name else name


def lead_table(results: dict[str, Any]) -> str:
    """The lead table: every headline row, then the machine's limits measured in the run."""
    rows = [{"benchmark": r["what"], "unit": r["unit"], "peer": _peer_label(r),
             "peer value": r["peer"], "jaxirl": r["jaxirl"], "roofline": r["roofline"],
             "share of roofline": r["share_of_roofline"], "ratio": r["ratio"]}
            for r in headline_rows(results)]
    m, env = results["machine"], results["environment"]
    return "\n".join([
        common.markdown_table(rows, LEAD_COLUMNS), "",
        "Values are in the unit given (seconds: lower is better); the ratio is jaxirl's speed "
        "over the peer's (> 1: jaxirl faster); the share of the roofline is the least time "
        "the work can take on this machine over the time jaxirl took (a bf16 row's "
        "roofline counts 2-byte weights and, in generation, a 2-byte KV cache, the least "
        "traffic, although jaxirl keeps its KV cache in float32 on CPU). Measured in the same "
        f"run on {env['usable_cores']} usable core(s) of {env['cpu']}: streaming bandwidth "
        f"{m['bandwidth_gb_s']:.1f} GB/s, float32 matmul peak {m['f32_peak_gflops']:.0f} "
        f"GFLOP/s (MKL {m['mkl_f32_peak']:.0f}, XLA {m['xla_f32_peak']:.0f}), bf16 peak "
        f"{m['bf16_peak_gflops']:.0f} GFLOP/s (XLA {m['xla_bf16_peak']:.0f}, torch "
        f"{m['torch_bf16_peak']:.0f})"
        + (f"; last-level cache {m['llc_mib']:.0f} MiB (an optimizer state that fits in it "
           "counts as no memory traffic)" if m.get("llc_mib") else "")
        + f"; 1-min load average {m['load_before']:.1f} before.",
    ])


def replace_lead_table(markdown: str, table: str) -> str:
    """``markdown`` with the block between LEAD_START and LEAD_END replaced by ``table``."""
    start, end = markdown.find(LEAD_START), markdown.find(LEAD_END)
    if start < 0 or end < start:
        raise ValueError(f"no '{LEAD_START}' ... '{LEAD_END}' block to replace")
    return markdown[:start + len(LEAD_START)] + "\n" + table + "\n" + markdown[end:]


def to_markdown(results: dict[str, Any]) -> str:
    env = results["environment"]
    machine = results["machine"]
    lines = ["# jaxirl benchmarks", "",
             f"CPU: {env['cpu']}, {env['nproc']} cores; jax {env['jax']}, jaxlib {env['jaxlib']}, "
             f"flax {env['flax']}, torch {env['torch']} ({env['torch_blas']}, "
             f"{env['torch_cpu_capability']}), transformers {env['transformers']}; "
             f"usable cores {env['usable_cores']} (XLA sizes its pool by them), "
             f"torch threads {env['torch_threads']}. "
             "Ratios are jaxirl / peer speed (> 1: jaxirl faster); a share of the roofline is "
             "the least time the work can take on this machine over the time it took.", ""]
    if headline_rows(results):
        lines += ["## Against the peers and the machine's limit", "", lead_table(results), ""]
    lines += ["## The machine, measured in this run (GB/s, GFLOP/s)", "",
              common.markdown_table([machine], MACHINE_COLUMNS), "",
              f"_1-min load average {machine['load_before']:.1f} before, "
              f"{machine['load_after']:.1f} after._", ""]
    for name, result in results["benchmarks"].items():
        rows = result["rows"]
        for table in REGISTRY[name].tables:
            chosen = [r for r in rows if r.get("benchmark") == table.kind]
            if chosen:
                lines += [f"## {table.title}", "", common.markdown_table(chosen, list(table.columns)), ""]
        lines.append(f"_{name}: {result['wall_s']:.0f} s, 1-min load average "
                     f"{result['load_before']:.1f} before, {result['load_after']:.1f} after._")
        lines.append("")
    return "\n".join(lines)


FLAGS = flags.FLAGS
flags.DEFINE_list("only", [], "Benchmarks to run (default: all registered).")
flags.DEFINE_integer("repeats", 3, "Timed repeats per measurement (medians are reported).")
flags.DEFINE_bool("toy", False, "Toy sizes: checks that everything runs, in seconds.")
flags.DEFINE_string("out_dir", "benchmarks/results", "Where results.json and results.md go.")
flags.DEFINE_float("max_load", 0.0, "Wait for the 1-min load average to drop below this (0: don't).")
flags.DEFINE_float("wait_s", 120.0, "Longest wait for a quiet machine, per benchmark.")
flags.DEFINE_bool("one_core", False, "Pin the process to one core and torch to one thread.")
flags.DEFINE_string("benchmarks_md", "", "Markdown file whose lead-table block gets this run's "
                    "table (BENCHMARKS.md); empty: none.")


@one_line_errors
def main(argv):
    del argv
    names = FLAGS.only or list(REGISTRY)
    unknown = [n for n in names if n not in REGISTRY]
    if unknown:
        raise ConfigError(f"--only: unknown benchmark '{unknown[0]}' "
                          f"(known: {', '.join(REGISTRY)})")
    target = pathlib.Path(FLAGS.benchmarks_md) if FLAGS.benchmarks_md else None
    if target is not None:
        if FLAGS.toy:
            raise ConfigError("--benchmarks_md takes full-size results, not --toy ones")
        try:  # fail now, not after the run
            replace_lead_table(target.read_text(), "")
        except (OSError, ValueError) as e:
            raise ConfigError(f"--benchmarks_md {target}: {e}") from e
    if FLAGS.one_core:
        common.pin_to_one_core()
    results = run_benchmarks(names, FLAGS.repeats, FLAGS.toy, FLAGS.max_load, FLAGS.wait_s)
    out = pathlib.Path(FLAGS.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps(results, indent=1) + "\n")
    markdown = to_markdown(results)
    (out / "results.md").write_text(markdown + "\n")
    if target is not None:
        table = lead_table(results) + f"\n\nRaw results: `{out / 'results.json'}`."
        target.write_text(replace_lead_table(target.read_text(), table))
    print(markdown)


if __name__ == "__main__":
    app.run(main)
