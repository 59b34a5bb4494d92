"""Mixed precision: low-precision matmul inputs, float32 accumulation, float32 master weights.

Every matmul of the GPT-NeoX port goes through :func:`einsum`. With a ``bfloat16``
compute dtype it feeds bf16 operands and asks XLA for a float32 result
(``preferred_element_type``), in the backward pass too (a ``custom_vjp``): XLA:CPU's
bf16-output dot is a slow fallback kernel (a [16, 512] x [512, 50304] decode LM head:
64 ms against 9 ms with a float32 result, AMX CPU), and plain autodiff of a
mixed-precision dot runs its transposes as float32 x bf16 dots, which XLA upcasts to
float32. Everything else (layer norms, softmax, the residual stream, log-probs, the
value head, losses) stays float32, as do the parameters and the optimizer state.

:func:`cast_for_compute` converts a parameter tree's matmul weights once, before a
loop reads them many times (the sampler's decode loop): converting inside the loop
would stream the float32 weights at every step. :func:`decode_layout` likewise stores
the large block kernels transposed, once, for :func:`linear_nk`'s few-row path.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Mapping
from typing import Any

import chex
import jax
import jax.numpy as jnp

from jaxirl.errors import ConfigError

DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16}


def parse_dtype(name: str) -> Any:
    """``"float32"`` / ``"bfloat16"`` -> the jnp dtype; a ConfigError naming ``--dtype`` otherwise."""
    if name not in DTYPES:
        raise ConfigError(f"--dtype must be one of {', '.join(DTYPES)}, got {name!r}")
    return DTYPES[name]


def is_low_precision(dtype: Any) -> bool:
    return jnp.dtype(dtype) != jnp.dtype(jnp.float32)


def einsum(spec: str, a: chex.Array, b: chex.Array, dtype: Any = jnp.float32) -> chex.Array:
    """``jnp.einsum(spec, a, b)`` with both operands in ``dtype``, accumulated and returned in float32.

    ``spec`` is a two-operand einsum without ellipsis in which every index of an
    operand appears in the output or in the other operand (all of the model's
    matmuls); the backward pass then is two einsums of the same kind.
    """
    if not is_low_precision(dtype):
        return jnp.einsum(spec, a, b, preferred_element_type=jnp.float32)
    return _low_precision_einsum(spec, a.astype(dtype), b.astype(dtype))


@functools.partial(jax.custom_vjp, nondiff_argnums=(0,))
def _low_precision_einsum(spec, a, b):
    return jnp.einsum(spec, a, b, preferred_element_type=jnp.float32)


def _low_precision_einsum_fwd(spec, a, b):
    return _low_precision_einsum(spec, a, b), (a, b)


def _low_precision_einsum_bwd(spec, residuals, g):
    a, b = residuals
    inputs, out = spec.split("->")
    spec_a, spec_b = inputs.split(",")
    g = g.astype(a.dtype)  # the cotangent enters both transposed matmuls in low precision
    grad_a = jnp.einsum(f"{out},{spec_b}->{spec_a}", g, b, preferred_element_type=jnp.float32)
    if spec in _ROWS_WEIGHT_SPECS and jax.default_backend() == "cpu":
        grad_b = _weight_gradient(spec, a, g)
    else:
        grad_b = jnp.einsum(f"{spec_a},{out}->{spec_b}", a, g, preferred_element_type=jnp.float32)
    return grad_a.astype(a.dtype), grad_b.astype(b.dtype)


# A weight's gradient contracts the rows (tokens), the leading axis of both operands.
# XLA:CPU has no 16-bit kernel for that contraction: it widens both operands to float32
# and runs a float32 dot (80-133 GFLOP/s for [T, 512] x [T, 2048] on an AMX core, against
# 580-790 for the same dot in bf16 with the rows as the inner axis; BENCHMARKS.md). So one
# operand is transposed in memory first and the dot contracts an inner axis.
_ROWS_WEIGHT_SPECS = ("mk,kn->mn", "mk,nk->mn")


def transposed_copy(x: chex.Array) -> chex.Array:
    """``x.T`` of a 2-D array, written out row-major.

    XLA folds a plain transpose into the dot that reads it (as contraction dimensions
    or a layout), which puts back the contraction this avoids; the flattened copy
    behind an optimization barrier cannot be folded.
    """
    return jax.lax.optimization_barrier(x.T.reshape(-1)).reshape(x.shape[::-1])


def _weight_gradient(spec: str, a: chex.Array, g: chex.Array) -> chex.Array:
    """The kernel's cotangent of ``einsum(spec, a, kernel)`` for a [m, k] input ``a``."""
    if spec == "mk,kn->mn":  # kernel [k, n] = a^T g: transpose the input
        return jnp.einsum("km,mn->kn", transposed_copy(a), g, preferred_element_type=jnp.float32)
    # "mk,nk->mn", a weight stored [n, k] (the LM head): g^T a
    return jnp.einsum("nm,mk->nk", transposed_copy(g), a, preferred_element_type=jnp.float32)


