"""Learned reward model: last-real-token reading, head forms, trunk split, save/load, PPO reward,
the training layout."""

import dataclasses

import jax
import jax.flatten_util
import jax.numpy as jnp
import numpy as np
import optax
import pytest
import scipy.special
from tiny_setup import tiny_policy, tiny_tokenizer

from jaxirl.errors import CheckpointError, ConfigError
from jaxirl.irl.reward_model import (
    RewardModelConfig,
    init_reward_model,
    load_reward_model,
    make_learned_reward_fn,
    save_reward_model,
    tokenize_texts,
)
from jaxirl.irl.reward_net import (
    RewardHead,
    last_token_index,
    pool_hidden,
    query_block,
    stored_layout,
    training_layout,
)
from jaxirl.irl.train import relayout_flat
from jaxirl.models import save_pretrained
from jaxirl.pipeline.reward_specs import make_scorer
from jaxirl.rewards import make_reward_fn

TEXTS = ["the cat sat on a mat", "bad dog", "good", "a dog ran on the mat awful bad"]


@pytest.fixture(scope="module")
def tiny_folder(tmp_path_factory):
    folder = tmp_path_factory.mktemp("tiny_lm")
    model, params = tiny_policy(layers=3)
    save_pretrained(folder, model.config, params, tokenizer=tiny_tokenizer())
    return str(folder), model, params


def _perturbed(params, seed=7):
    leaves, tree = jax.tree_util.tree_flatten(params)
    keys = jax.random.split(jax.random.PRNGKey(seed), len(leaves))
    return jax.tree_util.tree_unflatten(
        tree, [x + 0.05 * jax.random.normal(k, x.shape) for x, k in zip(leaves, keys, strict=True)])


def test_last_token_index_any_padding_side():
    mask = jnp.array([[1, 1, 0, 0], [0, 1, 1, 1], [1, 1, 1, 1], [0, 0, 1, 0]])
    np.testing.assert_array_equal(last_token_index(mask), [1, 3, 3, 2])
    hidden = jnp.arange(4 * 4 * 2, dtype=jnp.float32).reshape(4, 4, 2)
    np.testing.assert_array_equal(pool_hidden(hidden, mask, "last"),
                                  hidden[jnp.arange(4), jnp.array([1, 3, 3, 2])])
    mean = pool_hidden(hidden, mask, "mean")
    np.testing.assert_allclose(mean[0], hidden[0, :2].mean(0))
    np.testing.assert_allclose(mean[3], hidden[3, 2])
    # Padding never wins the max, even where it holds the largest values.
    np.testing.assert_array_equal(pool_hidden(-hidden, mask, "max"),
                                  -hidden[jnp.arange(4), jnp.array([0, 1, 0, 2])])


@pytest.mark.parametrize("k,pooling", [(0, "last"), (1, "max"), (-1, "mean"), (2, "last")])
def test_extra_padding_left_or_right_does_not_change_the_score(tiny_folder, k, pooling):
    rm = init_reward_model(RewardModelConfig(tiny_folder[0], num_layers_unfrozen=k,
                                             pooling=pooling, max_length=32), seed=1)
    ids, mask = rm.tokenize(TEXTS)
    base = rm.score_tokens(ids, mask)
    pad = int(ids[0, 0]) if mask[0, 0] == 0 else 0
    n, t = ids.shape
    left_ids = np.concatenate([np.full((n, 5), pad, np.int32), ids], 1)
    left_mask = np.concatenate([np.zeros((n, 5), np.int32), mask], 1)
    # Right padding: move every row's real tokens to the start.
    right_ids = np.full((n, t + 3), pad, np.int32)
    right_mask = np.zeros((n, t + 3), np.int32)
    for i in range(n):
        real = ids[i][mask[i] > 0]
        right_ids[i, : len(real)] = real
        right_mask[i, : len(real)] = 1
    np.testing.assert_allclose(rm.score_tokens(left_ids, left_mask), base, atol=1e-5)
    np.testing.assert_allclose(rm.score_tokens(right_ids, right_mask), base, atol=1e-5)
    if k == 0 and pooling == "last":
        # The reference reads column -1: padding on right-padded rows, so scores change.
        _, model, params = tiny_folder
        final = model.apply({"params": params}, right_ids, right_mask).final_hidden
        col = RewardHead("reference").apply({"params": rm.params["head"]}, final[:, -1])
        assert np.abs(np.asarray(col) - base).max() > 1e-3


