"""Divergence is an error, not a result: PPO, IRL, SAE and LM training stop at the first
non-finite loss, KL, gradient or parameter, name the iteration and the quantity, and keep
the last good checkpoint; loading and evaluation refuse non-finite weights."""

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from tiny_setup import tiny_policy, tiny_ppo_config, tiny_prompts, tiny_tokenizer, word_reward

from jaxirl.checkpoint import Checkpointer
from jaxirl.errors import CheckpointError, DivergenceError
from jaxirl.finite import check_metrics, first_nonfinite, tree_finite
from jaxirl.models import GPTNeoXForCausalLM, save_pretrained
from jaxirl.ppo.trainer import PPOTrainer, train


def test_tree_finite_and_first_nonfinite_name_the_leaf():
    tree = {"a": jnp.ones(3), "b": {"c": jnp.array([1.0, jnp.nan, jnp.inf])}, "n": jnp.arange(2)}
    assert not bool(jax.jit(tree_finite)(tree))
    assert bool(tree_finite({"a": jnp.ones(3), "n": jnp.arange(2)}))
    assert first_nonfinite(tree) == ("b/c", 2)
    assert first_nonfinite({"a": np.ones(2)}) is None


def test_check_metrics_names_where_what_and_the_seed():
    check_metrics({"loss": 1.0, "params_finite": 1.0}, "PPO iteration 1", ["loss", "params_finite"])
    with pytest.raises(DivergenceError, match=r"^PPO iteration 3 diverged: non-finite kl \(nan\); "
                                              r"no checkpoint"):
        check_metrics({"loss": 1.0, "kl": float("nan")}, "PPO iteration 3", ["loss", "kl"],
                      hint="no checkpoint was written")
    with pytest.raises(DivergenceError, match=r"IRL epoch 2 diverged: non-finite params \(seed "
                                              r"index 1\)"):
        check_metrics({"params_finite": np.array([1.0, 0.0])}, "IRL epoch 2", ["params_finite"])


def _trainer(**overrides):
    tokenizer = tiny_tokenizer()
    model, params = tiny_policy()
    trainer = PPOTrainer(model, tokenizer, word_reward, tiny_prompts(tokenizer),
                         tiny_ppo_config(**overrides))
    return trainer, trainer.init_state(params)


def test_ppo_divergence_stops_before_its_checkpoint_and_keeps_the_last_good_one(tmp_path):
    trainer, state = _trainer()
    good = train(trainer, state, 1, checkpoint_dir=tmp_path / "ckpt", log_path=tmp_path / "m.jsonl",
                 progress=False)
    # A run with an absurd learning rate (Adam moves every weight by 1e4) resumed from that
    # state, saved under its own settings (a resume checks them).
    trainer2, state2 = _trainer(lr=1e4)
    ckpt = Checkpointer(tmp_path / "ckpt2")
    try:
        ckpt.save(1, jax.device_get(good), force=True, settings=trainer2.config)
    finally:
        ckpt.close()
    with pytest.raises(DivergenceError, match=r"^PPO iteration 2 diverged: non-finite .*the last "
                                              r"checkpoint, step 1 in '.*ckpt2', is kept$"):
        train(trainer2, state2, 3, checkpoint_dir=tmp_path / "ckpt2", resume=True,
              log_path=tmp_path / "m.jsonl", progress=False)
    ckpt = Checkpointer(tmp_path / "ckpt2")
    try:
        assert ckpt.latest_step() == 1
        kept, _ = ckpt.restore(good)
    finally:
        ckpt.close()
    same = jax.tree_util.tree_map(np.array_equal, kept.params, jax.device_get(good.params))
    assert all(jax.tree_util.tree_leaves(same))
    assert [json.loads(x)["step"] for x in (tmp_path / "m.jsonl").read_text().splitlines()] == [1]


def test_ppo_update_reports_params_finite_on_device():
    trainer, state = _trainer()
    # A second state: a step consumes (donates) the one it is given.
    other = trainer.init_state(tiny_policy()[1])
    (_, rollout), _, _ = trainer.rollout(other, jax.random.PRNGKey(0))
    _, metrics, _ = trainer.step(state)
    assert metrics["params_finite"] == 1.0
    nan_state = other.replace(params=jax.tree_util.tree_map(lambda x: x * jnp.nan, other.params))
    _, metrics = trainer.update(nan_state, rollout, jax.random.PRNGKey(1))
    assert float(metrics["params_finite"]) == 0.0


def test_training_without_resume_refuses_existing_checkpoints(tmp_path):
    trainer, state = _trainer()
    ckpt = Checkpointer(tmp_path / "ckpt")
    ckpt.save(1, state)
    ckpt.close()
    with pytest.raises(CheckpointError, match="already holds checkpoints .*pass resume=True"):
        train(trainer, state, 2, checkpoint_dir=tmp_path / "ckpt", progress=False)


