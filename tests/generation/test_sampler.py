"""The jitted KV-cache sampler against HF generate, and its sampling invariants."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
from hf_helpers import left_padded_batch, make_hf_gpt_neox

from jaxirl.errors import ConfigError
from jaxirl.generation import SamplingConfig, filter_logits, generate
from jaxirl.generation.sampler import _generate_jit
from jaxirl.models import load_pretrained


@pytest.fixture(scope="module")
def peaked_model(tmp_path_factory):
    # A large init scale makes logits peaked, so greedy ties cannot flip on rounding.
    folder = tmp_path_factory.mktemp("gen")
    torch_model = make_hf_gpt_neox(folder, initializer_range=0.3, use_parallel_residual=False,
                                   rotary_pct=0.5)
    model, params = load_pretrained(folder)
    return torch_model, model, params


def test_greedy_matches_hf_generate_token_for_token(peaked_model):
    torch_model, model, params = peaked_model
    ids, mask = left_padded_batch(97, lengths=[10, 6, 3, 1], total=10)
    with torch.no_grad():
        ref = torch_model.generate(input_ids=torch.tensor(ids), attention_mask=torch.tensor(mask),
                                   max_new_tokens=32, do_sample=False, pad_token_id=1,
                                   eos_token_id=None).numpy()[:, 10:]
    out = generate(model, params, ids, mask, jax.random.PRNGKey(0),
                   SamplingConfig(max_new_tokens=32, do_sample=False, eos_token_id=None, pad_token_id=1))
    np.testing.assert_array_equal(np.asarray(out.tokens), ref)
    assert np.asarray(out.mask).all()


def test_greedy_eos_stopping_matches_hf(peaked_model):
    torch_model, model, params = peaked_model
    ids, mask = left_padded_batch(97, lengths=[10, 6, 3, 1], total=10)
    free = np.asarray(generate(model, params, ids, mask, jax.random.PRNGKey(0),
                               SamplingConfig(max_new_tokens=32, do_sample=False,
                                              eos_token_id=None, pad_token_id=1)).tokens)
    eos = int(free[0, 5])  # a token that row 0 emits mid-way: it must stop there
    with torch.no_grad():
        ref = torch_model.generate(input_ids=torch.tensor(ids), attention_mask=torch.tensor(mask),
                                   max_new_tokens=32, do_sample=False, pad_token_id=1,
                                   eos_token_id=eos).numpy()[:, 10:]
    out = generate(model, params, ids, mask, jax.random.PRNGKey(0),
                   SamplingConfig(max_new_tokens=32, do_sample=False, eos_token_id=eos, pad_token_id=1))
    tokens = np.asarray(out.tokens)[:, : ref.shape[1]]
    np.testing.assert_array_equal(tokens, ref)
    first_eos = int(np.argmax(free[0] == eos))
    assert np.asarray(out.mask)[0].sum() == first_eos + 1
    assert (np.asarray(out.tokens)[0, first_eos + 1:] == 1).all()


def test_logprobs_match_a_full_forward(peaked_model):
    _, model, params = peaked_model
    ids, mask = left_padded_batch(97, lengths=[7, 4], total=7)
    out = generate(model, params, ids, mask, jax.random.PRNGKey(3),
                   SamplingConfig(max_new_tokens=8, top_k=30, eos_token_id=None, pad_token_id=1))
    full = model.apply({"params": params}, out.sequences, out.attention_mask).logits
    logp = jax.nn.log_softmax(full[:, 6:-1])
    expected = jnp.take_along_axis(logp, out.tokens[..., None], axis=-1)[..., 0]
    np.testing.assert_allclose(np.asarray(out.logprobs), np.asarray(expected), atol=1e-4)


def test_sampling_is_deterministic_per_key_and_compiles_once(peaked_model):
    _, model, params = peaked_model
    ids, mask = left_padded_batch(97, lengths=[5, 2], total=5)
    cfg = SamplingConfig(max_new_tokens=6, top_k=30, top_p=0.9, temperature=0.8,
                         eos_token_id=None, pad_token_id=1)
    before = _generate_jit._cache_size()
    a = generate(model, params, ids, mask, jax.random.PRNGKey(1), cfg)
    b = generate(model, params, ids, mask, jax.random.PRNGKey(1), cfg)
    ids2, mask2 = left_padded_batch(97, lengths=[3, 4], total=5, seed=7)
    generate(model, params, ids2, mask2, jax.random.PRNGKey(2), cfg)
    assert _generate_jit._cache_size() - before == 1  # same shapes: no retrace
    np.testing.assert_array_equal(np.asarray(a.tokens), np.asarray(b.tokens))
    draws = {tuple(np.asarray(generate(model, params, ids, mask, jax.random.PRNGKey(k), cfg).tokens[0]))
             for k in range(6)}
    assert len(draws) > 1


def test_filter_logits_top_k_and_top_p():
    logits = jnp.log(jnp.array([[0.5, 0.3, 0.15, 0.05]]))
    k2 = filter_logits(logits, SamplingConfig(top_k=2))
    assert np.isfinite(np.asarray(k2)).tolist() == [[True, True, False, False]] or \
        (np.asarray(k2)[0, 2:] < -1e30).all()
    kept = np.asarray(filter_logits(logits, SamplingConfig(top_p=0.75)))[0] > -1e30
    assert kept.tolist() == [True, True, False, False]  # 0.5 + 0.3 >= 0.75
    kept = np.asarray(filter_logits(logits, SamplingConfig(top_p=0.1)))[0] > -1e30
    assert kept.tolist() == [True, False, False, False]  # the top token always stays


def test_prompt_longer_than_context_is_a_clear_error(peaked_model):
    _, model, params = peaked_model  # max_position_embeddings=128
    ids, mask = left_padded_batch(97, lengths=[120], total=120)
    with pytest.raises(ConfigError, match="max_position_embeddings=128"):
        generate(model, params, ids, mask, jax.random.PRNGKey(0), SamplingConfig(max_new_tokens=16))


def test_top_k_shortcut_samples_the_filtered_distribution():
    from jaxirl.generation.sampler import sample_tokens

    logits = jnp.log(jnp.array([[0.05, 0.4, 0.1, 0.3, 0.15]]))
    cfg = SamplingConfig(top_k=3, temperature=0.7)
    keys = jax.random.split(jax.random.PRNGKey(0), 20000)
    draws = np.asarray(jax.vmap(lambda k: sample_tokens(logits, k[None], cfg))(keys))[:, 0]
    # Expected: softmax of temperature-scaled logits over the top 3 tokens (1, 3, 4).
    expected = np.asarray(jax.nn.softmax(filter_logits(logits, cfg)))[0]
    observed = np.bincount(draws, minlength=5) / len(draws)
    assert observed[[0, 2]].sum() == 0.0
    np.testing.assert_allclose(observed, expected, atol=0.015)
