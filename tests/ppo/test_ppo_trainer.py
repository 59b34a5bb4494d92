"""PPO trainer: frozen layers, shared reference, resume (multi-device: tests/parallel)."""

import json

import jax
import numpy as np
import pytest
from tiny_setup import tiny_policy, tiny_ppo_config, tiny_prompts, tiny_tokenizer, word_reward

from jaxirl.errors import CheckpointError, ConfigError
from jaxirl.ppo.experience import token_logprobs
from jaxirl.ppo.trainer import PPOTrainer, train
from jaxirl.ppo.update import make_update


def _trainer(**overrides):
    tokenizer = tiny_tokenizer()
    model, params = tiny_policy()
    trainer = PPOTrainer(model, tokenizer, word_reward, tiny_prompts(tokenizer),
                         tiny_ppo_config(**overrides))
    return trainer, trainer.init_state(params), params


def test_frozen_layers_do_not_move_and_reference_shares_the_trunk():
    trainer, state, params = _trainer(num_layers_unfrozen=1)
    assert set(state.ref_branch) == {"layers_2", "final_layer_norm", "embed_out"}
    new, metrics, texts = trainer.step(state)
    for name in ("embed_in", "layers_0", "layers_1"):
        same = jax.tree_util.tree_map(np.array_equal, new.params[name], params[name])
        assert all(jax.tree_util.tree_leaves(same)), name
    changed = jax.tree_util.tree_map(lambda a, b: not np.array_equal(a, b),
                                     new.params["layers_2"], params["layers_2"])
    assert any(jax.tree_util.tree_leaves(changed))
    # The reference branch is the initial policy, untouched by the update.
    same_ref = jax.tree_util.tree_map(np.array_equal, new.ref_branch["layers_2"], params["layers_2"])
    assert all(jax.tree_util.tree_leaves(same_ref))
    assert np.isfinite(metrics["loss"]) and len(texts) == 8


@pytest.mark.parametrize("unfrozen, names", [
    (-1, ["embed_in", "embed_out", "final_layer_norm", "layers_0", "layers_1", "value_head"]),
    (1, ["embed_out", "final_layer_norm", "layers_1", "value_head"]),
    # trlx's freeze_bottom_causal_layers freezes both embeddings when no block trains.
    (0, ["final_layer_norm", "value_head"])])
def test_trainable_names_follow_trlx(unfrozen, names):
    from jaxirl.ppo.state import trainable_names

    params = dict.fromkeys(["embed_in", "layers_0", "layers_1", "final_layer_norm",
                            "embed_out", "value_head"])
    assert list(trainable_names(params, 2, unfrozen)) == names


def test_more_unfrozen_layers_than_the_policy_has_is_an_error():
    # It was capped silently (every block trained), while the reward model refuses it.
    from jaxirl.errors import ConfigError
    from jaxirl.ppo.state import trainable_names

    params = dict.fromkeys(["embed_in", "layers_0", "layers_1", "embed_out", "value_head"])
    assert "embed_in" not in trainable_names(params, 2, 2)
    with pytest.raises(ConfigError, match=r"^PPOConfig field 'num_layers_unfrozen' is 3 but the "
                                          r"policy has 2 layers: use 0\.\.2, or -1 for all$"):
        trainable_names(params, 2, 3)


