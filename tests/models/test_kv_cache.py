"""Incremental decoding with the KV cache equals a full forward pass."""

import jax
import jax.numpy as jnp
import numpy as np
from hf_helpers import left_padded_batch

from jaxirl.models import (
    GPTNeoXConfig,
    GPTNeoXForCausalLM,
    KVCache,
    init_params,
    position_ids_from_mask,
)


def test_incremental_decoding_matches_full_forward():
    config = GPTNeoXConfig(vocab_size=61, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                           intermediate_size=48, max_position_embeddings=64, rotary_pct=0.5,
                           use_parallel_residual=False)
    model = GPTNeoXForCausalLM(config)
    params = init_params(config, jax.random.PRNGKey(0))
    ids, mask = left_padded_batch(61, lengths=[16, 9, 4], total=16)
    ids, mask = jnp.asarray(ids, jnp.int32), jnp.asarray(mask, jnp.int32)
    full = model.apply({"params": params}, ids, mask).logits

    # Prefill the first 10 columns, then feed 1, 2 and 3 tokens at a time.
    pos = position_ids_from_mask(mask)
    cache = KVCache.empty(config, 3, 16)
    pieces, start = [], 0
    for width in (10, 1, 2, 3):
        sl = slice(start, start + width)
        out = model.apply({"params": params}, ids[:, sl], mask[:, sl], pos[:, sl], cache=cache)
        cache = out.cache
        pieces.append(out.logits)
        start += width
    incremental = jnp.concatenate(pieces, axis=1)
    err = np.abs(np.asarray(incremental - full)) * np.asarray(mask)[..., None]
    assert err.max() <= 1e-4
    assert int(cache.index) == 16
