"""The GPT-NeoX port's fast paths equal the plain computation: ``output_span``, the erf GELU,
causal query chunks, a forward pass split into block ranges."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hf_helpers import left_padded_batch

import jaxirl.models.gpt_neox as gpt_neox
from jaxirl.models import GPTNeoXConfig, GPTNeoXForCausalLM, init_params
from jaxirl.models.gpt_neox import gelu_exact


def _small_model(layers: int):
    """A random 32-wide GPT-NeoX with a value head, and a left-padded batch of 3 rows."""
    config = GPTNeoXConfig(vocab_size=61, hidden_size=32, num_hidden_layers=layers,
                           num_attention_heads=4, intermediate_size=48, max_position_embeddings=64)
    model = GPTNeoXForCausalLM(config, with_value_head=True)
    params = init_params(config, jax.random.PRNGKey(0), with_value_head=True)
    ids, mask = left_padded_batch(61, lengths=[14, 9, 5], total=14)
    return model, params, jnp.asarray(ids, jnp.int32), jnp.asarray(mask, jnp.int32)


def test_output_span_equals_the_slice_of_the_full_outputs():
    model, params, ids, mask = _small_model(layers=2)
    full = model.apply({"params": params}, ids, mask)
    part = model.apply({"params": params}, ids, mask, output_span=(5, 13))
    assert part.logits.shape == (3, 8, 61) and part.values.shape == (3, 8)
    np.testing.assert_allclose(part.logits, full.logits[:, 5:13], atol=1e-6)
    np.testing.assert_allclose(part.values, full.values[:, 5:13], atol=1e-6)
    np.testing.assert_allclose(part.final_hidden, full.final_hidden[:, 5:13], atol=1e-6)


def test_forward_split_into_block_ranges_equals_one_pass():
    model, params, ids, mask = _small_model(layers=3)
    apply = jax.jit(model.apply, static_argnames=("blocks", "output_span", "return_hidden"))
    full = apply({"params": params}, ids, mask, output_span=(5, 13), return_hidden=True)
    for depth in (1, 2, 3):
        bottom = apply({"params": params}, ids, mask, blocks=(0, depth))
        if depth < 3:
            assert bottom.logits is None
        # The residual after block depth - 1, before the final norm: the same array as
        # one pass's hidden state there.
        np.testing.assert_array_equal(bottom.residual, full.hidden_states[depth])
        top = apply({"params": params}, ids, mask, blocks=(depth, 3), residual=bottom.residual,
                    output_span=(5, 13))
        np.testing.assert_array_equal(top.logits, full.logits)
        np.testing.assert_array_equal(top.values, full.values)
    # The middle block alone, between the other two.
    one = apply({"params": params}, ids, mask, blocks=(0, 1)).residual
    two = apply({"params": params}, ids, mask, blocks=(1, 2), residual=one).residual
    np.testing.assert_array_equal(two, full.hidden_states[2])


@pytest.mark.parametrize("blocks, residual, message", [
    ((0, 4), False, "not a range"), ((2, 1), True, "not a range"),
    ((1, 3), False, "residual must be given"), ((0, 2), True, "residual must be given")])
def test_forward_block_range_errors_name_the_argument(blocks, residual, message):
    model, params, ids, mask = _small_model(layers=3)
    with pytest.raises(ValueError, match=message):
        model.apply({"params": params}, ids, mask, blocks=blocks,
                    residual=jnp.zeros((3, 14, 32)) if residual else None)


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


def test_linear_nk_row_sum_equals_the_dot_and_pays_only_where_measured():
    from jaxirl.models import mixed_precision as mp

    cpu = jax.default_backend() == "cpu"
    big = (1 << 20) // 256
    weight = jax.random.normal(jax.random.PRNGKey(0), (big, 256), jnp.float32)
    for rows in (2, 8, 32, 33, 1):
        x = jax.random.normal(jax.random.PRNGKey(rows), (rows, 256), jnp.float32)
        np.testing.assert_allclose(mp.linear_nk(x, weight), np.asarray(x) @ np.asarray(weight).T,
                                   rtol=1e-5, atol=1e-4)
        assert mp.row_reduce_pays(rows, weight.shape) == (cpu and 2 <= rows <= 32)
    x3 = jax.random.normal(jax.random.PRNGKey(9), (2, 3, 256), jnp.float32)  # leading axes kept
    assert mp.linear_nk(x3, weight).shape == (2, 3, big)
    assert not mp.row_reduce_pays(8, (big - 1, 256))  # a weight that stays in cache
    assert not mp.row_reduce_pays(8, weight.shape, jnp.bfloat16)


def test_a_16_bit_model_decodes_into_a_float32_cache_on_cpu_only():
    from jaxirl.models import mixed_precision as mp

    cpu = jax.default_backend() == "cpu"
    assert mp.kv_cache_dtype(jnp.float32) == jnp.float32
    for half in (jnp.bfloat16, jnp.float16):
        assert mp.kv_cache_dtype(half) == (jnp.float32 if cpu else half)


def test_decode_layout_transposes_the_large_block_kernels_and_keeps_the_logits():
    from jaxirl.models import mixed_precision as mp

    # fc: 64 x 16384 = 2^20 elements (transposed on CPU); attention: 64 x 192 (kept).
    config = GPTNeoXConfig(vocab_size=61, hidden_size=64, num_hidden_layers=2,
                           num_attention_heads=4, intermediate_size=16384,
                           max_position_embeddings=64)
    model = GPTNeoXForCausalLM(config)
    params = init_params(config, jax.random.PRNGKey(0))
    layout = mp.decode_layout(params, rows=4)
    mlp = layout["layers_1"]["mlp"]
    if jax.default_backend() == "cpu":
        assert mlp["dense_4h_to_h"]["kernel_nk"].shape == (64, 16384)
        np.testing.assert_array_equal(mlp["dense_h_to_4h"]["kernel_nk"],
                                      params["layers_1"]["mlp"]["dense_h_to_4h"]["kernel"].T)
    assert "kernel" in layout["layers_1"]["attention"]["query_key_value"]
    assert layout["embed_out"] is params["embed_out"]
    assert mp.decode_layout(params, rows=1) == params  # one row: XLA's matrix-vector kernel
    ids, mask = left_padded_batch(61, lengths=[6, 3, 1, 6], total=6)
    ids, mask = jnp.asarray(ids, jnp.int32), jnp.asarray(mask, jnp.int32)
    for span in (None, (5, 6)):  # 24 rows (the row sum) and 4 rows
        a = model.apply({"params": params}, ids, mask, output_span=span).logits
        b = model.apply({"params": layout}, ids, mask, output_span=span).logits
        np.testing.assert_allclose(a, b, atol=1e-5)


def test_rotary_whole_head_vjp_equals_autodiff_of_the_sliced_form_to_the_bit():
    """apply_rotary_whole_head_grad differentiates through x * C + (x @ R) * S: the same
    outputs and gradients as autodiff of apply_rotary, for partial (Pythia's 25%), full and
    no rotary."""
    from jaxirl.models.gpt_neox import apply_rotary, apply_rotary_whole_head_grad, rotary_cos_sin

    b, t, heads, d = 2, 7, 3, 16
    positions = jnp.tile(jnp.arange(t, dtype=jnp.int32), (b, 1))
    key_x, key_g = jax.random.split(jax.random.PRNGKey(3))
    x = jax.random.normal(key_x, (b, t, heads, d), jnp.float32)
    g = jax.random.normal(key_g, (b, t, heads, d), jnp.float32)
    for rot in (4, 16, 0):
        cos, sin = rotary_cos_sin(positions, rot, 10000.0)
        y_plain, vjp_plain = jax.vjp(lambda v, c=cos, s=sin: apply_rotary(v, c, s), x)
        y_fast, vjp_fast = jax.vjp(
            lambda v, c=cos, s=sin: apply_rotary_whole_head_grad(v, c, s), x)
        np.testing.assert_array_equal(y_fast, y_plain)
        np.testing.assert_array_equal(apply_rotary_whole_head_grad(x, cos, sin), y_plain)
        np.testing.assert_array_equal(vjp_fast(g)[0], vjp_plain(g)[0])
        if rot:  # the gradient really rotates: it is not g itself on the rotated dims
            assert not np.allclose(vjp_fast(g)[0][..., :rot], g[..., :rot])
            np.testing.assert_array_equal(vjp_fast(g)[0][..., rot:], g[..., rot:])
    # HF's rotate_half by hand on one head of 4 rotated dims: [x2, x3, x0, x1] -> [-x2, -x3, x0, x1].
    r = gpt_neox.rotate_half_matrix(6, 4)
    np.testing.assert_array_equal(np.arange(1.0, 7.0) @ r, [-3.0, -4.0, 1.0, 2.0, 0.0, 0.0])


def test_gathered_rotary_tables_equal_the_direct_computation_to_the_bit():
    """rotary_cos_sin with max_position gathers rows of a table computed by its own
    compiled program; its values equal cos and sin computed inside the caller's jitted
    program, fused there."""
    from jaxirl.models.gpt_neox import rotary_cos_sin

    positions = jnp.asarray(np.random.default_rng(0).integers(0, 300, (3, 300)), jnp.int32)
    for rot, base in ((8, 10000.0), (16, 500.0), (0, 10000.0)):
        def tables(p, limit, rot=rot, base=base):
            # A consumer that XLA fuses the direct path's cos and sin into.
            return [2.0 * a + 1.0 for a in rotary_cos_sin(p, rot, base, limit)]

        direct = jax.jit(lambda p, f=tables: f(p, None))(positions)
        gathered = jax.jit(lambda p, f=tables: f(p, 300))(positions)
        for a, b in zip(direct, gathered, strict=True):
            assert a.shape == (3, 300, rot)
            np.testing.assert_array_equal(a, b)
    # The model's forward derives positions from the mask and so takes the gathered path.
    config = GPTNeoXConfig(vocab_size=64, hidden_size=32, num_hidden_layers=1,
                           num_attention_heads=2, intermediate_size=64,
                           max_position_embeddings=64, rotary_pct=0.5)
    model = GPTNeoXForCausalLM(config)
    params = init_params(config, jax.random.PRNGKey(1))
    ids, mask = left_padded_batch(64, lengths=[9, 4], total=9)
    ids, mask = jnp.asarray(ids, jnp.int32), jnp.asarray(mask, jnp.int32)
    positions = gpt_neox.position_ids_from_mask(mask)
    a = model.apply({"params": params}, ids, mask).logits  # gathered tables
    b = model.apply({"params": params}, ids, mask, positions).logits  # given positions: direct
    np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("layout", ["kn", "nk"])
def test_bf16_weight_gradients_through_a_transposed_copy_equal_the_float32_products(layout):
    """The bf16 custom VJP's weight gradient (an in-memory transpose, then a dot over an
    inner axis) is the product of the bf16-rounded operands, under vmap too."""
    from jaxirl.models import mixed_precision

    rng = np.random.default_rng(3)
    x = jnp.asarray(rng.standard_normal((2, 37, 24)), jnp.float32)
    w_shape = (24, 40) if layout == "kn" else (40, 24)
    w = jnp.asarray(rng.standard_normal(w_shape), jnp.float32)
    g = jnp.asarray(rng.standard_normal((2, 37, 40)), jnp.float32)
    fn = mixed_precision.linear if layout == "kn" else mixed_precision.linear_nk

    def loss(w, x, g):
        return jnp.sum(fn(x, w, jnp.bfloat16) * g)

    grad_w = jax.jit(jax.vmap(jax.grad(loss), in_axes=(None, 0, 0)))(w, x, g)
    rounded = [np.asarray(a.astype(jnp.bfloat16).astype(jnp.float32), np.float64) for a in (x, g)]
    want = np.einsum("bmk,bmn->bkn", *rounded)
    if layout == "nk":
        want = want.transpose(0, 2, 1)
    # The VJP returns the kernel's cotangent in the kernel's compute dtype (bf16): one
    # more rounding, at most half a bf16 ulp (2^-9 relative).
    np.testing.assert_allclose(np.asarray(grad_w), want, rtol=2.0 ** -8, atol=1e-3)
    assert mixed_precision.transposed_copy(x[0]).shape == (24, 37)
    np.testing.assert_array_equal(np.asarray(mixed_precision.transposed_copy(x[0])),
                                  np.asarray(x[0]).T)
