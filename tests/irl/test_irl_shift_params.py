"""IRL params that only shift every reward stay frozen under pairwise losses; Adam's ε is a
setting that leaves existing studies' folders and checkpoints as they were."""

import dataclasses

import jax
import numpy as np
import pytest
from tiny_setup import tiny_policy, tiny_tokenizer

from jaxirl.errors import CheckpointError, ConfigError
from jaxirl.irl.losses import IRLLossConfig
from jaxirl.irl.pairs import pair_data
from jaxirl.irl.reward_model import RewardModelConfig, init_reward_model
from jaxirl.irl.train import IRLTrainConfig, frozen_shift_params, train_irl
from jaxirl.models import save_pretrained

LN_BIAS, HEAD_BIAS = "['final_layer_norm']['bias']", "['head']['linear']['bias']"
EXPERT = ["the cat sat good", "a dog ran nice", "the mat good", "a cat sat on a mat nice",
          "the dog good", "a cat ran nice", "cat good"]
BASE = [x.replace("good", "bad").replace("nice", "awful") for x in EXPERT]


@pytest.fixture(scope="module")
def scalar_model(tmp_path_factory):
    folder = tmp_path_factory.mktemp("tiny_lm")
    model, params = tiny_policy(layers=2)
    save_pretrained(folder, model.config, params, tokenizer=tiny_tokenizer())
    rm = init_reward_model(RewardModelConfig(str(folder), num_layers_unfrozen=2, max_length=16,
                                             head="scalar"))
    return rm, pair_data(rm, EXPERT, BASE, np.arange(7.0), -np.arange(7.0), batch_size=3)


def _leaf(params, path):
    return next(np.asarray(x) for p, x in jax.tree_util.tree_leaves_with_path(params)
                if jax.tree_util.keystr(p) == path)


def test_which_params_are_frozen():
    assert frozen_shift_params("scalar", IRLLossConfig("logistic")) == (LN_BIAS, HEAD_BIAS)
    assert frozen_shift_params("reference", IRLLossConfig("max_margin")) == (LN_BIAS,)
    assert frozen_shift_params("scalar", IRLLossConfig("fa_focal")) == (LN_BIAS, HEAD_BIAS)
    # The discriminator classifies single texts: a common shift changes its loss.
    assert frozen_shift_params("scalar", IRLLossConfig("discriminator")) == ()
    # reward_l2 penalises the rewards' size, which a shift changes.
    assert frozen_shift_params("scalar", IRLLossConfig("logistic", reward_l2=0.1)) == ()


@pytest.mark.optimized  # the reduction whose rounding moved them compiles this way in a run
def test_reward_shifting_biases_stay_at_their_initial_values(scalar_model):
    """Their gradient is 0 under a pairwise loss; Adam used to scale its float noise to
    learning-rate-sized steps (a common offset of every reward, seed by seed)."""
    rm, data = scalar_model
    config = IRLTrainConfig(loss=IRLLossConfig("logistic"), learning_rate=1e-2, batch_size=4,
                            num_seeds=2, epochs=2)
    result = train_irl(rm, data, data, config, progress=False)
    params = jax.device_get(result.state.params)
    for path in (LN_BIAS, HEAD_BIAS):
        initial = np.broadcast_to(_leaf(rm.params, path), _leaf(params, path).shape)
        np.testing.assert_array_equal(_leaf(params, path), initial, err_msg=path)
    assert result.history[-1]["train"]["pair_accuracy"] == [1.0, 1.0]  # it trained
    # The discriminator's biases have a real gradient and train.
    result = train_irl(rm, data, data, dataclasses.replace(
        config, loss=IRLLossConfig("discriminator")), progress=False)
    assert np.abs(_leaf(jax.device_get(result.state.params), HEAD_BIAS)).min() > 1e-4


def test_adam_eps_reaches_adam_and_is_checked(scalar_model):
    rm, data = scalar_model
    config = IRLTrainConfig(loss=IRLLossConfig("logistic"), learning_rate=1e-2, batch_size=4,
                            epochs=1)
    a = train_irl(rm, data, data, config, progress=False).test_rewards
    b = train_irl(rm, data, data, dataclasses.replace(config, adam_eps=1.0),
                  progress=False).test_rewards
    assert np.abs(a - b).max() > 1e-3  # ε = 1 shrinks every step
    for bad in (0.0, -1e-8, float("nan"), float("inf")):
        with pytest.raises(ConfigError, match="IRLTrainConfig.adam_eps must be finite and > 0"):
            IRLTrainConfig(adam_eps=bad)


def test_the_default_adam_eps_keeps_stage_keys_and_checkpoints(scalar_model, tmp_path):
    from jaxirl.pipeline.stages import config_hash
    from jaxirl.pipeline.study import PRESETS

    # The pipeline hashes the config's repr: the studies keep their IRL folders.
    assert "adam_eps" not in repr(IRLTrainConfig())
    assert "adam_eps=1e-06" in repr(IRLTrainConfig(adam_eps=1e-6))
    assert {name: config_hash({"irl": PRESETS[name].irl}) for name in ("default", "smoke")} == \
        {"default": "d760d7e4", "smoke": "8c78337e"}  # as before adam_eps existed
    # A checkpoint's settings hold adam_eps only when set: older ones resume.
    rm, data = scalar_model
    config = IRLTrainConfig(loss=IRLLossConfig("logistic"), learning_rate=1e-2, batch_size=4,
                            epochs=1)
    train_irl(rm, data, data, config, workdir=tmp_path, progress=False)
    more = train_irl(rm, data, data, dataclasses.replace(config, epochs=2), workdir=tmp_path,
                     resume=True, progress=False)
    assert int(more.state.epoch) == 2
    # "<unset>": the saved settings have no adam_eps, as a checkpoint from before it.
    with pytest.raises(CheckpointError, match=r"train.adam_eps <unset> → 1e-06"):
        train_irl(rm, data, data, dataclasses.replace(config, epochs=3, adam_eps=1e-6),
                  workdir=tmp_path, resume=True, progress=False)
