"""PPO trainer: pmap equivalence, frozen layers, shared reference, resume."""

import json
import os
import pathlib
import re
import subprocess
import sys

import jax
import numpy as np
import pytest
from tiny_setup import tiny_policy, tiny_ppo_config, tiny_prompts, tiny_tokenizer, word_reward

from jaxirl.errors import ConfigError
from jaxirl.ppo.trainer import PPOTrainer, train

HERE = pathlib.Path(__file__).parent


def _run_pmap_check(n):
    env = dict(os.environ, XLA_FLAGS=f"--xla_force_host_platform_device_count={n}",
               PYTHONPATH=os.pathsep.join([str(HERE.parent), str(HERE.parent.parent)]))
    out = subprocess.run([sys.executable, str(HERE / "pmap_equivalence_main.py"), str(n)],
                         capture_output=True, text=True, env=env, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    m = re.search(r"RESULT maxdiff=(\S+) moved=(\S+)", out.stdout)
    return float(m.group(1)), float(m.group(2))


@pytest.mark.parametrize("n", [4, pytest.param(2, marks=pytest.mark.slow)])
def test_pmap_update_matches_single_device(n):
    maxdiff, moved = _run_pmap_check(n)
    assert moved > 1e-4  # the update really changed the params
    assert maxdiff <= 1e-5


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
