"""Shared helpers of the benchmarks: timing, model shapes, one set of weights for both sides.

Every benchmark runs jaxirl and its PyTorch peer in the same process on the same
weights and shapes. A timing separates the first call (XLA compile, or PyTorch's
warm-up) from the steady state, which is the median of several repeats.
Ratios are always jaxirl throughput / peer throughput: above 1 means jaxirl is faster.
"""

from __future__ import annotations

import dataclasses
import os
import pathlib
import platform
import subprocess
import tempfile
import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

# Shapes of the benchmarked models, as transformers.GPTNeoXConfig keywords.
TINY = dict(vocab_size=2048, hidden_size=128, num_hidden_layers=4, num_attention_heads=4,
            intermediate_size=512)
PYTHIA_70M = dict(vocab_size=50304, hidden_size=512, num_hidden_layers=6, num_attention_heads=8,
                  intermediate_size=2048)
# A toy shape for smoke tests: every benchmark runs on it in about a second.
TOY = dict(vocab_size=97, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
           intermediate_size=64)
# The published shapes of the larger Pythia models (for the compiled memory plan).
PYTHIA_410M = dict(vocab_size=50304, hidden_size=1024, num_hidden_layers=24,
                   num_attention_heads=16, intermediate_size=4096)
PYTHIA_1_4B = dict(vocab_size=50304, hidden_size=2048, num_hidden_layers=24,
                   num_attention_heads=16, intermediate_size=8192)
PYTHIA_2_8B = dict(vocab_size=50304, hidden_size=2560, num_hidden_layers=32,
                   num_attention_heads=32, intermediate_size=10240)
PYTHIA_6_9B = dict(vocab_size=50432, hidden_size=4096, num_hidden_layers=32,
                   num_attention_heads=32, intermediate_size=16384)
SHAPES = {"toy": TOY, "tiny": TINY, "pythia-70m": PYTHIA_70M, "pythia-410m": PYTHIA_410M,
          "pythia-1.4b": PYTHIA_1_4B, "pythia-2.8b": PYTHIA_2_8B, "pythia-6.9b": PYTHIA_6_9B}
# Pythia's settings that the shapes above leave out; eos/pad are set per benchmark.
_COMMON = dict(max_position_embeddings=2048, rotary_pct=0.25, use_parallel_residual=True,
               tie_word_embeddings=False, hidden_act="gelu", bos_token_id=0, eos_token_id=0)


@dataclasses.dataclass(frozen=True)
class Timing:
    """Wall-clock times of one benchmarked callable, in seconds.

    Attributes:
      first_s: the first call, one execution included: jit tracing + XLA compilation + a run
        (jaxirl) or the warm-up run (torch). The compile cost is about ``first_s - median_s``.
      times_s: the steady-state repeats after ``warmup`` further untimed calls.
    """

    first_s: float
    times_s: tuple[float, ...]

    @property
    def median_s(self) -> float:
        return float(np.median(self.times_s))

    @property
    def best_s(self) -> float:
        """The fastest repeat: the least disturbed by other processes on a shared machine."""
        return float(min(self.times_s))

    @property
    def spread(self) -> float:
        """(max - min) / median of the repeats: how noisy the machine was."""
        return float((max(self.times_s) - min(self.times_s)) / self.median_s)


def time_fn(fn: Callable[[], Any], repeats: int = 3, warmup: int = 1) -> Timing:
    """Times ``fn`` (which must block until its result is ready).

    The first call is timed alone (compile / warm-up); ``warmup`` more calls are
    discarded so that caches and thread pools settle; then ``repeats`` are timed.
    """
    start = time.perf_counter()
    fn()
    first = time.perf_counter() - start
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(max(1, repeats)):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return Timing(first_s=first, times_s=tuple(times))


def time_interleaved(fns: Sequence[Callable[[], Any]], repeats: int = 3, warmup: int = 1
                     ) -> list[Timing]:
    """Times blocking callables with their repeats interleaved (a, b, c, a, b, c, ...).

    Interleaving exposes every side to the same background load, which on a
    shared 2-core machine moves far more than either side's own variance.
    """
    firsts = []
    for fn in fns:
        start = time.perf_counter()
        fn()
        firsts.append(time.perf_counter() - start)
        for _ in range(warmup):
            fn()
    times: list[list[float]] = [[] for _ in fns]
    for _ in range(max(1, repeats)):
        for fn, out in zip(fns, times, strict=True):
            start = time.perf_counter()
            fn()
            out.append(time.perf_counter() - start)
    return [Timing(first_s=f, times_s=tuple(t)) for f, t in zip(firsts, times, strict=True)]


