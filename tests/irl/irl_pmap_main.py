"""Run in a subprocess with N simulated CPU devices: max |Δparams| of an N-device vs 1-device epoch.

Six pairs in minibatches of 4 over 2 steps: the second minibatch holds two
weight-0 padding pairs, so under 4 devices two devices see no real pair and
the token-count re-weighting is exercised.
"""

import dataclasses
import sys
import tempfile

import jax
import numpy as np
from tiny_setup import tiny_policy, tiny_tokenizer

from jaxirl.irl.losses import IRLLossConfig
from jaxirl.irl.pairs import pair_data
from jaxirl.irl.reward_model import RewardModelConfig, init_reward_model
from jaxirl.irl.train import IRLTrainConfig, compile_epoch, epoch_order, init_state
from jaxirl.models import save_pretrained


def main():
    n = int(sys.argv[1])
    assert jax.device_count() == n, jax.device_count()
    folder = tempfile.mkdtemp()
    model, params = tiny_policy(layers=2)
    save_pretrained(folder, model.config, params, tokenizer=tiny_tokenizer())
    rm = init_reward_model(RewardModelConfig(folder, num_layers_unfrozen=1, max_length=16))
    expert = ["the cat sat good", "a dog ran nice", "the mat good", "a cat sat on a mat nice",
              "the dog good", "a cat ran nice"]
    base = [t.replace("good", "bad").replace("nice", "awful") for t in expert]
    data = pair_data(rm, expert, base, np.ones(6), -np.ones(6))
    config = IRLTrainConfig(loss=IRLLossConfig("max_margin", reward_l2=0.1), learning_rate=1e-2,
                            batch_size=4, num_seeds=2, epochs=1)
    state = init_state(rm, config)
    indices, weights = epoch_order(len(data), 0, config)
    features = jax.tree_util.tree_map(np.asarray, data.features)
    single, m1 = compile_epoch(rm, config)(state, features, indices, weights)
    multi_config = dataclasses.replace(config, num_devices=n)
    multi, mn = compile_epoch(rm, multi_config)(state, features, indices, weights)

    def maxabs(a, b):
        # The key bias shifts all attention logits of a query equally (softmax-invariant): its
        # gradient is float noise that Adam scales to lr-sized steps, so it is left out here
        # and the scores, which it cannot change, are compared instead.
        diffs = [float(np.max(np.abs(np.asarray(x) - np.asarray(y))))
                 for (path, x), y in zip(jax.tree_util.tree_leaves_with_path(a),
                                         jax.tree_util.tree_leaves(b), strict=True)
                 if "query_key_value" not in jax.tree_util.keystr(path)]
        return max(diffs)

    texts = expert + base
    scores = [rm.with_params(jax.tree_util.tree_map(lambda x, s=s: x[s], p.params)).score(texts)
              for p in (single, multi) for s in range(config.num_seeds)]
    scorediff = max(float(np.max(np.abs(scores[s] - scores[2 + s]))) for s in range(2))

    print(f"RESULT maxdiff={maxabs(single.params, multi.params):.3e} "
          f"moved={maxabs(single.params, state.params):.3e} "
          f"lossdiff={float(np.max(np.abs(m1['loss'] - mn['loss']))):.3e} "
          f"scorediff={scorediff:.3e}")


if __name__ == "__main__":
    main()
