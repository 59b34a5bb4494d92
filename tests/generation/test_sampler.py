"""The jitted KV-cache sampler against HF generate, and its sampling invariants."""

import dataclasses

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


def assert_greedy_matches_hf(torch_model, model, params, ids, mask, new_tokens: int):
    """jaxirl's greedy tokens (no EOS) equal HF ``generate``'s, token for token."""
    with torch.no_grad():
        ref = torch_model.generate(input_ids=torch.tensor(ids), attention_mask=torch.tensor(mask),
                                   max_new_tokens=new_tokens, do_sample=False, pad_token_id=1,
                                   eos_token_id=None).numpy()[:, ids.shape[1]:]
    out = generate(model, params, ids, mask, jax.random.PRNGKey(0),
                   SamplingConfig(max_new_tokens=new_tokens, do_sample=False, eos_token_id=None,
                                  pad_token_id=1))
    np.testing.assert_array_equal(np.asarray(out.tokens), ref)
    assert np.asarray(out.mask).all()


def test_greedy_matches_hf_generate_token_for_token(peaked_model):
    torch_model, model, params = peaked_model
    ids, mask = left_padded_batch(97, lengths=[10, 6, 3, 1], total=10)
    assert_greedy_matches_hf(torch_model, model, params, ids, mask, 32)


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


def test_logprobs_ignore_the_sampling_temperature(peaked_model):
    # PPO's behaviour log-prob is the raw model's (temperature 1), whatever the sampler drew with.
    _, model, params = peaked_model
    ids, mask = left_padded_batch(97, lengths=[7, 4], total=7)
    out = generate(model, params, ids, mask, jax.random.PRNGKey(3),
                   SamplingConfig(max_new_tokens=8, temperature=2.0, eos_token_id=None,
                                  pad_token_id=1))
    full = model.apply({"params": params}, out.sequences, out.attention_mask).logits[:, 6:-1]

    def token_logp(logits):
        logp = jax.nn.log_softmax(logits)
        return np.asarray(jnp.take_along_axis(logp, out.tokens[..., None], axis=-1)[..., 0])

    np.testing.assert_allclose(np.asarray(out.logprobs), token_logp(full), atol=1e-4)
    assert np.abs(token_logp(full / 2.0) - token_logp(full)).max() > 1e-2  # non-vacuous


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


def test_temperature_scales_logits_before_top_p():
    p = np.array([0.5, 0.3, 0.15, 0.05])
    # At temperature 2 the probabilities are ∝ sqrt(p) = [.707, .548, .387, .224] / 1.866
    # = [.379, .294, .208, .120]: the mass before token 2 is .673 < 0.7, so it is kept
    # (at temperature 1 it would be 0.8 and token 2 cut).
    out = np.asarray(filter_logits(jnp.log(jnp.asarray([p])), SamplingConfig(temperature=2.0,
                                                                            top_p=0.7)))[0]
    assert (out > -1e30).tolist() == [True, True, True, False]
    np.testing.assert_allclose(out[:3], np.log(p[:3]) / 2.0, rtol=1e-6)


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


