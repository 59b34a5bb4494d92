"""A seed ensemble of saved reward models as one PPO reward (``ensemble:PATH``)."""

import json
import shutil

import jax
import numpy as np
import pytest
from tiny_setup import tiny_policy, tiny_tokenizer

from jaxirl.errors import CheckpointError, ConfigError, DataError
from jaxirl.irl.ensemble_reward import (
    RewardEnsemble,
    load_reward_ensemble,
    member_statistics,
    save_reward_ensemble,
)
from jaxirl.irl.reward_model import RewardModelConfig, init_reward_model, save_reward_model
from jaxirl.models import save_pretrained
from jaxirl.pipeline.reward_specs import make_ppo_reward, make_scorer

TEXTS = ["the cat sat on a mat", "bad dog", "good", "a dog ran on the mat awful bad"]
TRAIN = ["the dog", "a cat sat", "bad bad mat", "good dog ran", "the mat", "awful cat"]


@pytest.fixture(scope="module")
def members(tmp_path_factory):
    """Two saved reward models of different heads: the seeds of one method."""
    root = tmp_path_factory.mktemp("ensemble")
    model, params = tiny_policy(layers=2)
    save_pretrained(root / "lm", model.config, params, tokenizer=tiny_tokenizer())
    out = []
    for seed in (1, 2):
        rm = init_reward_model(RewardModelConfig(str(root / "lm"), num_layers_unfrozen=1,
                                                 head="scalar", max_length=16), seed=seed)
        noisy = jax.tree_util.tree_map(lambda x, s=seed: x + 0.02 * s * np.sign(x), rm.params)
        out.append(save_reward_model(root / "rms" / f"seed_{seed}", rm.with_params(noisy)))
    return root, out


def test_the_combination_by_hand():
    ens = RewardEnsemble([object(), object()], means=[1.0, -2.0], stds=[2.0, 0.5])
    scores = np.array([[3.0, 1.0], [-1.5, -2.5]])  # z = [[1, 0], [1, -1]]
    # mean std 1.25, mean mean -0.5: 1.25 * [1, -0.5] - 0.5
    np.testing.assert_allclose(ens.combine(scores), [0.75, -1.125])
    # One member, or identical ones: the ensemble is the member itself.
    same = RewardEnsemble([object()] * 3, means=[0.4] * 3, stds=[1.7] * 3)
    np.testing.assert_allclose(same.combine(np.tile([[2.0, -1.0, 0.3]], (3, 1))),
                               [2.0, -1.0, 0.3])


def test_saved_ensemble_scores_as_the_z_scored_mean_and_is_a_ppo_reward(members, tmp_path):
    root, folders = members
    from jaxirl.irl.reward_model import load_reward_model

    models = [load_reward_model(f) for f in folders]
    train = np.stack([m.score(TRAIN) for m in models])
    path = save_reward_ensemble(tmp_path / "ens", folders, train, extra={"method": "m"})
    blob = json.loads((path / "reward_ensemble.json").read_text())
    assert blob["method"] == "m" and blob["members"][0].startswith("..")

    mean, std = train.mean(1), train.std(1)
    r = np.stack([m.score(TEXTS) for m in models])
    want = std.mean() * ((r - mean[:, None]) / std[:, None]).mean(0) + mean.mean()
    ens = load_reward_ensemble(path)
    np.testing.assert_allclose(ens.score(TEXTS), want, rtol=1e-5, atol=1e-5)
    # Its ranking is the comparison's ensemble's (z-scored mean), whatever the units.
    assert np.array_equal(np.argsort(ens.score(TEXTS)),
                          np.argsort(((r - mean[:, None]) / std[:, None]).mean(0)))

    pinned = load_reward_ensemble(save_reward_ensemble(tmp_path / "pinned", folders, train,
                                                       target_std=0.25))
    assert np.std(pinned.combine(train)) == pytest.approx(0.25)
    np.testing.assert_allclose(np.corrcoef(pinned.score(TEXTS), ens.score(TEXTS))[0, 1], 1.0,
                               atol=1e-6)

    reward = make_ppo_reward(f"ensemble:{path}")
    np.testing.assert_allclose(reward(TEXTS[:2], TEXTS[2:]), want[:2] - want[2:], atol=1e-5)
    assert reward(TEXTS, None).dtype == np.float32
    np.testing.assert_allclose(make_scorer(f"ensemble:{path}").log_odds(TEXTS), want,
                               rtol=1e-5, atol=1e-5)


def test_a_moved_workdir_and_a_copied_ensemble_both_load(members, tmp_path):
    root, folders = members
    train = np.ones((2, 3)) * [[0.0], [1.0]] + np.arange(3)
    save_reward_ensemble(root / "ens", folders, train)
    moved = tmp_path / "moved"
    shutil.copytree(root, moved)  # the whole workdir: found by the relative path
    shutil.rmtree(root / "rms" / "seed_2")
    try:
        ens = load_reward_ensemble(moved / "ens")
        assert len(ens.members) == 2
        with pytest.raises(CheckpointError, match="member '../rms/seed_2'"):
            load_reward_ensemble(root / "ens")
    finally:
        shutil.copytree(moved / "rms" / "seed_2", root / "rms" / "seed_2")
    alone = tmp_path / "alone"
    shutil.copytree(root / "ens", alone)  # the folder alone: found by the absolute path
    assert len(load_reward_ensemble(alone).members) == 2


def test_bad_input_is_a_one_line_error(members, tmp_path):
    _, folders = members
    with pytest.raises(ConfigError, match="2 ensemble members but train_scores has 3 rows"):
        save_reward_ensemble(tmp_path / "e", folders, np.zeros((3, 4)))
    with pytest.raises(DataError, match="std > 0"):
        save_reward_ensemble(tmp_path / "e", folders, np.zeros((2, 4)))
    assert not (tmp_path / "e").exists()  # nothing written
    with pytest.raises(DataError, match=r"\[S, N >= 2\]"):
        member_statistics(np.zeros(5))
    with pytest.raises(CheckpointError, match="not a reward ensemble folder"):
        load_reward_ensemble(tmp_path)
    with pytest.raises(ConfigError, match="needs the folder of a saved reward ensemble"):
        make_ppo_reward("ensemble:")
    (tmp_path / "reward_ensemble.json").write_text("{not json")
    with pytest.raises(CheckpointError, match="malformed"):
        load_reward_ensemble(tmp_path)
