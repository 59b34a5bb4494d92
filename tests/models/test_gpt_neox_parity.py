"""Logit parity of the Flax GPT-NeoX port with transformers' PyTorch model."""

import jax.numpy as jnp
import numpy as np
import pytest
from hf_helpers import hf_logits, left_padded_batch, make_hf_gpt_neox

from jaxirl.models import load_pretrained


def _max_masked_diff(a, b, mask):
    return float(np.max(np.abs(a - b) * mask[..., None]))


@pytest.mark.parametrize(
    "overrides",
    [
        dict(use_parallel_residual=True, rotary_pct=0.25),
        dict(use_parallel_residual=False, rotary_pct=0.25),
        dict(use_parallel_residual=True, rotary_pct=1.0),
        dict(use_parallel_residual=False, rotary_pct=1.0, rotary_emb_base=500.0),
        dict(attention_bias=False, layer_norm_eps=1e-3, num_hidden_layers=3),
        dict(tie_word_embeddings=True),
    ],
    ids=["parallel-0.25", "sequential-0.25", "parallel-1.0", "sequential-1.0-base500",
         "no-attn-bias", "tied"],
)
def test_tiny_configs_match_transformers(tmp_path, overrides):
    torch_model = make_hf_gpt_neox(tmp_path / "m", **overrides)
    model, params = load_pretrained(tmp_path / "m")
    ids, mask = left_padded_batch(97, lengths=[12, 7, 1, 12], total=12)
    ref = hf_logits(torch_model, ids, mask)
    out = model.apply({"params": params}, jnp.asarray(ids), jnp.asarray(mask))
    assert _max_masked_diff(np.asarray(out.logits), ref, mask) <= 1e-4


def test_pythia_70m_shapes_match_transformers(tmp_path):
    # Pythia-70M: 6 layers, hidden 512, 8 heads, vocab 50304, rotary_pct 0.25.
    torch_model = make_hf_gpt_neox(tmp_path / "m70", vocab_size=50304, hidden_size=512,
                                   num_hidden_layers=6, num_attention_heads=8,
                                   intermediate_size=2048, max_position_embeddings=2048)
    model, params = load_pretrained(tmp_path / "m70")
    ids, mask = left_padded_batch(50304, lengths=[32, 20, 5], total=32)
    ref = hf_logits(torch_model, ids, mask)
    out = model.apply({"params": params}, jnp.asarray(ids), jnp.asarray(mask))
    assert _max_masked_diff(np.asarray(out.logits), ref, mask) <= 1e-3


def test_left_padding_does_not_change_real_token_logits(tiny_hf_model):
    folder, _ = tiny_hf_model
    model, params = load_pretrained(folder)
    ids, mask = left_padded_batch(97, lengths=[6], total=6)
    padded_ids = np.concatenate([np.ones((1, 5), np.int64), ids], axis=1)
    padded_mask = np.concatenate([np.zeros((1, 5), np.int64), mask], axis=1)
    a = model.apply({"params": params}, jnp.asarray(ids), jnp.asarray(mask)).logits
    b = model.apply({"params": params}, jnp.asarray(padded_ids), jnp.asarray(padded_mask)).logits
    np.testing.assert_allclose(np.asarray(b)[:, 5:], np.asarray(a), atol=1e-5)


def test_hidden_states_and_mlp_outputs(tiny_hf_model):
    folder, torch_model = tiny_hf_model
    import torch

    model, params = load_pretrained(folder)
    ids, mask = left_padded_batch(97, lengths=[8, 8], total=8)
    out = model.apply({"params": params}, jnp.asarray(ids), jnp.asarray(mask), return_hidden=True)
    assert len(out.hidden_states) == 3 and len(out.mlp_outputs) == 2
    captured = {}
    hooks = [layer.mlp.register_forward_hook(
        lambda mod, inp, o, i=i: captured.__setitem__(i, o.detach().numpy()))
        for i, layer in enumerate(torch_model.gpt_neox.layers)]
    hf_logits(torch_model, ids, mask)
    for h in hooks:
        h.remove()
    for i in range(2):
        np.testing.assert_allclose(np.asarray(out.mlp_outputs[i]), captured[i], atol=1e-5)
    # The final norm of the last residual state is what the LM head reads.
    with torch.no_grad():
        final = torch_model.gpt_neox.final_layer_norm(torch.tensor(np.asarray(out.hidden_states[-1])))
    np.testing.assert_allclose(np.asarray(out.final_hidden), final.numpy(), atol=1e-5)


def test_value_head_and_bfloat16(tiny_hf_model):
    folder, _ = tiny_hf_model
    model, params = load_pretrained(folder, with_value_head=True)
    ids, mask = left_padded_batch(97, lengths=[8, 3], total=8)
    out = model.apply({"params": params}, jnp.asarray(ids), jnp.asarray(mask))
    assert out.values.shape == (2, 8) and out.values.dtype == jnp.float32
    bf16_model, _ = load_pretrained(folder, dtype=jnp.bfloat16)
    low = bf16_model.apply({"params": {k: v for k, v in params.items() if k != "value_head"}},
                           jnp.asarray(ids), jnp.asarray(mask))
    assert low.logits.dtype == jnp.float32
    # bf16 keeps ~3 significant digits; the argmax token should rarely move.
    err = np.abs(np.asarray(low.logits) - np.asarray(out.logits)) * mask[..., None]
    assert err.max() < 0.05


def test_long_left_padded_sequences_match_transformers_in_fp32_and_bf16(tmp_path):
    """300 tokens take the row-by-row, causal-chunked attention path (T >= 256)."""
    torch_model = make_hf_gpt_neox(tmp_path / "long", max_position_embeddings=512)
    model, params = load_pretrained(tmp_path / "long")
    ids, mask = left_padded_batch(97, lengths=[300, 170, 9], total=300)
    ref = hf_logits(torch_model, ids, mask)
    out = model.apply({"params": params}, jnp.asarray(ids), jnp.asarray(mask))
    assert _max_masked_diff(np.asarray(out.logits), ref, mask) <= 1e-4
    bf16_model, _ = load_pretrained(tmp_path / "long", dtype=jnp.bfloat16)
    low = bf16_model.apply({"params": params}, jnp.asarray(ids), jnp.asarray(mask))
    assert low.logits.dtype == jnp.float32
    assert _max_masked_diff(np.asarray(low.logits), ref, mask) < 0.05
