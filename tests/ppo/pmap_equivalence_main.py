"""Run in a subprocess with N simulated CPU devices: prints max |Δparams| of N-device vs 1-device updates."""

import sys

import jax
import numpy as np
from tiny_setup import tiny_policy, tiny_ppo_config, tiny_prompts, tiny_tokenizer, word_reward

from jaxirl.ppo.trainer import PPOTrainer


def one_update(num_devices, rollout_state, rollout, key, trainer_args):
    trainer = PPOTrainer(*trainer_args, num_devices=num_devices)
    trainer.init_state(rollout_state.params)  # builds the (p)mapped update
    state = rollout_state
    if num_devices > 1:
        from flax import jax_utils

        rep = jax_utils.replicate(state, devices=jax.devices()[:num_devices])
        new, metrics = trainer._update(rep, rollout, key)
        return jax_utils.unreplicate(new), jax_utils.unreplicate(metrics)
    return trainer._update(state, rollout, key)


def main():
    n = int(sys.argv[1])
    assert jax.device_count() == n, jax.device_count()
    tokenizer = tiny_tokenizer()
    model, params = tiny_policy()
    config = tiny_ppo_config()
    args = (model, tokenizer, word_reward, tiny_prompts(tokenizer), config)
    trainer = PPOTrainer(*args, num_devices=1)
    state = trainer.init_state(params)
    (state, rollout), _, _ = trainer.rollout(state, jax.random.PRNGKey(1))
    key = jax.random.PRNGKey(2)
    single, m1 = one_update(1, state, rollout, key, args)
    multi, mn = one_update(n, state, rollout, key, args)
    diffs = jax.tree_util.tree_map(lambda a, b: float(np.max(np.abs(np.asarray(a) - np.asarray(b)))),
                                   single.params, multi.params)
    moved = jax.tree_util.tree_map(lambda a, b: float(np.max(np.abs(np.asarray(a) - np.asarray(b)))),
                                   single.params, state.params)
    print(f"RESULT maxdiff={max(jax.tree_util.tree_leaves(diffs)):.3e} "
          f"moved={max(jax.tree_util.tree_leaves(moved)):.3e} "
          f"loss1={float(m1['loss']):.6f} lossn={float(mn['loss']):.6f}")


if __name__ == "__main__":
    main()