@pytest.mark.parametrize("unfrozen, depth", [(1, 2), (0, 3), (-1, 0)])
def test_frozen_trunk_runs_once_per_rollout_with_the_same_numbers(unfrozen, depth):
    # The rollout carries the residual stream entering the first trainable block; the
    # experience and the update read it instead of rerunning the frozen blocks, and give
    # what recomputing them gives.
    trainer, state, _ = _trainer(num_layers_unfrozen=unfrozen)
    (state, rollout), stats, _ = trainer.rollout(state, jax.random.PRNGKey(1))
    if depth == 0:
        assert rollout.trunk is None
        return
    rows, width = rollout.sequences.shape
    assert rollout.trunk.shape == (rows, width, 32)
    hidden = trainer.model.apply({"params": state.params}, rollout.sequences,
                                 rollout.attention_mask, return_hidden=True).hidden_states
    np.testing.assert_allclose(rollout.trunk, hidden[depth], atol=1e-6)
    p = width - trainer.config.max_new_tokens
    full = trainer.model.apply({"params": state.params}, rollout.sequences,
                               rollout.attention_mask, output_span=(p - 1, width - 1))
    np.testing.assert_allclose(rollout.logprobs,
                               token_logprobs(full.logits, rollout.sequences[:, p:]), atol=1e-5)
    np.testing.assert_allclose(rollout.values, full.values, atol=1e-6)
    update = jax.jit(make_update(trainer.model, trainer.config, p))
    key = jax.random.PRNGKey(2)
    from_trunk, metrics = update(state, rollout, key)
    recomputed, metrics_recomputed = update(state, rollout.replace(trunk=None), key)
    diff = np.concatenate([np.abs(np.asarray(a) - np.asarray(b)).ravel() for a, b in zip(
        jax.tree_util.tree_leaves(from_trunk.params),
        jax.tree_util.tree_leaves(recomputed.params), strict=True)])
    # Adam divides by √v, so float-rounding differences in a near-zero gradient become
    # steps of 1e-6 to 1e-5 (lr 1e-3; seen up to 1.2e-5 depending on the process's XLA
    # flags) in a few parameters: all stay within 5% of one step, and at most 0.1% of
    # them move by more than 1e-6 (a wrong trunk moves most of them by ~1e-3).
    assert diff.max() < 5e-5, diff.max()
    assert np.mean(diff > 1e-6) < 1e-3, np.mean(diff > 1e-6)
    for name in metrics:
        np.testing.assert_allclose(metrics[name], metrics_recomputed[name], rtol=1e-5, atol=1e-6)
    # The update moved the trainable blocks, so the comparison is not vacuous.
    moved = jax.tree_util.tree_map(lambda a, b: float(np.max(np.abs(a - b))),
                                   from_trunk.params["final_layer_norm"],
                                   state.params["final_layer_norm"])
    assert max(jax.tree_util.tree_leaves(moved)) > 1e-5