_low_precision_einsum.defvjp(_low_precision_einsum_fwd, _low_precision_einsum_bwd)


def linear(x: chex.Array, kernel: chex.Array, dtype: Any = jnp.float32) -> chex.Array:
    """``x [..., K] @ kernel [K, N] -> [..., N]`` float32, through :func:`einsum`.

    In float32 it is exactly the ``lax.dot_general`` of ``flax.linen.Dense``.
    """
    if not is_low_precision(dtype):
        return jax.lax.dot_general(x, kernel, (((x.ndim - 1,), (0,)), ((), ())),
                                   preferred_element_type=jnp.float32)
    lead = x.shape[:-1]
    out = einsum("mk,kn->mn", x.reshape(-1, x.shape[-1]), kernel, dtype)
    return out.reshape(*lead, kernel.shape[-1])


# XLA:CPU's dot of a few rows against a large weight runs far below the memory bus: a
# [16, 512] x [512, 50304] decode LM head takes 46 ms (2.2 GB/s; MKL's ``mm`` is no
# faster), because the GEMM packs the whole weight for 16 rows. A multiply-and-row-sum
# over the weight stored [N, K] reads each weight row once for all the rows: 27 ms.
# Measured on one core (BENCHMARKS.md, "few-row matmuls"): it pays from 2 to 32 rows on
# weights of 2^20 elements or more, and loses at 1 row (XLA's matrix-vector kernel runs
# at the bus) and on small weights, which stay in cache.
ROW_REDUCE_ROWS = (2, 32)
ROW_REDUCE_MIN_WEIGHTS = 1 << 20


def row_reduce_pays(rows: int, weight_shape: tuple[int, ...], dtype: Any = jnp.float32) -> bool:
    """Whether ``rows`` rows times a weight of ``weight_shape`` take :func:`linear_nk`'s row sum.

    Static (shapes, dtype and the default backend): float32 on CPU only; a GPU or TPU
    matmul unit has no such gap.
    """
    return (not is_low_precision(dtype) and jax.default_backend() == "cpu"
            and ROW_REDUCE_ROWS[0] <= rows <= ROW_REDUCE_ROWS[1]
            and math.prod(weight_shape) >= ROW_REDUCE_MIN_WEIGHTS)


def kv_cache_dtype(dtype: Any) -> Any:
    """The KV cache's dtype for a model computing its matmuls in ``dtype``.

    The compute dtype, except a 16-bit one on CPU, which gets a float32 cache: XLA:CPU
    has no 16-bit dynamic-update-slice, so every decode step would widen each layer's
    whole cache to float32 and narrow it back, and widen it again for attention's
    float32 scores. Tiny shape, batch 16, one core: 116 ms per call with a bf16 cache,
    36.5 ms with a float32 one (44 ms all float32). Static (the default backend).
    """
    if is_low_precision(dtype) and jax.default_backend() == "cpu":
        return jnp.float32
    return dtype


