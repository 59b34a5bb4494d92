"""The methods stage's deployable rewards: a compared method's seeds saved as reward models
from its last checkpoint, without training again, scoring as the comparison did."""

import numpy as np
from tiny_setup import tiny_policy, tiny_tokenizer

from jaxirl.irl.losses import IRLLossConfig
from jaxirl.irl.reward_model import RewardModelConfig, load_reward_model
from jaxirl.irl.train import IRLTrainConfig
from jaxirl.models import save_pretrained
from jaxirl.pipeline.methods import MethodSpec, irl_reward_models, irl_rewards


def _split(n, seed):
    rng = np.random.default_rng(seed)
    stems = [f"{['the cat', 'a dog', 'the mat'][rng.integers(3)]} {['sat', 'ran'][rng.integers(2)]}"
             for _ in range(n)]
    return {"expert_text": [f"{s} good" for s in stems], "base_text": [f"{s} bad" for s in stems],
            "expert_true_reward": list(np.ones(n)), "base_true_reward": list(-np.ones(n))}


def test_saved_seeds_come_from_the_last_checkpoint_and_score_as_compared(tmp_path):
    model, params = tiny_policy(layers=2)
    save_pretrained(tmp_path / "lm", model.config, params, tokenizer=tiny_tokenizer())
    rm_config = RewardModelConfig(str(tmp_path / "lm"), num_layers_unfrozen=1, max_length=16)
    irl = IRLTrainConfig(batch_size=4, epochs=2, num_seeds=2, seed=3, learning_rate=1e-3)
    spec = MethodSpec("max_margin", IRLLossConfig("max_margin"), learning_rate=1e-3, epochs=2)
    data = {"train": _split(8, 0), "test": _split(4, 1)}
    folder = tmp_path / "max_margin"

    rewards = irl_rewards(spec, rm_config, irl, data, folder)
    assert not (folder / "reward_models").exists()  # the comparison keeps only rewards
    history = (folder / "irl_metrics.jsonl").read_text()
    paths = irl_reward_models(spec, rm_config, irl, data, folder)
    assert [p.name for p in paths] == ["seed_3", "seed_4"]
    assert (folder / "irl_metrics.jsonl").read_text() == history  # no epoch ran again
    test_texts = data["test"]["expert_text"] + data["test"]["base_text"]
    for s, path in enumerate(paths):
        np.testing.assert_allclose(load_reward_model(path).score(test_texts),
                                   rewards["test"][s], rtol=1e-4, atol=1e-4)
    assert irl_reward_models(spec, rm_config, irl, data, folder) == paths  # cached