def test_make_experience_equals_the_rollout_rebuilt_from_its_parts():
    # With the policy moved away from the reference (its trainable embed_out perturbed, as
    # a training step would), the experience must penalise log π − log π_ref against the
    # *reference*, add the running-std-scaled scores, run GAE and whiten, as the pure
    # functions do one by one.
    import jax.numpy as jnp

    from jaxirl.ppo import (
        gae_advantages,
        make_experience,
        masked_whiten,
        rewards_with_kl_penalty,
        scale_rewards,
    )

    trainer, state, params = _trainer()
    cfg = trainer.config
    assert cfg.scale_reward == "running" and cfg.whiten_advantages
    assert "embed_out" in state.ref_branch  # trainable: its reference copy stays put
    moved = jax.tree_util.tree_map(
        lambda w: w + 0.3 * jax.random.normal(jax.random.PRNGKey(4), w.shape, w.dtype),
        state.params["embed_out"])
    state = state.replace(params={**state.params, "embed_out": moved})
    # Responses of 8 tokens after the first 8 prompts, right-padded after their own length.
    rng = np.random.default_rng(0)
    prompt_ids = np.asarray(trainer.prompts.input_ids[:8])
    prompt_mask = np.asarray(trainer.prompts.attention_mask[:8])
    p, n = prompt_ids.shape[1], cfg.max_new_tokens
    lengths = np.array([8, 5, 3, 8, 1, 6, 8, 2])
    response_mask = (np.arange(n)[None] < lengths[:, None]).astype(np.int32)
    response = np.where(response_mask > 0, rng.integers(1, 13, (8, n)), 0)
    seq = jnp.asarray(np.concatenate([prompt_ids, response], 1), jnp.int32)
    attn = jnp.asarray(np.concatenate([prompt_mask, response_mask], 1), jnp.int32)
    scores = jnp.array([2.0, -1.0, 0.5, 3.0, -2.5, 1.0, 0.0, 1.5])
    experience = jax.jit(make_experience, static_argnums=(0, 5, 6))
    got, _, stats = experience(trainer.model, state, seq, attn, scores, p, cfg)
    mask = jnp.asarray(response_mask, jnp.float32)

    def sampled_logprobs(prms):
        out = trainer.model.apply({"params": prms}, seq, attn, output_span=(p - 1, p + n - 1))
        logp = jax.nn.log_softmax(out.logits.astype(jnp.float32))
        return jnp.take_along_axis(logp, seq[:, p:, None], axis=-1)[..., 0], out.values

    @jax.jit  # one compiled program instead of op-by-op dispatch
    def rebuilt(policy, reference):
        logprobs, values = sampled_logprobs(policy)
        ref_logprobs, _ = sampled_logprobs(reference)
        scaled, _ = scale_rewards(scores, state.reward_moments, "running", cfg.cliprange_reward)
        rewards = rewards_with_kl_penalty(scaled, logprobs, ref_logprobs, mask, state.kl.value)
        advantages, returns = gae_advantages(rewards, values, mask, cfg.gamma, cfg.lam)
        kl = jnp.mean(jnp.sum((logprobs - ref_logprobs) * mask, axis=1))
        return masked_whiten(advantages, mask), returns, kl, scaled

    # The initial params are the reference policy.
    advantages, returns, kl, scaled = rebuilt(state.params, params)
    np.testing.assert_allclose(got.advantages, advantages, atol=2e-5)
    np.testing.assert_allclose(got.returns, returns, atol=2e-5)
    assert float(stats["kl"]) == pytest.approx(float(kl), rel=1e-4)
    # Not vacuous: the policy differs from the reference, and scaling changed the scores.
    assert abs(float(kl)) > 1e-2
    assert float(jnp.max(jnp.abs(scaled - scores))) > 0.1


def test_resume_after_interruption_gives_identical_run(tmp_path):
    trainer, state, _ = _trainer()
    full = train(trainer, state, 4, checkpoint_dir=tmp_path / "a", log_path=tmp_path / "a.jsonl",
                 progress=False)
    trainer2, state2, _ = _trainer()
    train(trainer2, state2, 2, checkpoint_dir=tmp_path / "b", log_path=tmp_path / "b.jsonl",
          progress=False)
    trainer3, state3, _ = _trainer()  # a fresh process would rebuild everything
    resumed = train(trainer3, state3, 4, checkpoint_dir=tmp_path / "b", resume=True,
                    log_path=tmp_path / "b.jsonl", progress=False)
    assert int(resumed.step) == 4 and int(resumed.data_position) == int(full.data_position)
    same = jax.tree_util.tree_map(np.array_equal, full.params, resumed.params)
    assert all(jax.tree_util.tree_leaves(same))
    np.testing.assert_array_equal(np.asarray(full.kl.value), np.asarray(resumed.kl.value))

    def metrics(path):
        rows = [json.loads(x) for x in path.read_text().splitlines()]
        assert all(r["time"] > 0 and r["elapsed_s"] >= 0 for r in rows)  # wall clock, streamed
        return [{k: v for k, v in r.items() if not k.startswith("time") and k != "elapsed_s"}
                for r in rows]

    assert metrics(tmp_path / "a.jsonl") == metrics(tmp_path / "b.jsonl")