def test_lm_training_names_the_first_diverged_step():
    from jaxirl.training import lm

    model, params = tiny_policy()
    params = {k: v for k, v in params.items() if k != "value_head"}
    model = GPTNeoXForCausalLM(model.config)
    config = lm.LMTrainConfig(learning_rate=1e-3, warmup_steps=0, total_steps=1, seq_len=8)
    optimizer = lm.make_optimizer(config)  # one step: optax needs a non-empty decay phase
    step = lm.make_train_step(model, optimizer)
    batch = {"tokens": np.ones((2, 8), np.int32), "mask": np.ones((2, 8), np.int32)}
    state, good = step(lm.init_state(params, optimizer), batch)
    bad_params = jax.tree_util.tree_map(lambda x: x.at[..., 0].set(jnp.inf), params)
    _, bad = step(lm.init_state(bad_params, optimizer), batch)
    lm.check_finite_steps([good["params_finite"]], 1)
    with pytest.raises(DivergenceError, match="^LM training step 5 diverged"):
        lm.check_finite_steps([good["params_finite"], bad["params_finite"]], 4)


def test_sae_divergence_is_an_error():
    from jaxirl.interp.sae import SAEConfig, train_sae

    x = np.random.default_rng(0).normal(size=(64, 8)).astype(np.float32)
    train_sae(x, SAEConfig(dict_multiple=1, batch_size=16, num_epochs=1))
    with pytest.raises(DivergenceError, match="^SAE epoch 1 diverged: non-finite"):
        train_sae(x, SAEConfig(dict_multiple=1, batch_size=16, num_epochs=2, learning_rate=1e38))


def test_irl_divergence_is_an_error_before_the_epoch_checkpoint(tmp_path):
    from jaxirl.irl.losses import IRLLossConfig
    from jaxirl.irl.pairs import pair_data
    from jaxirl.irl.reward_model import RewardModelConfig, init_reward_model
    from jaxirl.irl.train import IRLTrainConfig, train_irl

    model, params = tiny_policy(layers=2)
    save_pretrained(tmp_path / "lm", model.config, params, tokenizer=tiny_tokenizer())
    rm = init_reward_model(RewardModelConfig(str(tmp_path / "lm"), max_length=8))
    expert, base = ["the cat sat good"] * 4, ["the cat sat bad"] * 4
    data = pair_data(rm, expert, base, np.ones(4), -np.ones(4))
    config = IRLTrainConfig(loss=IRLLossConfig("max_margin"), learning_rate=1e38, batch_size=2,
                            epochs=2)
    with pytest.raises(DivergenceError, match="^IRL epoch 1 diverged: non-finite .*no checkpoint "
                                              "was written"):
        train_irl(rm, data, data, config, workdir=tmp_path / "irl", progress=False)
    assert not list((tmp_path / "irl" / "checkpoints").iterdir())
    assert not (tmp_path / "irl" / "reward_models").exists()


def test_evaluation_refuses_a_nan_policy():
    from jaxirl.generation.text import evaluate_toxicity

    model, params = tiny_policy()
    model = model.clone(with_value_head=False)
    params = {k: v for k, v in params.items() if k != "value_head"}
    params["layers_0"]["mlp"]["dense_4h_to_h"]["bias"] = \
        params["layers_0"]["mlp"]["dense_4h_to_h"]["bias"].at[0].set(jnp.nan)
    with pytest.raises(DivergenceError, match="layers_0/mlp/dense_4h_to_h/bias"):
        evaluate_toxicity(model, params, tiny_tokenizer(), ["the cat"], None, 4, 0, 8)


def test_restoring_a_checkpoint_with_nan_values_is_an_error(tmp_path):
    ckpt = Checkpointer(tmp_path)
    ckpt.save(1, {"w": np.array([1.0, np.nan], np.float32)})
    with pytest.raises(CheckpointError, match=r"holds non-finite values \(1 in 'w'\)"):
        ckpt.restore({"w": np.zeros(2, np.float32)})
    ckpt.close()


def test_checkpointer_saves_on_multiples_of_save_every_or_when_forced(tmp_path):
    ckpt = Checkpointer(tmp_path, save_every=3, max_to_keep=10)
    state = {"w": np.array([1.0, 2.0], np.float32)}
    saved = [ckpt.save(step, state) for step in range(1, 8)]
    assert saved == [False, False, True, False, False, True, False]  # steps 3 and 6
    assert ckpt.latest_step() == 6
    assert ckpt.save(7, state, force=True) and ckpt.latest_step() == 7
    ckpt.close()