def test_reference_head_is_minus_last_output_and_scalar_head_has_bias():
    x = jax.random.normal(jax.random.PRNGKey(0), (3, 5, 8))
    ref = RewardHead("reference")
    p = ref.init(jax.random.PRNGKey(1), x)["params"]
    assert set(p["linear"]) == {"kernel"} and p["linear"]["kernel"].shape == (8, 2)
    out = np.einsum("bth,hk->btk", np.asarray(x), np.asarray(p["linear"]["kernel"]))
    np.testing.assert_allclose(ref.apply({"params": p}, x), -out[..., -1], rtol=1e-5, atol=1e-6)
    sc = RewardHead("scalar")
    q = sc.init(jax.random.PRNGKey(1), x)["params"]
    q = {"linear": {"kernel": q["linear"]["kernel"], "bias": jnp.array([0.5])}}
    want = np.asarray(x) @ np.asarray(q["linear"]["kernel"])[:, 0] + 0.5
    np.testing.assert_allclose(sc.apply({"params": q}, x), want, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("k", [0, 1, 2, 3, -1])
def test_trunk_split_matches_the_full_model(tiny_folder, k):
    folder, model, params = tiny_folder
    rm = init_reward_model(RewardModelConfig(folder, num_layers_unfrozen=k, max_length=32),
                           seed=2)
    expected = {0: {"head"}, 1: {"head", "final_layer_norm", "layers_2"},
                -1: {"head", "final_layer_norm", "embed_in", "layers_0", "layers_1", "layers_2"}}
    if k in expected:
        assert set(rm.params) == expected[k]
    assert not set(rm.params) & set(rm.frozen_params)
    ids, mask = rm.tokenize(TEXTS)
    final = model.apply({"params": params}, ids, mask).final_hidden
    want = RewardHead("reference").apply({"params": rm.params["head"]},
                                         pool_hidden(final, mask, "last"))
    np.testing.assert_allclose(rm.score(TEXTS), want, atol=1e-5)


def test_more_unfrozen_layers_than_the_model_has_is_an_error(tiny_folder):
    folder, _, _ = tiny_folder
    with pytest.raises(ConfigError, match="'num_layers_unfrozen' is 5 but .* has 3 layers"):
        init_reward_model(RewardModelConfig(folder, num_layers_unfrozen=5))


def test_truncation_keeps_the_end_by_default():
    tok = tiny_tokenizer()
    ids, mask = tokenize_texts(["the cat sat on a mat good"], tok, max_length=3)
    assert tok.decode(ids[0][mask[0] > 0].tolist()).split() == ["a", "mat", "good"]
    ids, mask = tokenize_texts(["the cat sat on a mat good"], tok, 3, truncation_side="right")
    assert tok.decode(ids[0][mask[0] > 0].tolist()).split() == ["the", "cat", "sat"]


def test_save_load_gives_identical_scores_and_ppo_reward(tiny_folder, tmp_path):
    rm = init_reward_model(RewardModelConfig(tiny_folder[0], num_layers_unfrozen=1,
                                             head="scalar", max_length=16), seed=3)
    rm = rm.with_params(_perturbed(rm.params))
    path = save_reward_model(tmp_path / "rm", rm, extra={"note": "x"})
    loaded = load_reward_model(path)
    assert loaded.config == rm.config
    np.testing.assert_array_equal(loaded.score(TEXTS), rm.score(TEXTS))

    r = rm.score(TEXTS)
    reward = make_learned_reward_fn(path)
    np.testing.assert_allclose(reward(TEXTS[:2], TEXTS[2:]), r[:2] - r[2:], atol=1e-6)
    np.testing.assert_allclose(reward(TEXTS, None), r, atol=1e-6)
    assert reward(TEXTS, None).dtype == np.float32

    scorer = make_scorer(f"learned:{path}")  # the stage layer's resolver
    np.testing.assert_allclose(scorer.log_odds(TEXTS), r, atol=1e-6)
    np.testing.assert_allclose(scorer(TEXTS), scipy.special.expit(-r), atol=1e-6)
    ppo_reward = make_reward_fn(scorer)(TEXTS[:2], TEXTS[2:])
    np.testing.assert_allclose(ppo_reward, -scipy.special.expit(-r[:2])
                               + scipy.special.expit(-r[2:]), atol=1e-6)
    with pytest.raises(ConfigError, match="needs a reward model folder"):
        make_scorer("learned")


def test_bad_config_and_folder_are_one_line_errors(tiny_folder, tmp_path):
    with pytest.raises(ConfigError, match="'head' must be one of reference, scalar"):
        RewardModelConfig(tiny_folder[0], head="mlp")
    with pytest.raises(ConfigError, match="'pooling'"):
        RewardModelConfig(tiny_folder[0], pooling="sum")
    with pytest.raises(CheckpointError, match="not a reward model folder"):
        load_reward_model(tmp_path)
    (tmp_path / "reward_model.json").write_text("{not json")
    with pytest.raises(CheckpointError, match="malformed"):
        load_reward_model(tmp_path)


# The IRL epoch's training layout (the query block's QKV projection split in two) computes
# the same rewards, gradients and Adam steps as HF's fused layout, and converts back exactly.


def test_max_length_past_the_backbone_context_is_an_error(tiny_folder):
    folder, model, _ = tiny_folder
    assert model.config.max_position_embeddings == 64
    with pytest.raises(ConfigError, match="'max_length' is 65 but .* has a 64-token context"):
        init_reward_model(RewardModelConfig(folder, max_length=65))
    rm = init_reward_model(RewardModelConfig(folder, max_length=64))  # the whole context is fine
    assert rm.score(TEXTS).shape == (len(TEXTS),)
    # A model rebuilt around another config is checked too (the loaders build it directly).
    with pytest.raises(ConfigError, match="'max_length' is 100 but"):
        dataclasses.replace(rm, config=dataclasses.replace(rm.config, max_length=100))


def _leaves_equal(a, b):
    for x, y in zip(jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b), strict=True):
        np.testing.assert_array_equal(x, y)


