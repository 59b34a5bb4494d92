"""Incremental decoding with the KV cache equals a full forward pass."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hf_helpers import left_padded_batch

from jaxirl.models import (
    GPTNeoXConfig,
    GPTNeoXForCausalLM,
    KVCache,
    init_params,
    position_ids_from_mask,
)


def test_positions_count_real_tokens_from_the_first_one_of_a_left_padded_row():
    mask = jnp.array([[0, 0, 1, 1, 1], [1, 1, 1, 1, 1]])
    np.testing.assert_array_equal(position_ids_from_mask(mask), [[0, 0, 0, 1, 2], [0, 1, 2, 3, 4]])


def test_incremental_decoding_matches_full_forward():
    config = GPTNeoXConfig(vocab_size=61, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                           intermediate_size=48, max_position_embeddings=64, rotary_pct=0.5,
                           use_parallel_residual=False)
    model = GPTNeoXForCausalLM(config)
    params = init_params(config, jax.random.PRNGKey(0))
    ids, mask = left_padded_batch(61, lengths=[16, 9, 4], total=16)
    ids, mask = jnp.asarray(ids, jnp.int32), jnp.asarray(mask, jnp.int32)
    # Jitted: op-by-op dispatch of the eager forward costs far more than one compile.
    apply = jax.jit(lambda p, *a, **k: model.apply({"params": p}, *a, **k))
    full = apply(params, ids, mask).logits

    # Prefill the first 10 columns, then feed 1, 2 and 3 tokens at a time.
    pos = position_ids_from_mask(mask)
    cache = KVCache.empty(config, 3, 16)
    pieces, start = [], 0
    for width in (10, 1, 2, 3):
        sl = slice(start, start + width)
        out = apply(params, ids[:, sl], mask[:, sl], pos[:, sl], cache=cache)
        cache = out.cache
        pieces.append(out.logits)
        start += width
    incremental = jnp.concatenate(pieces, axis=1)
    err = np.abs(np.asarray(incremental - full)) * np.asarray(mask)[..., None]
    assert err.max() <= 1e-4
    assert int(cache.index) == 16


def test_cache_without_position_ids_is_a_clear_error():
    """With a cache, positions from the new tokens' mask alone would put a decode step at
    position 0 (silently wrong logits): the call must name position_ids instead."""
    config = GPTNeoXConfig(vocab_size=50, hidden_size=32, num_hidden_layers=2,
                           num_attention_heads=4, intermediate_size=64, rotary_pct=1.0)
    model = GPTNeoXForCausalLM(config)
    params = init_params(config, jax.random.PRNGKey(0))
    ids = jnp.array([[3, 7, 9, 11, 4]])
    cache = KVCache.empty(config, 1, 5)
    with pytest.raises(ValueError, match="position_ids"):
        model.apply({"params": params}, ids[:, :4], cache=cache)
    out = model.apply({"params": params}, ids[:, :4], position_ids=jnp.arange(4)[None], cache=cache)
    with pytest.raises(ValueError, match="position_ids"):
        model.apply({"params": params}, ids[:, 4:], cache=out.cache)



@pytest.mark.parametrize("parallel, rotary_pct, bias, queries",
                         [(True, 0.5, True, 1), (False, 0.5, True, 1), (True, 0.0, True, 1),
                          (True, 1.0, False, 1), (True, 0.25, True, 2)])
def test_block_with_query_index_equals_that_row_of_the_full_block(parallel, rotary_pct, bias,
                                                                  queries):
    """A block computed for one query per row (or two) equals those rows of the full block,
    and so do its gradients (the learned reward's top block relies on both). Its attention
    never projects every token's key and value (``_attend_single_query``): no rotary dims,
    all dims rotary and no key/value bias are the edge cases of that reassociation."""
    from jaxirl.irl.reward_net import last_token_index
    from jaxirl.models.gpt_neox import Block, rotary_cos_sin

    config = GPTNeoXConfig(vocab_size=61, hidden_size=32, num_hidden_layers=1,
                           num_attention_heads=4, intermediate_size=48,
                           max_position_embeddings=64, rotary_pct=rotary_pct,
                           use_parallel_residual=parallel, attention_bias=bias)
    _, mask = left_padded_batch(61, lengths=[12, 7, 3], total=12)
    mask = jnp.asarray(mask, jnp.int32)
    x = jax.random.normal(jax.random.PRNGKey(1), (3, 12, 32))
    cos, sin = rotary_cos_sin(position_ids_from_mask(mask), config.rotary_ndims, 10000.0)
    key_mask = (jnp.arange(12)[:, None] >= jnp.arange(12)[None, :])[None] & (mask[:, None] > 0)
    block = Block(config)
    params = block.init(jax.random.PRNGKey(2), x, cos, sin, key_mask, None, 0)["params"]
    # Not the last column for every row: row 1 reads position 4.
    index = last_token_index(mask).at[1].set(4)
    if queries == 2:
        index = jnp.stack([index, jnp.array([11, 9, 10])], axis=1)  # [B, Q]
    columns = index[:, None] if queries == 1 else index

    def full(p):
        out = block.apply({"params": p}, x, cos, sin, key_mask, None, 0)[0]
        return jnp.take_along_axis(out, columns[..., None], axis=1)

    def subset(p):
        return block.apply({"params": p}, x, cos, sin, key_mask, None, 0, index)[0]

    full, subset = jax.jit(full), jax.jit(subset)
    np.testing.assert_allclose(subset(params), full(params), atol=1e-5)
    g_full = jax.jit(jax.grad(lambda p: full(p).sum()))(params)
    g_subset = jax.jit(jax.grad(lambda p: subset(p).sum()))(params)
    for a, b in zip(jax.tree_util.tree_leaves(g_subset), jax.tree_util.tree_leaves(g_full),
                    strict=True):
        np.testing.assert_allclose(a, b, atol=1e-4)