def test_resume_with_another_config_is_refused(tmp_path):
    trainer, state, _ = _trainer()
    train(trainer, state, 1, checkpoint_dir=tmp_path, progress=False)
    other, state2, _ = _trainer(seed=7)
    with pytest.raises(CheckpointError, match=r"was written with other settings \(seed "):
        train(other, state2, 2, checkpoint_dir=tmp_path, resume=True, progress=False)


def test_bad_batch_split_is_a_clear_error():
    tokenizer = tiny_tokenizer()
    model, _ = tiny_policy()
    with pytest.raises(ConfigError, match="PPOConfig.num_rollouts 8 is not divisible by PPOConfig.batch_size 3"):
        PPOTrainer(model, tokenizer, word_reward, tiny_prompts(tokenizer), tiny_ppo_config(batch_size=3))


def test_kl_coefficient_moves_once_per_ppo_epoch_as_trlx():
    # trlx calls kl_ctl.update(mean_kl, n_steps=batch_size) after each PPO epoch's
    # minibatch loop: 2 updates here (ppo_epochs=2), not 4 (one per optimizer step).
    # The first rollout's policy is the reference, so its KL is 0 and the error clips to
    # -0.2: β = 0.2 * (1 - 0.2 * 4 / 100) ** 2 = 0.2 * 0.992 ** 2.
    trainer, state, _ = _trainer(batch_size=4, num_rollouts=8, ppo_epochs=2, init_kl_coef=0.2,
                                 target=1.0, horizon=100)
    assert float(state.kl.value) == pytest.approx(0.2)
    new, metrics, _ = trainer.step(state)
    assert metrics["kl_controller_input"] == pytest.approx(0.0, abs=1e-7)
    assert float(new.kl.value) == pytest.approx(0.196813, abs=1e-6)
    assert abs(float(new.kl.value) - 0.2 * 0.992 ** 4) > 1e-3  # the per-step cadence's value


def test_runs_differing_only_in_seed_share_one_compiled_update():
    # The study's PPO runs (seeds, true and learned rewards) trace and load each step
    # once per process; the seed still reaches the run through the state's key and the
    # prompt stream.
    from jaxirl.ppo import trainer as trainer_module

    trainer_module._compiled_steps.cache_clear()
    alone, state_alone, _ = _trainer(seed=7)
    reference = alone.step(state_alone)[0]
    trainer_module._compiled_steps.cache_clear()
    first, state_first, _ = _trainer(seed=3)
    second, state_second, _ = _trainer(seed=7)
    assert second.programs() is first.programs()
    assert state_second.tx is state_first.tx
    shared = second.step(state_second)[0]
    for a, b in zip(jax.tree_util.tree_leaves(shared.params),
                    jax.tree_util.tree_leaves(reference.params), strict=True):
        np.testing.assert_array_equal(a, b)
    other_seed = first.step(state_first)[0]
    assert not all(np.array_equal(a, b) for a, b in zip(
        jax.tree_util.tree_leaves(other_seed.params), jax.tree_util.tree_leaves(shared.params),
        strict=True))
    other_lr, _, _ = _trainer(seed=7, lr=3e-4)
    assert other_lr.programs() is not first.programs()
    # The prompt bucket only decides the width on the host; the width keys the program.
    other_bucket, _, _ = _trainer(seed=7, prompt_bucket=4)
    assert other_bucket.programs() is first.programs()