@pytest.mark.parametrize("k, pooling, block", [(1, "last", "layers_2"), (2, "last", "layers_2"),
                                               (1, "mean", None), (0, "last", None)])
def test_split_layout_gives_the_same_rewards_and_gradients(tiny_folder, k, pooling, block):
    folder, _, _ = tiny_folder
    rm = init_reward_model(RewardModelConfig(folder, num_layers_unfrozen=k, pooling=pooling,
                                             max_length=32), seed=2)
    assert query_block(rm.top) == block
    params = _perturbed(rm.params)
    split = training_layout(params, rm.top)
    if block is None:
        assert split is params  # nothing to split: mean pooling, or no block trains
        return
    qkv = split[block]["attention"]["query_key_value"]
    assert sorted(qkv) == ["kv_bias", "kv_kernel", "q_bias", "q_kernel"]
    assert qkv["q_kernel"].shape == (32, 32) and qkv["kv_kernel"].shape == (32, 64)
    _leaves_equal(stored_layout(split, rm.top), params)  # the inverse, exactly
    ids, mask = rm.tokenize(TEXTS)
    features = rm.features(ids, mask)

    def loss(p):
        return (rm.rewards_fn(p, features, mask) ** 2).sum()

    np.testing.assert_array_equal(rm.rewards_fn(split, features, mask),
                                  rm.rewards_fn(params, features, mask))
    grads_fused = jax.grad(loss)(params)
    grads_split = jax.grad(loss)(split)
    _leaves_equal(stored_layout(grads_split, rm.top), grads_fused)


def test_adam_moments_relayout_like_their_params(tiny_folder):
    folder, _, _ = tiny_folder
    rm = init_reward_model(RewardModelConfig(folder, num_layers_unfrozen=1, max_length=32),
                           seed=2)
    params = _perturbed(rm.params)
    tx = optax.flatten(optax.adam(1e-2))
    grads = _perturbed(params, seed=3)
    _, state = tx.update(grads, tx.init(params), params)
    mu = state[0].mu  # the flat first moment, in the fused tree's order
    moved = relayout_flat(mu, params, lambda p: training_layout(p, rm.top))
    # The same numbers as flattening the split tree of the unflattened moment.
    unflat = jax.flatten_util.ravel_pytree(params)[1](mu)
    want = jax.flatten_util.ravel_pytree(training_layout(unflat, rm.top))[0]
    np.testing.assert_array_equal(moved, want)
    back = relayout_flat(moved, training_layout(params, rm.top),
                         lambda p: stored_layout(p, rm.top))
    np.testing.assert_array_equal(back, mu)
    # An Adam step in either layout lands on the same params.
    split_state = jax.tree_util.tree_map(
        lambda x: relayout_flat(x, params, lambda p: training_layout(p, rm.top))
        if x.shape == mu.shape else x, state)
    fused_updates, _ = tx.update(grads, state, params)
    split_updates, _ = tx.update(training_layout(grads, rm.top), split_state,
                                 training_layout(params, rm.top))
    _leaves_equal(stored_layout(split_updates, rm.top), fused_updates)


def test_known_references_are_scored_once_and_looked_up(tiny_folder, tmp_path):
    rm = init_reward_model(RewardModelConfig(tiny_folder[0], num_layers_unfrozen=1,
                                             head="scalar", max_length=16), seed=3)
    rm = rm.with_params(_perturbed(rm.params))
    reward = make_learned_reward_fn(save_reward_model(tmp_path / "rm", rm))
    r = reward.model.score(TEXTS)
    calls = []

    class Counting:
        def score(self, texts, batch_size=64):
            calls.append(list(texts))
            return reward.model.score(texts, batch_size)

    prepared = dataclasses.replace(reward, model=Counting()).with_references(
        [TEXTS[2], TEXTS[3], TEXTS[2]])
    assert calls == [[TEXTS[2], TEXTS[3]]]  # once each, in the given order
    calls.clear()
    np.testing.assert_allclose(prepared(TEXTS[:2], [TEXTS[3], TEXTS[2]]), r[:2] - r[[3, 2]],
                               atol=1e-6)
    assert calls == [TEXTS[:2]]  # the responses only
    # A reference it was not given is scored on the spot.
    np.testing.assert_allclose(prepared([TEXTS[0]], [TEXTS[1]]), r[:1] - r[1:2], atol=1e-6)
    assert make_learned_reward_fn(tmp_path / "rm", use_references=False).with_references(
        TEXTS).reference_rewards is None
