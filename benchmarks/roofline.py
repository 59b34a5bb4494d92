"""The machine's limits, measured in the same run, and each benchmark's roofline time.

A benchmark's roofline time is the least time its work can take on this machine:
for each phase, the larger of ``FLOPs / matmul peak`` and ``bytes / streaming
bandwidth``, summed over phases. Its share of the roofline is roofline time over
measured time (1.0 = at the machine's limit).

Measured here, in the run that uses them:
  * streaming read bandwidth: the best of summing a 256 MiB float32 array with
    XLA, numpy and torch (far beyond the last-level cache);
  * float32 matmul peak: the best of XLA's ``jnp.dot`` and torch's MKL ``mm``, n x n;
  * bfloat16 matmul peak: the best of XLA's bf16 x bf16 -> float32 dot and torch's
    bf16 ``mm``. CPUs without bf16 arithmetic (AVX2 only) convert and run at or
    below their float32 peak; AMX / AVX-512-BF16 CPUs run several times faster.

FLOP counts are the work each computation needs (2 per multiply-add of the matmul
weights and of causal attention); bytes are what must cross the memory bus at
least once (weights read per pass, KV cache read per decode step, logits written,
optimizer state read and written when it does not fit in the last-level cache: a
state that fits stays there from step to step). Both are analytic, per phase, in the
helpers below.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Sequence
from typing import Any

import numpy as np

BANDWIDTH_BYTES = 256 << 20


@dataclasses.dataclass(frozen=True)
class Machine:
    """The limits the rooflines use: bytes/s and FLOP/s."""

    bandwidth: float
    f32_peak: float
    bf16_peak: float
    mkl_f32_peak: float
    details: dict[str, float]
    # The last-level cache, bytes (0: unknown, so nothing counts as cache-resident).
    llc_bytes: int = 0

    def peak(self, dtype: str) -> float:
        return self.bf16_peak if dtype == "bfloat16" else self.f32_peak

    def as_row(self) -> dict[str, Any]:
        return {"benchmark": "machine", "bandwidth_gb_s": self.bandwidth / 1e9,
                "f32_peak_gflops": self.f32_peak / 1e9, "bf16_peak_gflops": self.bf16_peak / 1e9,
                "mkl_f32_peak_gflops": self.mkl_f32_peak / 1e9, "llc_mib": self.llc_bytes / 2**20,
                **{k: v / 1e9 for k, v in self.details.items()}}


def _best(fn, repeats: int) -> float:
    fn()
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def measure_bandwidth(nbytes: int = BANDWIDTH_BYTES, repeats: int = 5) -> dict[str, float]:
    """Streaming read bandwidth, bytes/s, of summing an ``nbytes`` float32 array, per library."""
    import jax
    import jax.numpy as jnp
    import torch

    n = nbytes // 4
    x = jnp.ones((n,), jnp.float32)
    xla_sum = jax.jit(jnp.sum)
    host = np.ones(n, np.float32)
    tensor = torch.from_numpy(host)
    times = {
        "xla_sum_bw": _best(lambda: xla_sum(x).block_until_ready(), repeats),
        "numpy_sum_bw": _best(lambda: host.sum(), repeats),
        "torch_sum_bw": _best(lambda: tensor.sum(), repeats),
    }
    return {k: nbytes / t for k, t in times.items()}


def measure_matmul_peaks(sizes: Sequence[int] = (2048, 4096), repeats: int = 3
                         ) -> dict[str, float]:
    """FLOP/s of n x n matmuls: XLA and torch, float32 and bf16 (best over ``sizes``)."""
    import jax
    import jax.numpy as jnp
    import torch

    dot = jax.jit(jnp.dot)
    dot_bf16 = jax.jit(lambda a, b: jnp.dot(a, b, preferred_element_type=jnp.float32))
    out: dict[str, float] = {}
    for n in sizes:
        a = jax.random.normal(jax.random.PRNGKey(n), (n, n), jnp.float32)
        a16 = a.astype(jnp.bfloat16)
        ta = torch.from_numpy(np.array(a))
        runs = {"xla_f32": lambda a=a: dot(a, a).block_until_ready(),
                "mkl_f32": lambda ta=ta: torch.mm(ta, ta),
                "xla_bf16": lambda a16=a16: dot_bf16(a16, a16).block_until_ready()}
        for name, fn in runs.items():
            out[name + "_peak"] = max(out.get(name + "_peak", 0.0), 2.0 * n**3 / _best(fn, repeats))
    out["torch_bf16_peak"] = _torch_bf16_peak(max(sizes), out["mkl_f32_peak"])
    return out


def _torch_bf16_peak(largest: int, f32_peak: float, probe: int = 256) -> float:
    """torch's bf16 ``mm`` FLOP/s, at ``largest`` only where a small probe shows it is fast.

    On a CPU without bf16 arithmetic it is 100x or more below float32 (0.2 GFLOP/s on
    an AVX2 core): a 2048 x 2048 product would then take minutes and tell nothing more.
    """
    import torch

    rate = 0.0
    for n in (probe, largest):
        a = torch.randn(n, n).bfloat16()
        rate = max(rate, 2.0 * n**3 / _best(lambda a=a: torch.mm(a, a), 1))
        if rate < 0.25 * f32_peak:
            break
    return rate


def last_level_cache_bytes(root: str = "/sys/devices/system/cpu/cpu0/cache") -> int:
    """The size of the highest-level cache Linux reports for CPU 0, bytes (0: unknown)."""
    import pathlib

    best_level, size = 0, 0
    for index in pathlib.Path(root).glob("index*"):
        try:
            level = int((index / "level").read_text())
            text = (index / "size").read_text().strip().upper()
        except (OSError, ValueError):
            continue
        units = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}
        value = int(text[:-1]) * units[text[-1]] if text[-1] in units else int(text)
        if level > best_level or (level == best_level and value > size):
            best_level, size = level, value
    return size


def measure_machine(sizes: Sequence[int] = (2048, 4096), repeats: int = 3,
                    nbytes: int = BANDWIDTH_BYTES) -> Machine:
    """Bandwidth and matmul peaks of this process's cores, measured now."""
    bw = measure_bandwidth(nbytes, max(repeats, 3))
    peaks = measure_matmul_peaks(sizes, repeats)
    return Machine(
        bandwidth=max(bw.values()),
        f32_peak=max(peaks["xla_f32_peak"], peaks["mkl_f32_peak"]),
        bf16_peak=max(peaks["xla_bf16_peak"], peaks["torch_bf16_peak"]),
        mkl_f32_peak=peaks["mkl_f32_peak"],
        details={**bw, **peaks}, llc_bytes=last_level_cache_bytes())


