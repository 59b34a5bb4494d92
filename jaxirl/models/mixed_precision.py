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
would stream the float32 weights at every step.
"""

from __future__ import annotations

import functools
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
    grad_b = jnp.einsum(f"{spec_a},{out}->{spec_b}", a, g, preferred_element_type=jnp.float32)
    return grad_a.astype(a.dtype), grad_b.astype(b.dtype)


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


def _is_matmul_weight(path: tuple, tied: bool) -> bool:
    names = [getattr(k, "key", getattr(k, "name", str(k))) for k in path]
    top, leaf = str(names[0]), str(names[-1])
    if top.startswith("layers_"):
        return leaf == "kernel"
    if top == "embed_out":
        return leaf == "weight"
    # The input embedding is a gather (casting all V x H would cost more than it
    # saves), unless it is tied to the LM head.
    return top == "embed_in" and tied


def cast_for_compute(params: Any, dtype: Any, tie_word_embeddings: bool = False) -> Any:
    """The GPT-NeoX params with the matmul weights (the blocks' kernels, the LM head) in ``dtype``.

    Layer norms, biases, the value head and any other subtree keep their float32
    values. Works on any slice of the full model's params (the reward model's top).
    A float32 ``dtype`` returns ``params`` itself.
    """
    if not is_low_precision(dtype):
        return params
    return jax.tree_util.tree_map_with_path(
        lambda path, x: x.astype(dtype) if _is_matmul_weight(path, tie_word_embeddings) else x,
        params)