def time_pair(fn_a: Callable[[], Any], fn_b: Callable[[], Any], repeats: int = 3,
              warmup: int = 1) -> tuple[Timing, Timing]:
    """:func:`time_interleaved` of two callables."""
    a, b = time_interleaved([fn_a, fn_b], repeats, warmup)
    return a, b


def try_peer(fn: Callable[[], Any]) -> tuple[str | None, float]:
    """Calls a peer once (its compile / warm-up): (None, seconds), or (the error, seconds).

    A peer that cannot run on this machine (``torch.compile`` without a working
    compiler, say) is reported, not fatal: its columns become NaN and the error
    is kept in the row.
    """
    start = time.perf_counter()
    try:
        fn()
    except Exception as e:  # noqa: BLE001 - any failure of an optional peer is reported
        message = f"{type(e).__name__}: {e}".splitlines()[0][:300]
        print(f"peer failed on this machine: {message}")
        return message, time.perf_counter() - start
    return None, time.perf_counter() - start


def ratio(jaxirl_rate: float, peer_rate: float) -> float:
    """jaxirl throughput over the peer's: > 1 means jaxirl is faster."""
    return float(jaxirl_rate / peer_rate) if peer_rate > 0 else float("nan")


def hf_config_kwargs(shape: str, **overrides) -> dict[str, Any]:
    """transformers.GPTNeoXConfig keywords of a named shape ('toy', 'tiny' or 'pythia-70m')."""
    return {**_COMMON, **SHAPES[shape], **overrides}


def jaxirl_config(shape: str, **overrides):
    """jaxirl's GPTNeoXConfig of a named shape (for benchmarks that need no torch peer)."""
    from jaxirl.models.gpt_neox_config import GPTNeoXConfig

    kwargs = hf_config_kwargs(shape, **overrides)
    fields = {f.name for f in dataclasses.fields(GPTNeoXConfig)}
    return GPTNeoXConfig(**{k: v for k, v in kwargs.items() if k in fields})


def build_pair(shape: str, workdir: str | os.PathLike | None = None, seed: int = 0, **overrides):
    """A random transformers GPTNeoXForCausalLM and the same weights in jaxirl.

    The torch model is saved with ``save_pretrained`` and read back by jaxirl's
    ``load_pretrained``, so both sides hold identical float32 weights.

    Returns:
      ``(torch_model, jax_model, jax_params)``; the torch model is in eval mode.
    """
    import torch
    import transformers

    from jaxirl.models.hf_io import load_pretrained

    torch.manual_seed(seed)
    config = transformers.GPTNeoXConfig(**hf_config_kwargs(shape, **overrides))
    torch_model = transformers.GPTNeoXForCausalLM(config).eval()
    with tempfile.TemporaryDirectory(dir=workdir) as tmp:
        folder = pathlib.Path(tmp) / shape
        torch_model.save_pretrained(str(folder))
        jax_model, params = load_pretrained(folder)
    return torch_model, jax_model, params


def count_params(params: Any) -> int:
    import jax

    return int(sum(np.size(x) for x in jax.tree_util.tree_leaves(params)))


def _cpu_model() -> str:
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=False).stdout
    except OSError:
        return platform.processor() or "unknown"
    for line in out.splitlines():
        if line.startswith("Model name:"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def pin_to_one_core() -> None:
    """Pins this process (and the mesh subprocesses it starts) to one core, torch to one thread.

    Call before jax first computes: XLA:CPU sizes its thread pool from the cores this
    process may run on. One core each is the robust comparison on a loaded machine:
    with every core busy elsewhere, each multi-threaded op waits at a barrier for a
    descheduled worker, which costs small-op workloads (decoding) far more than
    large matmuls.
    """
    import torch

    os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})
    torch.set_num_threads(1)


def usable_cores() -> int:
    """Cores this process may run on (what XLA:CPU sizes its intra-op pool by)."""
    return len(os.sched_getaffinity(0))


