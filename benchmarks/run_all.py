"""Runs every registered benchmark; writes ``results.json`` and ``results.md``.

    python -m benchmarks.run_all --out_dir=/tmp/bench            # full sizes, ~10 min on 2 cores
    python -m benchmarks.run_all --toy --repeats=1               # every benchmark at toy sizes
    python -m benchmarks.run_all --only=forward,generate

New benchmarks join with one :func:`register`
call: a ``run(repeats=..., **kwargs) -> list[dict]`` function, its full-size and
toy-size keyword arguments, and the tables to print from its rows.
"""

from __future__ import annotations

import dataclasses
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
)

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
    name="peak", run=bench_peak.run,
    kwargs=dict(sizes=(2048, 4096), shape="pythia-70m", batch=8, seqs=(128, 512)),
    toy_kwargs=dict(sizes=(128,), shape="toy", batch=2, seqs=(16,)),
    tables=[Table("Machine limit: float32 matmul GFLOP/s", "peak", bench_peak.PEAK_COLUMNS),
            Table("Share of the matmul peak reached by the jaxirl forward", "utilisation",
                  bench_peak.UTIL_COLUMNS)]))
register(Benchmark(
    name="forward", run=bench_forward.run,
    kwargs=dict(shapes=("tiny", "pythia-70m"), batch=8, seqs=(128, 512)),
    toy_kwargs=dict(shapes=("toy",), batch=2, seqs=(16,)),
    tables=[Table("Forward pass, fp32 CPU (tokens/s)", "forward", bench_forward.COLUMNS)]))
register(Benchmark(
    name="generate", run=bench_generate.run,
    kwargs=dict(shapes=("tiny", "pythia-70m"), batch=16, prompt_len=64, new_tokens=64),
    toy_kwargs=dict(shapes=("toy",), batch=2, prompt_len=4, new_tokens=4),
    tables=[Table("Generation, top-k 30 sampling with a KV cache (new tokens/s)", "generate",
                  bench_generate.COLUMNS)]))
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

register(Benchmark(
    name="ppo", run=bench_ppo.run,
    kwargs=dict(shapes=("tiny",), prompt_len=8),
    toy_kwargs=dict(shapes=("toy",), prompt_len=8, num_rollouts=8, batch_size=4, chunk_size=8,
                    ppo_epochs=1, max_new_tokens=4),
    tables=[Table("One PPO iteration, `default` preset sizes (s per iteration)", "ppo",
                  bench_ppo.COLUMNS)]))
register(Benchmark(
    name="irl", run=bench_irl.run,
    kwargs=dict(shape="tiny", num_pairs=200, text_len=60, batch_sizes=(2, 8, 32)),
    toy_kwargs=dict(shape="toy", num_pairs=8, text_len=10, batch_sizes=(2, 4)),
    tables=[Table("One IRL epoch, max-margin, top block + head trained (s per epoch)", "irl",
                  bench_irl.COLUMNS)]))


def run_benchmarks(names: Sequence[str], repeats: int = 3, toy: bool = False,
                   max_load: float = 0.0, wait_s: float = 0.0) -> dict[str, Any]:
    """Runs the named benchmarks in order; returns {environment, benchmarks: {name: {...}}}.

    With ``max_load`` > 0, each benchmark first waits up to ``wait_s`` seconds for
    the 1-minute load average to fall below it (other users of a shared machine).
    """
    unknown = [n for n in names if n not in REGISTRY]
    if unknown:
        raise ValueError(f"unknown benchmark '{unknown[0]}' (known: {', '.join(REGISTRY)})")
    results: dict[str, Any] = {"environment": common.environment_info(), "toy": toy,
                               "repeats": repeats, "benchmarks": {}}
    for name in names:
        bench = REGISTRY[name]
        if max_load > 0:
            common.wait_for_quiet(max_load, wait_s)
        load_before = os.getloadavg()[0]
        start = time.perf_counter()
        rows = bench.run(repeats=repeats, **(bench.toy_kwargs if toy else bench.kwargs))
        results["benchmarks"][name] = {
            "wall_s": time.perf_counter() - start,
            "load_before": load_before, "load_after": os.getloadavg()[0], "rows": rows}
    return results


def to_markdown(results: dict[str, Any]) -> str:
    env = results["environment"]
    lines = ["# jaxirl benchmarks", "",
             f"CPU: {env['cpu']}, {env['nproc']} cores; jax {env['jax']}, jaxlib {env['jaxlib']}, "
             f"flax {env['flax']}, torch {env['torch']} ({env['torch_blas']}, "
             f"{env['torch_cpu_capability']}), transformers {env['transformers']}; "
             f"usable cores {env['usable_cores']} (XLA sizes its pool by them), "
             f"torch threads {env['torch_threads']}. "
             "Ratios are jaxirl / peer throughput (> 1: jaxirl faster).", ""]
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


def main(argv):
    del argv
    if FLAGS.one_core:
        common.pin_to_one_core()
    results = run_benchmarks(FLAGS.only or list(REGISTRY), FLAGS.repeats, FLAGS.toy,
                             FLAGS.max_load, FLAGS.wait_s)
    out = pathlib.Path(FLAGS.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps(results, indent=1) + "\n")
    markdown = to_markdown(results)
    (out / "results.md").write_text(markdown + "\n")
    print(markdown)


if __name__ == "__main__":
    app.run(main)
