"""MLP-output capture: padding is dropped and does not change a text's activations."""

import jax
import numpy as np
import pytest

from jaxirl.errors import ConfigError
from jaxirl.interp import capture_mlp_activations, pool_by_text
from jaxirl.models import GPTNeoXConfig, GPTNeoXForCausalLM, init_params


@pytest.fixture(scope="module")
def tiny():
    cfg = GPTNeoXConfig(vocab_size=40, hidden_size=32, num_hidden_layers=3, num_attention_heads=4,
                        intermediate_size=64, max_position_embeddings=32)
    params = jax.jit(init_params, static_argnums=0)(cfg, jax.random.PRNGKey(0))  # one compile
    return GPTNeoXForCausalLM(cfg), params


def test_padding_does_not_change_activations(tiny):
    model, params = tiny
    text = np.array([[5, 6, 7, 8]], np.int32)
    alone = capture_mlp_activations(model, params, text, np.ones_like(text), [0, 2], batch_size=1)
    # The same text left-padded to 8 tokens in a batch with a longer text.
    ids = np.array([[0, 0, 0, 0, 5, 6, 7, 8], [9, 10, 11, 12, 13, 14, 15, 16]], np.int32)
    mask = np.array([[0, 0, 0, 0, 1, 1, 1, 1], [1] * 8], np.int32)
    padded = capture_mlp_activations(model, params, ids, mask, [0, 2], batch_size=2)
    assert padded.num_tokens == 12 and padded.num_texts == 2
    np.testing.assert_array_equal(padded.text_index, [0] * 4 + [1] * 8)
    np.testing.assert_array_equal(padded.position, list(range(4)) + list(range(8)))
    np.testing.assert_array_equal(padded.token_ids[:4], [5, 6, 7, 8])
    for layer in (0, 2):
        assert padded.activations[layer].shape == (12, 32)
        np.testing.assert_allclose(padded.activations[layer][:4], alone.activations[layer],
                                   atol=1e-5, rtol=1e-5)
    # And it is the model's own MLP output at the real positions.
    apply = jax.jit(lambda p, i, m: model.apply({"params": p}, i, m, return_hidden=True))
    out = apply(params, ids, mask)
    np.testing.assert_allclose(padded.activations[2][4:], np.asarray(out.mlp_outputs[2][1]),
                               atol=1e-6)


def test_batch_size_and_fill_rows_do_not_matter(tiny):
    model, params = tiny
    rng = np.random.default_rng(0)
    ids = rng.integers(1, 40, size=(5, 6)).astype(np.int32)
    mask = np.ones_like(ids)
    mask[1, :3] = 0
    mask[4, :5] = 0
    a = capture_mlp_activations(model, params, ids, mask, [1], batch_size=5)
    b = capture_mlp_activations(model, params, ids, mask, [1], batch_size=2)  # 3 batches, 1 fill
    assert a.num_tokens == int(mask.sum()) == b.num_tokens
    np.testing.assert_allclose(a.activations[1], b.activations[1], atol=1e-5)
    with pytest.raises(ConfigError, match="out of range"):
        capture_mlp_activations(model, params, ids, mask, [3])
    sub = a.select(np.array([False, True, False, False, True]))
    assert sub.num_texts == 2 and set(sub.text_index.tolist()) == {0, 1}
    np.testing.assert_array_equal(sub.activations[1], a.activations[1][np.isin(a.text_index,
                                                                              [1, 4])])


def test_pool_by_text_hand_values():
    vals = np.array([[1.0, 0.0], [3.0, 2.0], [5.0, -1.0]], np.float32)
    idx = np.array([0, 0, 2])
    np.testing.assert_allclose(pool_by_text(vals, idx, 3), [[2, 1], [0, 0], [5, -1]])
    np.testing.assert_allclose(pool_by_text(vals, idx, 3, "max"), [[3, 2], [0, 0], [5, -1]])
    np.testing.assert_allclose(pool_by_text(vals, idx, 3, "sum"), [[4, 2], [0, 0], [5, -1]])
    # Token rows not grouped by text take the general scatter; the same maxima.
    np.testing.assert_allclose(pool_by_text(vals[::-1], idx[::-1], 3, "max"),
                               [[3, 2], [0, 0], [5, -1]])