# ------------------------------------------------------------------ work of each phase


@dataclasses.dataclass(frozen=True)
class Work:
    """FLOPs and bytes of one phase; phases add up (each keeps its own bound)."""

    flops: float
    bytes: float
    phases: tuple[tuple[float, float], ...] = ()

    def __add__(self, other: Work) -> Work:
        return Work(self.flops + other.flops, self.bytes + other.bytes,
                    self.all_phases() + other.all_phases())

    def __mul__(self, count: int) -> Work:
        return Work(self.flops * count, self.bytes * count, self.all_phases() * count)

    def all_phases(self) -> tuple[tuple[float, float], ...]:
        return self.phases or ((self.flops, self.bytes),)

    def roofline_s(self, peak: float, bandwidth: float) -> float:
        """Sum over phases of max(FLOPs / peak, bytes / bandwidth)."""
        return float(sum(max(f / peak, b / bandwidth) for f, b in self.all_phases()))


def matmul_weights(config, lm_head: bool = True) -> int:
    """Weights that multiply every token: the blocks' four matrices (and the LM head)."""
    h, inter = config.hidden_size, config.intermediate_size
    blocks = config.num_hidden_layers * (4 * h * h + 2 * h * inter)
    return blocks + (h * config.vocab_size if lm_head else 0)


def attention_flops(config, queries: int, keys: float) -> float:
    """QK^T and PV of ``queries`` query tokens over ``keys`` keys each, all layers."""
    return 4.0 * config.num_hidden_layers * queries * keys * config.hidden_size


def forward_work(config, batch: int, seq: int, logits: int | None = None,
                 itemsize: int = 4) -> Work:
    """A causal forward over [batch, seq]: weights read once, ``logits`` positions written.

    Attention is causal (a query reads the keys up to itself: seq / 2 on average).
    """
    tokens = batch * seq
    logits = tokens if logits is None else logits
    flops = (2.0 * matmul_weights(config, lm_head=False) * tokens
             + 2.0 * config.hidden_size * config.vocab_size * logits
             + attention_flops(config, tokens, (seq + 1) / 2))
    bytes_ = matmul_weights(config) * itemsize + 4.0 * logits * config.vocab_size
    return Work(flops, bytes_)


def decode_work(config, batch: int, prompt: int, new_tokens: int, itemsize: int = 4) -> Work:
    """Prefill (LM head on the last column) plus ``new_tokens - 1`` decode steps.

    A decode step reads every matmul weight and the filled part of the KV cache.
    """
    work = forward_work(config, batch, prompt, logits=batch, itemsize=itemsize)
    per_layer_kv = 2 * config.hidden_size * itemsize  # bytes of one token's k and v
    for step in range(new_tokens - 1):
        filled = prompt + step + 1
        flops = (2.0 * matmul_weights(config) * batch + attention_flops(config, batch, filled))
        bytes_ = (matmul_weights(config) * itemsize
                  + config.num_hidden_layers * batch * filled * per_layer_kv
                  + 4.0 * batch * config.vocab_size)
        work = work + Work(flops, bytes_)
    return work


def adam_work(num_params: int, cache_bytes: int = 0) -> Work:
    """One AdamW step in float32: read params, grads, m, v; write params, m, v.

    When that state (16 bytes per parameter) fits in ``cache_bytes`` of last-level cache,
    it stays there from one step to the next and need not cross the memory bus: the
    step's least traffic is then none (a small IRL head's 3 MB, not a 70M model's 1 GB).
    """
    traffic = 0.0 if 16 * num_params <= cache_bytes else 7.0 * 4 * num_params
    return Work(10.0 * num_params, traffic)


def share(roofline_s: float, measured_s: float) -> float:
    return float(roofline_s / measured_s) if measured_s > 0 else float("nan")


def roofline_columns(work: Work, machine: Machine, measured_s: float, dtype: str = "float32",
                     prefix: str = "") -> dict[str, float]:
    """FLOPs, bytes, roofline time and share for a row (``prefix`` names a variant)."""
    roof = work.roofline_s(machine.peak(dtype), machine.bandwidth)
    return {f"{prefix}gflop": work.flops / 1e9, f"{prefix}mbytes": work.bytes / 1e6,
            f"{prefix}roofline_s": roof, f"{prefix}share": share(roof, measured_s)}


def count_params(config, with_value_head: bool = False) -> int:
    """Parameters of a GPT-NeoX config (embeddings, blocks, norms, untied LM head)."""
    import math

    import jax

    from jaxirl.models.gpt_neox import init_params

    shapes = jax.eval_shape(lambda: init_params(config, jax.random.PRNGKey(0), with_value_head))
    return int(sum(math.prod(x.shape) for x in jax.tree_util.tree_leaves(shapes)))