@pytest.mark.parametrize("reward_text", ["prompt_and_response", "response"])
def test_a_reward_that_can_prepare_for_the_references_gets_the_training_ones(reward_text):
    from jaxirl.data.prompts import PromptSet
    from jaxirl.data.tokenization import tokenize_prompts

    class Reward:
        def __init__(self, known=None):
            self.known, self.calls = known, []

        def with_references(self, references):
            return Reward(tuple(references))

        def __call__(self, texts, references):
            self.calls.append((list(texts), list(references or ())))
            return word_reward(texts)

    tokenizer = tiny_tokenizer()
    model, params = tiny_policy()
    prompts = PromptSet(("the cat", "a dog sat", "the mat", "a cat ran on") * 2,
                        ("good", "bad", "good dog", "bad cat") * 2)
    trainer = PPOTrainer(model, tokenizer, Reward(), tokenize_prompts(prompts, tokenizer, 8),
                         tiny_ppo_config(reward_text=reward_text))
    full = reward_text == "prompt_and_response"
    expected = tuple(p + r for p, r in zip(prompts.prompts, prompts.references, strict=True)) \
        if full else prompts.references
    assert trainer.reward_fn.known == expected
    _, _, responses = trainer.step(trainer.init_state(params))
    texts, references = trainer.reward_fn.calls[0]
    assert set(references) <= set(expected)
    # The paper's reward reads each sample as its prompt followed by the response, and
    # the reference as the same prompt followed by the dataset's continuation.
    for text, reference, response in zip(texts, references, responses, strict=True):
        if full:
            prompt = text[:len(text) - len(response)] if response else text
            assert text == prompt + response and prompt in prompts.prompts
            assert reference == prompt + prompts.references[prompts.prompts.index(prompt)]
        else:
            assert text in (response, tokenizer.eos_token)


def test_a_reward_fitted_on_responses_alone_refuses_prompt_and_response_texts():
    class ResponseReward:
        reward_text = "response"

        def __call__(self, texts, references):
            return word_reward(texts)

    tokenizer = tiny_tokenizer()
    model, _ = tiny_policy()
    with pytest.raises(ConfigError, match="set reward_text='response'"):
        PPOTrainer(model, tokenizer, ResponseReward(), tiny_prompts(tokenizer), tiny_ppo_config())
    PPOTrainer(model, tokenizer, ResponseReward(), tiny_prompts(tokenizer),
               tiny_ppo_config(reward_text="response"))


def test_response_rewards_scores_an_empty_response_as_what_the_policy_emitted():
    from jaxirl.ppo.trainer import response_rewards
    from jaxirl.rewards.reward_fn import ToxicityReward

    def offset_reward(texts, references=None):
        # A learned reward's offset is arbitrary: r(t) = −3 + 0.01·len(t).
        r = np.array([-3.0 + 0.01 * len(t) for t in texts])
        if references is not None:
            r = r - np.array([-3.0 + 0.01 * len(t) for t in references])
        return r.astype(np.float32)

    responses, refs = ["", " a dog"], [" the cat", " the cat"]
    # Alone, the empty response is scored as the EOS text, not as a reward of 0.
    alone = response_rewards(offset_reward, responses, refs, empty_response="<eos>")
    np.testing.assert_allclose(alone, [0.01 * (5 - 8), 0.01 * (6 - 8)], atol=1e-6)
    # After its prompt, an empty response leaves the prompt, scored like any text.
    full = response_rewards(offset_reward, responses, refs, prompts=["hi", "hi"])
    np.testing.assert_allclose(full, [0.01 * (2 - 10), 0.01 * (8 - 10)], atol=1e-6)

    class Toxic:  # P(toxic) = 1 for "bad", else 0.1; an empty text is not toxic
        def __call__(self, texts):
            return np.array([1.0 if "bad" in t else 0.1 for t in texts])

    toxic = ToxicityReward(Toxic())
    np.testing.assert_allclose(
        response_rewards(toxic, ["", " bad"], [" bad", " ok"], empty_response="<eos>"),
        [1.0, -0.9], atol=1e-6)


def test_ref_mean_and_ref_std_reach_the_reward_scaling_state():
    trainer, state, _ = _trainer(scale_reward="ref", ref_mean=0.5, ref_std=10.0)
    assert float(state.reward_moments.ref_mean) == 0.5
    assert float(state.reward_moments.ref_std) == 10.0
    (state, _), _, _ = trainer.rollout(state, jax.random.PRNGKey(0))
    assert float(state.reward_moments.ref_std) == 10.0  # fixed, not the first batch's


