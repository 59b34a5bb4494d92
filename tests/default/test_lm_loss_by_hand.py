"""The causal-LM loss and the block order of the default model's pretraining, by hand."""

import jax.numpy as jnp
import numpy as np
import pytest


def test_lm_loss_by_hand():
    from jaxirl.training.lm import lm_loss
    logits = jnp.array([[[0.0, 0.0], [0.0, 10.0], [0.0, 0.0]]])
    tokens = jnp.array([[0, 1, 1]])
    mask = jnp.array([[0, 1, 1]])
    # Only position 1 -> token 1 counts (position 0 is padding): nll = log(1 + e^-10).
    assert float(lm_loss(logits, tokens, mask)) == pytest.approx(np.log1p(np.exp(-10.0)), rel=1e-2)


def test_each_epoch_is_a_fresh_permutation():
    from jaxirl.training.lm import iterate_blocks
    blocks = np.arange(8)[:, None]
    it = iterate_blocks(blocks, 8, seed=0)
    for epoch in range(2):
        want = blocks[np.random.default_rng([0, epoch]).permutation(8)]
        np.testing.assert_array_equal(next(it)["tokens"], want)