def linear_nk(x: chex.Array, weight: chex.Array, dtype: Any = jnp.float32) -> chex.Array:
    """``x [..., K]`` times a weight stored ``[N, K]`` (PyTorch's layout) -> ``[..., N]`` float32.

    Few rows against a large weight (:func:`row_reduce_pays`) take a multiply and a sum
    over K instead of XLA's dot; otherwise it is the dot. The two differ by float32
    summation order only.
    """
    n, k = weight.shape
    lead = x.shape[:-1]
    rows = x.reshape(-1, k)
    if row_reduce_pays(rows.shape[0], weight.shape, dtype):
        out = jnp.sum(weight[:, None, :] * rows[None, :, :].astype(weight.dtype), axis=-1).T
    else:
        out = einsum("mk,nk->mn", rows, weight, dtype)
    return out.reshape(*lead, n)


def decode_layout(params: Any, rows: int, dtype: Any = jnp.float32) -> Any:
    """The blocks' params with each kernel that :func:`row_reduce_pays` for stored transposed.

    A 2-D ``kernel`` [K, N] under ``layers_*`` becomes ``kernel_nk`` [N, K], which
    :class:`jaxirl.models.gpt_neox.Linear` and ``FusedQKV`` read instead. Called once
    before a decode loop of ``rows`` rows per step (the transpose costs one pass over
    those weights); other leaves, and everything when nothing pays, are returned as is.
    """
    def convert(node):
        if "kernel" not in node:
            return node
        kernel = node["kernel"]
        if getattr(kernel, "ndim", 0) != 2 or not row_reduce_pays(rows, kernel.shape, dtype):
            return node
        out = {k: v for k, v in node.items() if k != "kernel"}
        out["kernel_nk"] = kernel.T
        return out

    def walk(node):
        if not isinstance(node, Mapping):
            return node
        return {k: walk(v) for k, v in convert(node).items()}

    return {k: walk(v) if str(k).startswith("layers_") else v for k, v in params.items()}


# cast_for_compute's extra top-level leaf: the tied LM head's weight [V, H] in the compute
# dtype, which GPTNeoXForCausalLM reads for the head in place of the embedding.
TIED_HEAD_WEIGHT = "tied_head_weight"


def _is_matmul_weight(path: tuple) -> bool:
    names = [getattr(k, "key", getattr(k, "name", str(k))) for k in path]
    top, leaf = str(names[0]), str(names[-1])
    if top.startswith("layers_"):
        return leaf == "kernel"
    # The input embedding is a gather and stays float32, tied or not (a tied head gets
    # its own copy, see cast_for_compute).
    return top == "embed_out" and leaf == "weight"


def cast_for_compute(params: Any, dtype: Any, tie_word_embeddings: bool = False) -> Any:
    """The GPT-NeoX params with the matmul weights (the blocks' kernels, the LM head) in ``dtype``.

    Layer norms, biases, the value head, the input embedding and any other subtree keep
    their float32 values. With ``tie_word_embeddings`` the LM head is the embedding
    [V, H]: it stays float32 for the input lookup, and a ``dtype`` copy of it is added
    under :data:`TIED_HEAD_WEIGHT` for the head's matmul only. Casting the embedding
    itself would make the sampler embed its tokens with rounded vectors that the
    float32 training forward does not use, so its log-probs would disagree with the
    forward's. Works on any slice of the full model's params (the reward model's top).
    A float32 ``dtype`` returns ``params`` itself.
    """
    if not is_low_precision(dtype):
        return params
    out = jax.tree_util.tree_map_with_path(
        lambda path, x: x.astype(dtype) if _is_matmul_weight(path) else x, params)
    if tie_word_embeddings and "embed_in" in params:
        out = {**out, TIED_HEAD_WEIGHT: params["embed_in"]["embedding"].astype(dtype)}
    return out