def environment_info() -> dict[str, Any]:
    """Machine, library versions and thread settings that the figures depend on."""
    import flax
    import jax
    import jaxlib
    import torch
    import transformers

    config = torch.__config__.show()
    blas = "MKL" if "Math Kernel Library" in config else ("OpenBLAS" if "OpenBLAS" in config else "?")
    capability = next((line.split(":", 1)[1].strip() for line in config.splitlines()
                       if "CPU capability usage" in line), "?")
    return {
        "cpu": _cpu_model(),
        "nproc": os.cpu_count(),
        "python": platform.python_version(),
        "jax": jax.__version__,
        "jaxlib": jaxlib.__version__,
        "flax": flax.__version__,
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "jax_devices": [str(d) for d in jax.devices()],
        "xla_flags": os.environ.get("XLA_FLAGS", ""),
        "usable_cores": usable_cores(),
        "torch_threads": torch.get_num_threads(),
        "torch_interop_threads": torch.get_num_interop_threads(),
        "torch_blas": blas,
        "torch_cpu_capability": capability,
        "OPENBLAS_CORETYPE": os.environ.get("OPENBLAS_CORETYPE", "(unset)"),
        "load_average_1m": os.getloadavg()[0],
    }


def markdown_table(rows: list[dict[str, Any]], columns: list[str]) -> str:
    """A GitHub markdown table of ``rows`` restricted to ``columns`` (floats to 3 significant)."""

    def fmt(x):
        if isinstance(x, float):
            if x != x:
                return "n/a"
            short = f"{x:.3g}"  # 999.7 rounds to "1e+03": write large values in full
            return short if abs(x) < 1000 and "e+" not in short else f"{x:,.0f}"
        return "" if x is None else str(x)

    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(fmt(r.get(c)) for c in columns) + " |" for r in rows]
    return "\n".join(lines)


def wait_for_quiet(max_load: float, timeout_s: float, poll_s: float = 5.0) -> float:
    """Waits until the 1-minute load average is below ``max_load`` or ``timeout_s`` passes.

    Returns the load average when it stopped waiting. Other processes on a small
    shared machine slow both sides unevenly, mostly through thread-pool barriers.
    """
    deadline = time.monotonic() + timeout_s
    load = os.getloadavg()[0]
    while load >= max_load and time.monotonic() < deadline:
        time.sleep(poll_s)
        load = os.getloadavg()[0]
    return load


def throughput_row(jax_t: Timing, torch_t: Timing, units: int) -> dict:
    """The shared timing columns of a jaxirl-vs-torch row; ``units`` are tokens per call."""
    jax_rate, torch_rate = units / jax_t.median_s, units / torch_t.median_s
    return {
        "jaxirl_compile_s": jax_t.first_s, "torch_warmup_s": torch_t.first_s,
        "jaxirl_s": jax_t.median_s, "torch_s": torch_t.median_s,
        "jaxirl_best_s": jax_t.best_s, "torch_best_s": torch_t.best_s,
        "jaxirl_tok_s": jax_rate, "torch_tok_s": torch_rate,
        "speedup": ratio(jax_rate, torch_rate),
        "jaxirl_spread": jax_t.spread, "torch_spread": torch_t.spread,
        "repeats": len(jax_t.times_s),
    }


HEADLINE_COLUMNS = ["what", "unit", "peer_name", "peer", "jaxirl", "roofline", "share_of_roofline",
                    "ratio"]


def headline(what: str, unit: str, peer_name: str, peer: float, jaxirl: float, roofline: float,
             seconds: bool = False) -> dict[str, Any]:
    """A row of the lead table. Values are in ``unit``: rates, or seconds when ``seconds``.

    ``share_of_roofline`` is the roofline's time over jaxirl's; ``ratio`` is jaxirl's
    speed over the peer's (> 1: jaxirl faster), whatever the unit.
    """
    if seconds:
        share, speedup = roofline / jaxirl, peer / jaxirl
    else:
        share, speedup = jaxirl / roofline, jaxirl / peer
    return {"benchmark": "headline", "what": what, "unit": unit, "peer_name": peer_name,
            "peer": peer, "jaxirl": jaxirl, "roofline": roofline, "share_of_roofline": share,
            "ratio": speedup}
