"""The Flax pieces of the learned reward: pooling, heads, and the GPT-NeoX trunk split.

Pure modules and functions; :mod:`jaxirl.irl.reward_model` assembles them
into a loadable model. The split at block ``first`` gives a frozen bottom
(:class:`FrozenTrunk`) and a trainable top (:class:`RewardTop`) whose
parameter names are those of :class:`~jaxirl.models.gpt_neox.GPTNeoXForCausalLM`,
so both params are slices of the full model's dict and the arithmetic is the
full model's.
"""

from __future__ import annotations

from typing import Any

import chex
import flax.linen as nn
import jax.numpy as jnp
from flax import struct

from jaxirl import parallel
from jaxirl.models.gpt_neox import (
    block_class,
    fuse_qkv,
    last_token_index,
    position_ids_from_mask,
    rotary_cos_sin,
    split_qkv,
)
from jaxirl.models.gpt_neox_config import GPTNeoXConfig


def pool_hidden(hidden: chex.Array, attention_mask: chex.Array, pooling: str = "last") -> chex.Array:
    """[B, T, H] hidden states -> [B, H] at the last real token, or the masked mean / max."""
    chex.assert_rank(hidden, 3)
    mask = attention_mask.astype(jnp.float32)
    if pooling == "mean":
        total = jnp.maximum(mask.sum(-1, keepdims=True), 1.0)
        return jnp.einsum("bth,bt->bh", hidden.astype(jnp.float32), mask) / total
    if pooling == "max":
        masked = jnp.where(mask[..., None] > 0, hidden.astype(jnp.float32), -jnp.inf)
        return jnp.max(masked, axis=1)
    idx = last_token_index(attention_mask)
    return jnp.take_along_axis(hidden, idx[:, None, None], axis=1)[:, 0].astype(jnp.float32)


class RewardHead(nn.Module):
    """[..., H] features -> [...] float32 rewards; see the module docstring for ``kind``."""

    kind: str = "reference"

    @nn.compact
    def __call__(self, features):
        features = features.astype(jnp.float32)
        if self.kind == "reference":
            return -nn.Dense(2, use_bias=False, name="linear")(features)[..., -1]
        return nn.Dense(1, name="linear")(features)[..., 0]


@struct.dataclass
class TokenLayout:
    """Where each token of a [B, T] input sits: its position and what it may attend to.

    Attributes:
      positions: [B, T] int32 rotary positions.
      key_mask: [B, T, T] bool, query token t may read key token s.
      queries: [B] int32 column of each row whose output last-token pooling reads
        (None: every token's output is needed).
    """

    positions: chex.Array
    key_mask: chex.Array
    queries: chex.Array | None = None


def padded_layout(attention_mask: chex.Array, last_query_only: bool = False) -> TokenLayout:
    """One text per row, padded ([B, T] mask, any side); queries: each row's last real token."""
    mask = attention_mask.astype(jnp.int32)
    t = mask.shape[1]
    causal = jnp.arange(t)[:, None] >= jnp.arange(t)[None, :]
    return TokenLayout(position_ids_from_mask(mask), causal[None] & (mask[:, None, :] > 0),
                       last_token_index(mask) if last_query_only else None)


