"""Run with N simulated CPU devices: every stage on each given mesh against one device.

    XLA_FLAGS=--xla_force_host_platform_device_count=8 python equality_main.py data=2 data=2,fsdp=4

Prints one ``RESULT <json>`` line per mesh with the largest differences from the
one-device run of the same global batch: PPO experience (rollout buffer and stats)
and update (params and metrics), rollout tokens (must be identical), an IRL epoch
(and two of a scalar head, whose reward-shifting biases must not drift), an SAE epoch
and activation capture; and, under FSDP, the per-device shard shapes of a parameter
and its Adam moment.
"""

import json
import sys
import tempfile

import jax
import numpy as np
from tiny_setup import tiny_policy, tiny_ppo_config, tiny_prompts, tiny_tokenizer, word_reward

from jaxirl import parallel
from jaxirl.checkpoint import Checkpointer
from jaxirl.interp import sae as sae_lib
from jaxirl.interp.activations import capture_mlp_activations
from jaxirl.irl.losses import IRLLossConfig
from jaxirl.irl.pairs import pair_data
from jaxirl.irl.reward_model import RewardModelConfig, init_reward_model
from jaxirl.irl.train import (
    IRLTrainConfig,
    compile_epoch,
    epoch_minibatches,
    init_state,
    state_shardings,
)
from jaxirl.models import save_pretrained
from jaxirl.ppo.trainer import PPOTrainer

QKV = "query_key_value"


def maxdiff(a, b, skip_key_bias: bool = False) -> float:
    """Largest |a - b| over the leaves of two pytrees (host copies).

    With ``skip_key_bias`` the attention's fused QKV bias is left out: its key part
    shifts every score of a query equally, so its gradient is float noise that Adam
    scales to learning-rate-sized steps (the scores it feeds are compared instead).
    """
    a, b = parallel.to_host(a), parallel.to_host(b)
    diffs = [float(np.max(np.abs(np.asarray(x, np.float64) - np.asarray(y, np.float64))))
             for (path, x), y in zip(jax.tree_util.tree_leaves_with_path(a),
                                     jax.tree_util.tree_leaves(b), strict=True)
             if not (skip_key_bias and QKV in jax.tree_util.keystr(path)
                     and "bias" in jax.tree_util.keystr(path))]
    return max(diffs, default=0.0)


def ppo(mesh):
    tokenizer = tiny_tokenizer()
    model, params = tiny_policy()
    # Prompts padded to 8 columns, trimmed to the 4 the longest needs (prompt_bucket 2):
    # the sharded rollout and update run the trimmed width.
    prompts = tiny_prompts(tokenizer, pad_to_multiple_of=8)
    trainer = PPOTrainer(model, tokenizer, word_reward, prompts,
                         tiny_ppo_config(batch_size=8, num_rollouts=16, chunk_size=8,
                                         prompt_bucket=2), mesh)
    state = trainer.init_state(params)
    (state, rollout), stats, texts = trainer.rollout(state, jax.random.PRNGKey(1))
    before = parallel.to_host(state)
    new, metrics = trainer.update(state, rollout, jax.random.PRNGKey(2))
    return {"before": before, "rollout": parallel.to_host(rollout), "stats": parallel.to_host(stats),
            "texts": texts, "after": parallel.to_host(new.params),
            "metrics": parallel.to_host(metrics), "state": new}


def irl(mesh, folder):
    rm = init_reward_model(RewardModelConfig(folder, num_layers_unfrozen=1, max_length=16))
    expert = ["the cat sat good", "a dog ran nice", "the mat good", "a cat sat on a mat nice",
              "the dog good", "a cat ran nice"] * 2
    base = [t.replace("good", "bad").replace("nice", "awful") for t in expert]
    # 12 pairs in minibatches of 8: the second one holds 4 weight-0 padding pairs.
    data = pair_data(rm, expert, base, np.ones(12), -np.ones(12), mesh=mesh)
    config = IRLTrainConfig(loss=IRLLossConfig("max_margin", reward_l2=0.1),
                            learning_rate=1e-2, batch_size=8, num_seeds=2, epochs=1)
    state = parallel.place(init_state(rm, config), state_shardings(rm, config, mesh))
    indices, weights = epoch_minibatches(len(data), 0, config)
    features = parallel.replicate(mesh, data.features)
    new, metrics = compile_epoch(rm, config, mesh)(state, features, indices, weights)
    params = parallel.to_host(new.params)
    scores = [rm.with_params(jax.tree_util.tree_map(lambda x, s=s: x[s], params)).score(
        expert + base) for s in range(config.num_seeds)]
    return {"features": data.features, "params": params, "metrics": parallel.to_host(metrics),
            "scores": np.stack(scores), "initial": parallel.to_host(state.params)}


