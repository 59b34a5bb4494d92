"""PPO's update from the rollout's frozen trunk against the same update recomputing it.

With ``num_layers_unfrozen = k`` the bottom blocks are frozen; jaxirl computes their
output once per rollout (``Rollout.trunk``) where trlx reruns them in every minibatch.
This times both updates on the same state and rollout (random weights of a named
shape, word prompts, ``benchmarks.bench_ppo``'s reward) and checks that they end at the
same params. No torch peer: ``bench_ppo --num_layers_unfrozen`` has one at small shapes;
at Pythia-410M shapes the torch side would take most of an hour on a CPU.

    python -m benchmarks.bench_frozen_trunk --shape=pythia-410m --num_layers_unfrozen=3
"""

from __future__ import annotations

import json
import time

from absl import app, flags

from benchmarks import common

FLAGS = flags.FLAGS


def run(shape: str, num_layers_unfrozen: int, repeats: int = 2, num_rollouts: int = 32,
        batch_size: int = 16, ppo_epochs: int = 2, prompt_len: int = 8) -> dict:
    """One result row: both update times, their ratio and the largest param difference."""
    import jax

    from benchmarks.bench_ppo import (
        ppo_config,
        random_prompts,
        trunk_ablation,
        word_reward,
        word_tokenizer,
    )
    from jaxirl.data.tokenization import tokenize_prompts
    from jaxirl.models.gpt_neox import GPTNeoXForCausalLM, init_params
    from jaxirl.ppo.trainer import PPOTrainer

    config = common.jaxirl_config(shape)
    model = GPTNeoXForCausalLM(config, with_value_head=True)
    params = init_params(config, jax.random.PRNGKey(0), with_value_head=True)
    tokenizer = word_tokenizer(config.vocab_size)
    prompts = tokenize_prompts(random_prompts(config.vocab_size, 2 * num_rollouts, prompt_len),
                               tokenizer, prompt_len, pad_to_multiple_of=1)
    cfg = ppo_config(num_layers_unfrozen=num_layers_unfrozen, num_rollouts=num_rollouts,
                     chunk_size=num_rollouts, batch_size=batch_size, ppo_epochs=ppo_epochs)
    trainer = PPOTrainer(model, tokenizer, word_reward, prompts, cfg)
    start = time.perf_counter()
    row = trunk_ablation(trainer, trainer.init_state(params), repeats)
    return {"benchmark": "frozen_trunk", "shape": shape, "layers": config.num_hidden_layers,
            "num_layers_unfrozen": num_layers_unfrozen, "num_rollouts": num_rollouts,
            "batch_size": batch_size, "ppo_epochs": ppo_epochs, "prompt_len": prompt_len,
            "max_new_tokens": cfg.max_new_tokens, **row,
            "wall_s": time.perf_counter() - start, **common.environment_info()}


def define_flags():
    flags.DEFINE_string("shape", "pythia-410m", "Model shape (benchmarks.common.SHAPES).")
    flags.DEFINE_integer("num_layers_unfrozen", 3, "Trainable top blocks (>= 0).")
    flags.DEFINE_integer("repeats", 2, "Timed repeats of each update (the median is reported).")
    flags.DEFINE_bool("one_core", False, "Pin to one core.")


def main(argv):
    del argv
    if FLAGS.one_core:
        common.pin_to_one_core()
    print(json.dumps(run(FLAGS.shape, FLAGS.num_layers_unfrozen, FLAGS.repeats), indent=1))


if __name__ == "__main__":
    define_flags()
    app.run(main)