def _run_neox(cfg: GPTNeoXConfig, dtype, x, layout: TokenLayout | None, start: int, stop: int,
              embed: bool, final_norm: bool, remat: bool = False):
    """GPT-NeoX blocks ``start..stop-1`` (optionally embedding first, final norm last).

    Called inside a compact ``__call__``: the submodules take the names of
    :class:`~jaxirl.models.gpt_neox.GPTNeoXForCausalLM`, so the params are a
    slice of the full model's dict, and the arithmetic is identical to it.
    With ``layout.queries`` the last block computes only those tokens (their keys
    and values still come from every token), and the output is [B, Q, H]: all that
    last-token pooling reads, for about a sixth of the work. ``remat`` recomputes each
    block's activations in the backward pass.
    """
    if embed:
        x = nn.Embed(cfg.vocab_size, cfg.hidden_size, name="embed_in")(x).astype(jnp.float32)
    if stop > start:
        # Positions come from the mask (padded_layout), so they lie in [0, T).
        cos, sin = rotary_cos_sin(layout.positions, cfg.rotary_ndims, cfg.rotary_emb_base,
                                  layout.positions.shape[-1])
        index = jnp.zeros((), jnp.int32)
        for i in range(start, stop):
            x, _, _ = block_class(remat)(cfg, dtype, name=f"layers_{i}")(
                x, cos, sin, layout.key_mask, None, index,
                layout.queries if i == stop - 1 else None)
            x = parallel.constrain_rows(x)  # as in GPTNeoXForCausalLM
    if final_norm:
        x = nn.LayerNorm(epsilon=cfg.layer_norm_eps, dtype=jnp.float32, name="final_layer_norm")(x)
    return x


class FrozenTrunk(nn.Module):
    """ids [B, T], mask [B, T] -> features: pooled [B, H] (k=0), residual [B, T, H] or ids."""

    config: GPTNeoXConfig
    first_block: int
    trains_embedding: bool
    pooling: str = "last"
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, input_ids, attention_mask):
        if self.trains_embedding:
            return input_ids
        num_layers = self.config.num_hidden_layers
        head_only = self.first_block >= num_layers
        x = _run_neox(self.config, self.dtype, input_ids, padded_layout(attention_mask), 0,
                      self.first_block, embed=True, final_norm=head_only)
        return pool_hidden(x, attention_mask, self.pooling) if head_only else x


class RewardTop(nn.Module):
    """The trainable top: features [B, ...] and mask [B, T] -> rewards [B] float32.

    Its params may hold the last block's attention projection in
    :func:`~jaxirl.models.gpt_neox.split_qkv`'s layout (see :func:`training_layout`).
    """

    config: GPTNeoXConfig
    first_block: int
    trains_embedding: bool
    head: str = "reference"
    pooling: str = "last"
    dtype: Any = jnp.float32
    # Recompute each block's activations in the backward pass (jax.checkpoint).
    remat: bool = False

    @nn.compact
    def __call__(self, features, attention_mask):
        num_layers = self.config.num_hidden_layers
        if self.first_block < num_layers or self.trains_embedding:
            last_only = self.pooling == "last" and self.first_block < num_layers
            x = _run_neox(self.config, self.dtype, features,
                          padded_layout(attention_mask, last_only), self.first_block,
                          num_layers, embed=self.trains_embedding, final_norm=True,
                          remat=self.remat)
            features = x[:, 0] if last_only else pool_hidden(x, attention_mask, self.pooling)
        return RewardHead(self.head, name="head")(features)


def query_block(top: RewardTop) -> str | None:
    """The block that computes only the last token's query (last-token pooling), if any."""
    num_layers = top.config.num_hidden_layers
    if top.pooling == "last" and top.first_block < num_layers:
        return f"layers_{num_layers - 1}"
    return None


def _map_qkv(params: Any, top: RewardTop, fn) -> Any:
    block = query_block(top)
    if block is None or block not in params:
        return params
    attention = params[block]["attention"]
    qkv = fn(attention["query_key_value"], top.config.num_attention_heads)
    return {**params, block: {**params[block],
                              "attention": {**attention, "query_key_value": qkv}}}


def training_layout(params: Any, top: RewardTop) -> Any:
    """``params`` with the query block's QKV projection split (:func:`split_qkv`).

    The query block slices its fused kernel into query and key/value parts at every
    call, and differentiating that pads and concatenates the gradient back: about a
    tenth of an IRL step at the default's sizes. Training in this layout computes the
    same numbers; :func:`stored_layout` converts back (HF's fused layout, which
    checkpoints, saved models and scoring use). Leading (seed) dims pass through.
    """
    return _map_qkv(params, top, split_qkv)


def stored_layout(params: Any, top: RewardTop) -> Any:
    """The inverse of :func:`training_layout`."""
    return _map_qkv(params, top, fuse_qkv)
