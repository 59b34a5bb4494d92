"""The GPT-NeoX port's fast paths equal the plain computation: ``output_span``, the erf GELU,
causal query chunks."""

import jax
import jax.numpy as jnp
import numpy as np
from hf_helpers import left_padded_batch

import jaxirl.models.gpt_neox as gpt_neox
from jaxirl.models import GPTNeoXConfig, GPTNeoXForCausalLM, init_params
from jaxirl.models.gpt_neox import gelu_exact


def test_output_span_equals_the_slice_of_the_full_outputs():
    config = GPTNeoXConfig(vocab_size=61, hidden_size=32, num_hidden_layers=2,
                           num_attention_heads=4, intermediate_size=48, max_position_embeddings=64)
    model = GPTNeoXForCausalLM(config, with_value_head=True)
    params = init_params(config, jax.random.PRNGKey(0), with_value_head=True)
    ids, mask = left_padded_batch(61, lengths=[14, 9, 5], total=14)
    ids, mask = jnp.asarray(ids, jnp.int32), jnp.asarray(mask, jnp.int32)
    full = model.apply({"params": params}, ids, mask)
    part = model.apply({"params": params}, ids, mask, output_span=(5, 13))
    assert part.logits.shape == (3, 8, 61) and part.values.shape == (3, 8)
    np.testing.assert_allclose(part.logits, full.logits[:, 5:13], atol=1e-6)
    np.testing.assert_allclose(part.values, full.values[:, 5:13], atol=1e-6)
    np.testing.assert_allclose(part.final_hidden, full.final_hidden[:, 5:13], atol=1e-6)


def test_gelu_exact_matches_jax_erfc_gelu_and_torch_with_gradients():
    import torch

    x = jnp.linspace(-12.0, 12.0, 4001, dtype=jnp.float32)
    np.testing.assert_allclose(gelu_exact(x), jax.nn.gelu(x, approximate=False), atol=1e-6)
    torch_x = torch.tensor(np.asarray(x), requires_grad=True)
    torch_y = torch.nn.functional.gelu(torch_x)
    np.testing.assert_allclose(gelu_exact(x), torch_y.detach().numpy(), atol=1e-6)
    torch_y.sum().backward()
    grad = jax.grad(lambda v: gelu_exact(v).sum())(x)
    np.testing.assert_allclose(grad, torch_x.grad.numpy(), atol=1e-6)
    # The formula is the exact GELU: x * Phi(x) at a few hand-checked points.
    np.testing.assert_allclose(gelu_exact(jnp.array([0.0, 1.0, -1.0])),
                               [0.0, 0.8413447, -0.1586553], atol=1e-6)


def test_causal_query_chunks_equal_one_block_attention(monkeypatch):
    """A 300-token left-padded batch (chunks of 128, 128, 44) against one-block attention."""
    config = GPTNeoXConfig(vocab_size=61, hidden_size=32, num_hidden_layers=2,
                           num_attention_heads=4, intermediate_size=48,
                           max_position_embeddings=512)
    model = GPTNeoXForCausalLM(config)
    params = init_params(config, jax.random.PRNGKey(0))
    ids, mask = left_padded_batch(61, lengths=[300, 170, 9], total=300)
    ids, mask = jnp.asarray(ids, jnp.int32), jnp.asarray(mask, jnp.int32)
    assert 300 >= 2 * gpt_neox.QUERY_CHUNK
    chunked = model.apply({"params": params}, ids, mask).logits
    monkeypatch.setattr(gpt_neox, "QUERY_CHUNK", 10_000)
    whole = model.apply({"params": params}, ids, mask).logits
    real = np.asarray(mask, bool)
    np.testing.assert_allclose(np.asarray(chunked)[real], np.asarray(whole)[real], atol=1e-5)