@pytest.mark.parametrize("vocab,k", [(50304, 30), (10000, 7), (7713, 30)])
def test_chunked_top_k_equals_lax_top_k_ties_included(vocab, k):
    from jaxirl.generation.sampler import TOP_K_CHUNK, top_k, two_stage_top_k_pays

    assert two_stage_top_k_pays(vocab, k)  # these shapes take the chunked path
    rng = np.random.default_rng(vocab)
    # Rounded to quarters: many exact ties, across chunks and inside them.
    logits = np.round(rng.standard_normal((6, vocab)) * 4) / 4
    logits[1] = 0.0                       # every logit tied: the k lowest indices win
    logits[2, : vocab // 2] = -np.inf     # the top k all in the upper half
    logits[3, -3:] = 99.0                 # winners in the last, partly padded, chunk
    logits[4, ::TOP_K_CHUNK] = 50.0       # one winner per chunk, the first chunks win
    values, indices = jax.jit(top_k, static_argnums=1)(jnp.asarray(logits, jnp.float32), k)
    want_values, want_indices = jax.lax.top_k(jnp.asarray(logits, jnp.float32), k)
    np.testing.assert_array_equal(np.asarray(values), np.asarray(want_values))
    np.testing.assert_array_equal(np.asarray(indices), np.asarray(want_indices))
    np.testing.assert_array_equal(np.asarray(indices)[1], np.arange(k))


def test_chunked_top_k_samples_the_same_tokens_as_the_whole_vocabulary():
    from jaxirl.generation.sampler import sample_tokens, two_stage_top_k_pays

    vocab, cfg = 50304, SamplingConfig(top_k=30, temperature=0.8)
    assert two_stage_top_k_pays(vocab, cfg.top_k)
    logits = jax.random.normal(jax.random.PRNGKey(1), (16, vocab)) * 3
    keys = jax.random.split(jax.random.PRNGKey(2), 16)
    tokens = np.asarray(jax.jit(sample_tokens, static_argnums=2)(logits, keys, cfg))
    # The reference: XLA's TopK over the whole row, then the same per-row draw.
    values, indices = jax.lax.top_k(logits / cfg.temperature, cfg.top_k)
    choice = jax.vmap(jax.random.categorical)(keys, values)
    want = np.asarray(jnp.take_along_axis(indices, choice[:, None], -1)[:, 0])
    np.testing.assert_array_equal(tokens, want)
    kth = np.asarray(values)[:, -1:]
    filtered = np.asarray(filter_logits(logits, cfg))
    np.testing.assert_array_equal(filtered > -1e30, np.asarray(logits / cfg.temperature) >= kth)


@pytest.mark.parametrize("eos", [None, "mid"])
def test_cache_blocks_give_the_tokens_of_one_block(peaked_model, eos):
    """Growing the cache block by block (attention reads only the filled part) samples the
    same tokens, with the same log-probs up to rounding, stops at EOS and counts steps alike."""
    from jaxirl.generation.sampler import cache_lengths

    _, model, params = peaked_model
    ids, mask = left_padded_batch(97, lengths=[9, 4, 1], total=9)
    whole = SamplingConfig(max_new_tokens=30, top_k=20, eos_token_id=None, pad_token_id=1,
                           cache_block=0)
    if eos == "mid":
        free = np.asarray(generate(model, params, ids, mask, jax.random.PRNGKey(4), whole).tokens)
        whole = dataclasses.replace(whole, eos_token_id=int(free[0, 12]))
    ref = generate(model, params, ids, mask, jax.random.PRNGKey(4), whole)
    # 7: a partial last block; 29: one block past the prompt (4 adds little and a compile).
    for block in ((7, 29) if eos is None else (7,)):
        cfg = dataclasses.replace(whole, cache_block=block)
        out = generate(model, params, ids, mask, jax.random.PRNGKey(4), cfg)
        np.testing.assert_array_equal(np.asarray(out.tokens), np.asarray(ref.tokens))
        np.testing.assert_array_equal(np.asarray(out.mask), np.asarray(ref.mask))
        np.testing.assert_allclose(np.asarray(out.logprobs), np.asarray(ref.logprobs), atol=1e-5)
        assert int(out.num_steps) == int(ref.num_steps)
    if eos == "mid":
        assert np.asarray(ref.mask)[0].sum() < 30
    assert cache_lengths(9, 30, 7) == [16, 23, 30, 37, 38]
    assert cache_lengths(9, 30, 0) == cache_lengths(9, 30, 29) == [38]
    assert cache_lengths(9, 1, 4) == [9]


def test_every_row_stopping_early_ends_the_loop(peaked_model):
    _, model, params = peaked_model
    ids, mask = left_padded_batch(97, lengths=[6, 6], total=6)
    greedy = SamplingConfig(max_new_tokens=20, do_sample=False, eos_token_id=None, pad_token_id=1,
                            cache_block=4)
    free = np.asarray(generate(model, params, ids, mask, jax.random.PRNGKey(0), greedy).tokens)
    # A token that both rows emit by step 9: after it every row has stopped.
    eos = next(t for t in free[0, :10] if t in free[1, :10])
    last = max(int(np.argmax(free[r] == eos)) for r in range(2))
    out = generate(model, params, ids, mask, jax.random.PRNGKey(0),
                   dataclasses.replace(greedy, eos_token_id=int(eos)))
    assert int(out.num_steps) == last + 1
    assert (np.asarray(out.tokens)[:, last + 1:] == 1).all()
    assert not np.asarray(out.mask)[:, last + 1:].any()


def _trained_markov_model():
    """A small LM fitted for a moment to a 3-successor Markov chain: it reaches the chain's
    entropy (0.90 nats; no memorising), so its next-token odds look like a real LM's."""
    import optax

    from jaxirl.models import GPTNeoXConfig, GPTNeoXForCausalLM, init_params

    config = GPTNeoXConfig(vocab_size=64, hidden_size=64, num_hidden_layers=2, num_attention_heads=4,
                           intermediate_size=128, max_position_embeddings=128)
    model = GPTNeoXForCausalLM(config)
    rng = np.random.default_rng(0)
    successors = rng.integers(0, 64, size=(64, 3))
    seqs = np.zeros((512, 48), np.int32)
    seqs[:, 0] = rng.integers(0, 64, size=512)
    for t in range(1, 48):
        seqs[:, t] = successors[seqs[:, t - 1], rng.choice(3, size=512, p=[0.6, 0.3, 0.1])]
    params = init_params(config, jax.random.PRNGKey(0))
    opt = optax.adam(3e-3)
    state = opt.init(params)

    @jax.jit
    def step(params, state):
        def loss(p):
            logits = model.apply({"params": p}, seqs[:, :-1]).logits
            return -jnp.mean(jnp.take_along_axis(jax.nn.log_softmax(logits), seqs[:, 1:, None], -1))

        value, grads = jax.value_and_grad(loss)(params)
        updates, state = opt.update(grads, state)
        return optax.apply_updates(params, updates), state, value

    for _ in range(60):
        params, state, value = step(params, state)
    assert 0.85 < float(value) < 1.0, float(value)
    return model, params, seqs[:64]


@pytest.mark.slow  # compiles the sampler twice at 70M-like widths; bf16 parity is also in test_gpt_neox_parity
def test_bfloat16_sampling_stays_close_to_float32():
    """bf16 weights, activations and KV cache: the sampled tokens' log-probs stay within 0.05
    of float32's, and the greedy token of each position (same prefix) agrees on >= 99%."""
    model, params, seqs = _trained_markov_model()
    bf16 = model.clone(dtype=jnp.bfloat16)
    ids, mask = jnp.asarray(seqs[:, :8]), jnp.ones((64, 8), jnp.int32)
    sampling = SamplingConfig(max_new_tokens=32, top_k=30, eos_token_id=None, cache_block=16)
    out = generate(bf16, params, ids, mask, jax.random.PRNGKey(0), sampling)
    full = model.apply({"params": params}, out.sequences, out.attention_mask).logits[:, 7:-1]
    exact = jnp.take_along_axis(jax.nn.log_softmax(full), out.tokens[..., None], -1)[..., 0]
    assert float(jnp.max(jnp.abs(exact - out.logprobs))) < 0.05
    low = bf16.apply({"params": params}, out.sequences, out.attention_mask).logits[:, 7:-1]
    assert float(jnp.mean(jnp.argmax(low, -1) == jnp.argmax(full, -1))) >= 0.99
    greedy = dataclasses.replace(sampling, do_sample=False)
    a = generate(model, params, ids, mask, jax.random.PRNGKey(0), greedy).tokens
    b = generate(bf16, params, ids, mask, jax.random.PRNGKey(0), greedy).tokens
    # Free-running, one flipped near-tie changes the rest of its row.
    assert float(jnp.mean(a == b)) >= 0.9


def test_few_row_decode_matmuls_match_hf_and_a_full_forward(tmp_path):
    """Weights of 2^20 elements (LM head 16384 x 64, MLP 64 x 16384) take the CPU decode
    path of mixed_precision.linear_nk (a row sum over weights stored [N, K]), 4 rows per
    step: greedy tokens equal HF's, sampled log-probs equal a full forward's (a dot)."""
    from jaxirl.models import mixed_precision

    torch_model = make_hf_gpt_neox(tmp_path, vocab_size=16384, hidden_size=64,
                                   intermediate_size=16384, initializer_range=0.3)
    model, params = load_pretrained(tmp_path)
    assert mixed_precision.row_reduce_pays(4, (16384, 64)) == (jax.default_backend() == "cpu")
    layout = mixed_precision.decode_layout(params, 4)
    if jax.default_backend() == "cpu":
        assert set(layout["layers_0"]["mlp"]["dense_h_to_4h"]) == {"kernel_nk", "bias"}
        assert set(layout["layers_0"]["attention"]["dense"]) == {"kernel", "bias"}  # 64 x 64
    ids, mask = left_padded_batch(16384, lengths=[9, 6, 3, 1], total=9)
    assert_greedy_matches_hf(torch_model, model, params, ids, mask, 12)
    out = generate(model, params, ids, mask, jax.random.PRNGKey(3),
                   SamplingConfig(max_new_tokens=12, top_k=30, eos_token_id=None, pad_token_id=1))
    full = model.apply({"params": params}, out.sequences, out.attention_mask).logits
    expected = jnp.take_along_axis(jax.nn.log_softmax(full[:, 8:-1]), out.tokens[..., None], -1)
    np.testing.assert_allclose(np.asarray(out.logprobs), np.asarray(expected[..., 0]), atol=1e-4)


def _tiny_random_lm(tied: bool = False, dtype=jnp.float32, init: float = 0.5):
    """A small random GPT-NeoX (a large init scale: peaked, varied logits)."""
    from jaxirl.models import GPTNeoXConfig, GPTNeoXForCausalLM, init_params

    config = GPTNeoXConfig(vocab_size=211, hidden_size=64, num_hidden_layers=2,
                           num_attention_heads=4, intermediate_size=128,
                           tie_word_embeddings=tied, initializer_range=init)
    return GPTNeoXForCausalLM(config, dtype=dtype), init_params(config, jax.random.PRNGKey(0))


@pytest.mark.parametrize("mask_row", [[1, 1, 1, 0, 0], [0, 0, 0, 0, 0]])
def test_right_padded_or_empty_prompt_is_a_clear_error(mask_row):
    """The prefill continues from the last column: a right-padded row (or one of padding
    only) would continue from padding. generate must refuse it, naming the row."""
    model, params = _tiny_random_lm()
    ids = jnp.array([[1, 1, 3, 7, 9], [3, 7, 9, 1, 1]])
    mask = jnp.array([[0, 0, 1, 1, 1], mask_row])
    sampling = SamplingConfig(max_new_tokens=4, do_sample=False, eos_token_id=None)
    with pytest.raises(ConfigError, match="left-padded prompts: attention_mask row 1's last"):
        generate(model, params, ids, mask, jax.random.PRNGKey(0), sampling)


def test_tied_bfloat16_sampler_logprobs_equal_the_forward():
    """Tied embeddings in bf16: the sampler embeds its tokens with the float32 embedding, as
    the forward does, and only the LM head's matmul reads a bf16 copy; so its log-probs are
    log_softmax of the model's own forward on the sampled sequences (bf16-rounded input
    embeddings moved them by 0.1 at this init scale)."""
    for tied in (False, True):
        model, params = _tiny_random_lm(tied=tied, dtype=jnp.bfloat16)
        ids = jax.random.randint(jax.random.PRNGKey(1), (4, 8), 1, 211)
        mask = jnp.ones((4, 8), jnp.int32)
        out = generate(model, params, ids, mask, jax.random.PRNGKey(2),
                       SamplingConfig(max_new_tokens=8, eos_token_id=None, cache_block=0))
        full = model.apply({"params": params}, out.sequences, out.attention_mask).logits
        expected = jnp.take_along_axis(jax.nn.log_softmax(full[:, 7:-1]),
                                       out.tokens[..., None], -1)[..., 0]
        np.testing.assert_allclose(np.asarray(out.logprobs), np.asarray(expected), atol=1e-5,
                                   err_msg=f"tied={tied}")


def test_row_offset_gives_each_row_its_global_key():
    """Rows split into two calls with row_offset draw the tokens of one call over all rows."""
    model, params = _tiny_random_lm()
    ids, mask = left_padded_batch(211, lengths=[6, 3, 5, 2], total=6)
    sampling = SamplingConfig(max_new_tokens=6, eos_token_id=None)
    whole = generate(model, params, ids, mask, jax.random.PRNGKey(4), sampling)
    halves = [generate(model, params, ids[s:s + 2], mask[s:s + 2], jax.random.PRNGKey(4),
                       sampling, row_offset=s).tokens for s in (0, 2)]
    np.testing.assert_array_equal(np.concatenate(halves), np.asarray(whole.tokens))


def test_generated_tokens_do_not_depend_on_the_decode_batch_size():
    """The same prompts and key give the same sampled tokens (temperature 1) for any batch
    size, which decode_batch_size picks from the device's memory."""
    from tiny_setup import tiny_policy, tiny_tokenizer

    from jaxirl.generation.text import generate_responses, sampling_from_tokenizer

    tok = tiny_tokenizer()
    model, params = tiny_policy()
    lm = model.clone(with_value_head=False)
    lm_params = {k: v for k, v in params.items() if k != "value_head"}
    ids = tok(["the cat", "a dog sat", "the mat", "a cat ran on", "the dog", "a", "bad cat",
               "the good dog"], padding=True, return_tensors="np")
    sampling = sampling_from_tokenizer(tok, 6)
    runs = {size: generate_responses(lm, lm_params, tok, ids["input_ids"], ids["attention_mask"],
                                     sampling, jax.random.PRNGKey(3), batch_size=size, threads=1)
            for size in (8, 4, 3, 1)}
    for size in (4, 3, 1):
        assert runs[size][0] == runs[8][0], size
        np.testing.assert_array_equal(runs[size][1].tokens, runs[8][1].tokens, err_msg=str(size))
        np.testing.assert_array_equal(runs[size][1].mask, runs[8][1].mask, err_msg=str(size))
    assert len(set(runs[8][0])) > 2  # rows drew different continuations


def test_decode_batch_size_counts_the_kv_cache_in_its_own_dtype():
    """A bf16 model on CPU keeps a float32 KV cache (kv_cache_dtype): it fits as many rows
    as a float32 model there, not twice as many."""
    from jaxirl.generation.text import decode_batch_size
    from jaxirl.models.mixed_precision import kv_cache_dtype

    model, _ = _tiny_random_lm()
    args = dict(rows=10_000, prompt_len=64, max_new_tokens=64, budget_bytes=64 << 20)
    f32 = decode_batch_size(model, **args)
    bf16 = decode_batch_size(model.clone(dtype=jnp.bfloat16), **args)
    if kv_cache_dtype(jnp.bfloat16) == jnp.float32:  # CPU
        assert bf16 == f32
    else:
        assert bf16 > f32