def test_trimming_the_prompts_padding_changes_nothing_but_rounding():
    # Prompts padded to 8 columns need at most 4: an iteration with prompt_bucket 2 runs
    # on 4 prompt columns, and matches the iteration on all 8 (bucket 0) to float rounding.
    from jaxirl.data.tokenization import tokenize_prompts

    tokenizer = tiny_tokenizer()
    model, params = tiny_policy()
    prompts = tokenize_prompts(["the cat", "a dog sat", "the mat", "a cat ran on"] * 4,
                               tokenizer, 8, pad_to_multiple_of=8)
    assert prompts.input_ids.shape[1] == 8 and int(prompts.lengths.max()) <= 4
    runs = {}
    for bucket in (0, 2):
        trainer = PPOTrainer(model, tokenizer, word_reward, prompts,
                             tiny_ppo_config(prompt_bucket=bucket))
        state = trainer.init_state(params)
        (_, rollout), _, texts = trainer.rollout(state, jax.random.PRNGKey(1))
        new, metrics, _ = trainer.step(trainer.init_state(params))
        runs[bucket] = rollout, texts, new, metrics
    (full, full_texts, full_new, full_metrics), (cut, cut_texts, cut_new, cut_metrics) = \
        runs[0], runs[2]
    n = tiny_ppo_config().max_new_tokens
    assert full.sequences.shape[1] == 8 + n
    assert cut.sequences.shape[1] == int(prompts.lengths.max()) + n < 8 + n
    assert cut_texts == full_texts
    np.testing.assert_array_equal(cut.sequences[:, -n:], full.sequences[:, -n:])
    for name in ("logprobs", "values", "advantages", "returns"):
        np.testing.assert_allclose(getattr(cut, name), getattr(full, name), atol=2e-5,
                                   err_msg=name)
    for a, b in zip(jax.tree_util.tree_leaves(cut_new.params),
                    jax.tree_util.tree_leaves(full_new.params), strict=True):
        np.testing.assert_allclose(a, b, atol=2e-5)
    for name in ("loss", "kl", "policy_loss", "value_loss"):
        np.testing.assert_allclose(cut_metrics[name], full_metrics[name], rtol=1e-4, atol=1e-6)


def test_prompt_bucket_must_not_be_negative():
    with pytest.raises(ConfigError, match="prompt_bucket"):
        tiny_ppo_config(prompt_bucket=-1)


def test_whitespace_response_is_an_empty_response():
    from jaxirl.ppo.trainer import response_rewards

    def offset_reward(texts, references=None):
        r = np.array([-3.0 + 0.01 * len(t) for t in texts])
        if references is not None:
            r = r - np.array([-3.0 + 0.01 * len(t) for t in references])
        return r.astype(np.float32)
    got = response_rewards(offset_reward, ["  "], [" the cat"], empty_response="<eos>")
    np.testing.assert_allclose(got, [0.01 * (5 - 8)], atol=1e-6)


def test_trunk_depth_is_the_lowest_trainable_block():
    from jaxirl.ppo.state import frozen_trunk_depth
    assert frozen_trunk_depth(("final_layer_norm", "layers_1", "layers_2", "value_head"), 3) == 1


def test_data_position_counts_chunks():
    trainer, state, _ = _trainer()
    (state, _), _, _ = trainer.rollout(state, jax.random.PRNGKey(0))
    assert int(state.data_position) == 2  # num_rollouts 8 / chunk_size 4


def test_last_iteration_is_always_checkpointed(tmp_path):
    from jaxirl.checkpoint import Checkpointer
    from jaxirl.ppo.trainer import train
    trainer, state, _ = _trainer()
    train(trainer, state, 3, checkpoint_dir=tmp_path / "ck", save_every=2, progress=False)
    ck = Checkpointer(tmp_path / "ck")
    try:
        assert ck.latest_step() == 3
    finally:
        ck.close()