def irl_scalar(mesh, folder):
    """A scalar head (Linear(H -> 1) with a bias) under the logistic loss, top block and
    final layer norm trained: the head's and the final norm's biases only shift every
    reward, so their gradient is 0 and they must stay put on every mesh (float noise of the
    N-device reduction, scaled by Adam, used to move them by about the learning rate).

    Compiled with XLA's full optimisation, as a run is (the suite's reduced passes sum
    those gradients to exactly 0 on every mesh, which would hide the drift)."""
    before = jax.config.read("jax_disable_most_optimizations")
    jax.config.update("jax_disable_most_optimizations", False)
    try:
        return _irl_scalar(mesh, folder)
    finally:
        jax.config.update("jax_disable_most_optimizations", before)


def _irl_scalar(mesh, folder):
    rm = init_reward_model(RewardModelConfig(folder, num_layers_unfrozen=1, max_length=16,
                                             head="scalar"))
    expert = ["the cat sat good", "a dog ran nice", "the mat good", "a cat sat on a mat nice",
              "the dog good", "a cat ran nice"] * 2
    base = [t.replace("good", "bad").replace("nice", "awful") for t in expert]
    data = pair_data(rm, expert, base, np.ones(12), -np.ones(12), mesh=mesh)
    config = IRLTrainConfig(loss=IRLLossConfig("logistic"), learning_rate=1e-2, batch_size=8,
                            num_seeds=2, epochs=2)
    state = parallel.place(init_state(rm, config), state_shardings(rm, config, mesh))
    initial = parallel.to_host(state.params)
    features = parallel.replicate(mesh, data.features)
    run = compile_epoch(rm, config, mesh)
    for epoch in range(config.epochs):
        indices, weights = epoch_minibatches(len(data), epoch, config)
        state, _ = run(state, features, indices, weights)
    params = parallel.to_host(state.params)
    scores = [rm.with_params(jax.tree_util.tree_map(lambda x, s=s: x[s], params)).score(
        expert + base) for s in range(config.num_seeds)]
    return {"params": params, "scores": np.stack(scores), "initial": initial}


def sae(mesh):
    rng = np.random.default_rng(0)
    x = (rng.normal(size=(512, 16)) * rng.uniform(0.5, 2, 16) + 1.0).astype(np.float32)
    cfg = sae_lib.SAEConfig(dict_multiple=2, batch_size=128, num_epochs=2, l1_coef=0.05,
                            learning_rate=3e-3)
    trained, history = sae_lib.train_sae(x, cfg, mesh=mesh)
    # Killed after epoch 1's save and resumed from it, on the same mesh.
    ckpt = Checkpointer(tempfile.mkdtemp(), max_to_keep=1)

    class Killed(Exception):
        pass

    class KillInEpoch2:
        def write(self, step, metrics):
            if step == 2:
                raise Killed

    try:
        sae_lib.train_sae(x, cfg, mesh=mesh, metrics_log=KillInEpoch2(), checkpointer=ckpt,
                          checkpoint_every_s=0.0)
    except Killed:
        pass
    assert ckpt.latest_step() == 1
    resumed, _ = sae_lib.train_sae(x, cfg, mesh=mesh, checkpointer=ckpt)
    return {"params": trained.params, "loss": np.asarray(history["loss"]),
            "resumed": resumed.params}


