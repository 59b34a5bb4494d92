"""The PPO trainer's response rewards, frozen-trunk depth, data position and final checkpoint."""

import jax
import numpy as np
from tiny_setup import tiny_policy, tiny_tokenizer


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


def _trainer(**overrides):
    from tiny_setup import tiny_ppo_config, tiny_prompts, word_reward

    from jaxirl.ppo.trainer import PPOTrainer
    tokenizer = tiny_tokenizer()
    model, params = tiny_policy()
    trainer = PPOTrainer(model, tokenizer, word_reward, tiny_prompts(tokenizer),
                         tiny_ppo_config(**overrides))
    return trainer, trainer.init_state(params)


def test_data_position_counts_chunks():
    trainer, state = _trainer()
    (state, _), _, _ = trainer.rollout(state, jax.random.PRNGKey(0))
    assert int(state.data_position) == 2  # num_rollouts 8 / chunk_size 4


def test_last_iteration_is_always_checkpointed(tmp_path):
    from jaxirl.checkpoint import Checkpointer
    from jaxirl.ppo.trainer import train
    trainer, state = _trainer()
    train(trainer, state, 3, checkpoint_dir=tmp_path / "ck", save_every=2, progress=False)
    ck = Checkpointer(tmp_path / "ck")
    try:
        assert ck.latest_step() == 3
    finally:
        ck.close()