def capture(mesh):
    tokenizer = tiny_tokenizer()
    model, params = tiny_policy()
    prompts = tiny_prompts(tokenizer)
    lm = model.clone(with_value_head=False)
    lm_params = {k: v for k, v in params.items() if k != "value_head"}
    cap = capture_mlp_activations(lm, lm_params, prompts.input_ids, prompts.attention_mask,
                                  [0, 2], batch_size=6, mesh=mesh)
    return cap.activations


def shard_shapes(state) -> dict:
    """Per-device shard shapes of the top block's QKV kernel (it trains) and of its Adam moment."""
    kernel = state.params["layers_2"]["attention"][QKV]["kernel"]
    leaves = jax.tree_util.tree_leaves_with_path(state.opt_state)
    mu = next(x for p, x in leaves if all(
        part in jax.tree_util.keystr(p) for part in (".mu", "layers_2", QKV, "kernel")))
    return {"global": list(kernel.shape),
            "kernel": sorted({tuple(s.data.shape) for s in kernel.addressable_shards}),
            "adam_mu": sorted({tuple(s.data.shape) for s in mu.addressable_shards}),
            "devices": len(kernel.addressable_shards)}


def main():
    meshes = [parallel.MeshConfig.parse(arg) for arg in sys.argv[1:]]
    folder = tempfile.mkdtemp()
    model, params = tiny_policy(layers=2)
    save_pretrained(folder, model.config, params, tokenizer=tiny_tokenizer())
    one = parallel.make_mesh()
    ref = {"ppo": ppo(one), "irl": irl(one, folder), "sae": sae(one), "capture": capture(one),
           "irl_scalar": irl_scalar(one, folder)}
    for config in meshes:
        mesh = parallel.make_mesh(config)
        out = {"ppo": ppo(mesh), "irl": irl(mesh, folder), "sae": sae(mesh),
               "capture": capture(mesh), "irl_scalar": irl_scalar(mesh, folder)}
        p, r = out["ppo"], ref["ppo"]
        result = {
            "mesh": str(config),
            "tokens_equal": bool(np.array_equal(p["rollout"].sequences, r["rollout"].sequences)),
            "texts_equal": p["texts"] == r["texts"],
            "prompt_width": int(p["rollout"].sequences.shape[1] - p["rollout"].logprobs.shape[1]),
            "experience": maxdiff(p["rollout"], r["rollout"]),
            "experience_stats": maxdiff(p["stats"], r["stats"]),
            "update_params": maxdiff(p["after"], r["after"], skip_key_bias=True),
            "update_metrics": maxdiff(p["metrics"], r["metrics"]),
            "update_moved": maxdiff(r["after"], r["before"].params, skip_key_bias=True),
            "irl_features": maxdiff(out["irl"]["features"], ref["irl"]["features"]),
            "irl_params": maxdiff(out["irl"]["params"], ref["irl"]["params"], skip_key_bias=True),
            "irl_metrics": maxdiff(out["irl"]["metrics"], ref["irl"]["metrics"]),
            "irl_scores": maxdiff(out["irl"]["scores"], ref["irl"]["scores"]),
            "irl_moved": maxdiff(ref["irl"]["params"], ref["irl"]["initial"], skip_key_bias=True),
            "irl_scalar_params": maxdiff(out["irl_scalar"]["params"], ref["irl_scalar"]["params"],
                                         skip_key_bias=True),
            "irl_scalar_scores": maxdiff(out["irl_scalar"]["scores"], ref["irl_scalar"]["scores"]),
            "irl_scalar_moved": maxdiff(ref["irl_scalar"]["params"], ref["irl_scalar"]["initial"],
                                        skip_key_bias=True),
            "sae_params": maxdiff(out["sae"]["params"], ref["sae"]["params"]),
            "sae_loss": maxdiff(out["sae"]["loss"], ref["sae"]["loss"]),
            "sae_resumed": maxdiff(out["sae"]["resumed"], ref["sae"]["params"]),
            "sae_resumed_same_mesh": maxdiff(out["sae"]["resumed"], out["sae"]["params"]),
            "capture": maxdiff(out["capture"], ref["capture"]),
            "shards": shard_shapes(p["state"]),
        }
        print("RESULT " + json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
