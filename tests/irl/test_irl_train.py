"""IRL training: loss goes down, held-out separation, vmapped seeds = separate seeds, resume."""

import json

import jax
import numpy as np
import pytest
from tiny_setup import tiny_policy, tiny_tokenizer

from jaxirl.errors import CheckpointError, ConfigError
from jaxirl.irl.losses import FailureConfig, IRLLossConfig
from jaxirl.irl.pairs import pair_data
from jaxirl.irl.reward_model import RewardModelConfig, init_reward_model, load_reward_model
from jaxirl.irl.train import (
    IRLTrainConfig,
    epoch_minibatches,
    init_state,
    make_train_step,
    train_irl,
)
from jaxirl.metrics_log import read_metrics
from jaxirl.models import save_pretrained

SUBJECTS = ["the cat", "a dog", "the dog", "a cat", "the mat"]
VERBS = ["sat on a mat", "ran", "sat", "ran on the mat"]
TEST_TEXTS = ["the cat sat good", "a dog ran bad", "the mat nice"]


def toy_texts(n, seed):
    """Expert texts end in good/nice, base texts in bad/awful: linearly separable."""
    rng = np.random.default_rng(seed)
    expert, base = [], []
    for _ in range(n):
        stem = f"{SUBJECTS[rng.integers(5)]} {VERBS[rng.integers(4)]}"
        expert.append(f"{stem} {['good', 'nice'][rng.integers(2)]}")
        base.append(f"{stem} {['bad', 'awful'][rng.integers(2)]}")
    return expert, base


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    folder = tmp_path_factory.mktemp("tiny_lm")
    model, params = tiny_policy(layers=2)
    save_pretrained(folder, model.config, params, tokenizer=tiny_tokenizer())
    out = {}
    for k in (0, 1):
        rm = init_reward_model(RewardModelConfig(str(folder), num_layers_unfrozen=k,
                                                 max_length=16))
        data = []
        for n, seed in ((10, 0), (6, 1)):
            e, b = toy_texts(n, seed)
            data.append(pair_data(rm, e, b, np.ones(n), -np.ones(n)))
        out[k] = (rm, *data)
    return out


def _batch(data, idx, s):
    batch = {k: np.stack([v[idx]] * s) for k, v in data.features.items()}
    batch["weights"] = np.ones((s, len(idx)), np.float32)
    return batch


@pytest.mark.parametrize("k,loss", [(0, IRLLossConfig("logistic")),
                                    (0, IRLLossConfig("max_margin", reward_l2=0.1)),
                                    (1, IRLLossConfig("hinge"))])
def test_one_step_reduces_the_loss(setup, k, loss):
    rm, train, _ = setup[k]
    config = IRLTrainConfig(loss=loss, learning_rate=1e-2, batch_size=10, num_seeds=2)
    step = jax.jit(make_train_step(rm, config))
    state = init_state(rm, config)
    batch = _batch(train, np.arange(10), 2)
    state, before = step(state, batch)
    _, after = step(state, batch)
    assert np.all(after["loss"] < before["loss"] - 1e-4), (before["loss"], after["loss"])
    assert before["loss"].shape == (2,)


def test_training_separates_held_out_pairs(setup):
    rm, train, test = setup[0]
    config = IRLTrainConfig(loss=IRLLossConfig("logistic"), learning_rate=3e-2, batch_size=2,
                            epochs=8, num_seeds=2, threshold="train_midpoint")
    result = train_irl(rm, train, test, config, progress=False)
    last = result.history[-1]
    assert [s["pairwise_accuracy"] for s in last["per_seed"]] == [1.0, 1.0]
    assert all(s["accuracy"] == 1.0 for s in last["per_seed"])
    assert last["spread"]["roc_auc"]["mean"] == 1.0
    assert -1.0 <= last["seed_correlation_mean"] <= 1.0 and "ensemble" in last
    assert result.test_rewards.shape == (2, 12)


@pytest.mark.parametrize("k", [0, 1])
def test_vmapped_seeds_equal_separately_trained_seeds(setup, k):
    rm, train, test = setup[k]
    common = dict(loss=IRLLossConfig("max_margin", reward_l2=0.01), learning_rate=1e-2,
                  batch_size=3, epochs=2)
    together = train_irl(rm, train, test, IRLTrainConfig(num_seeds=3, seed=5, **common),
                         progress=False)
    for s in range(3):
        alone = train_irl(rm, train, test, IRLTrainConfig(num_seeds=1, seed=5 + s, **common),
                          progress=False)
        got = jax.tree_util.tree_map(lambda x, s=s: np.asarray(x[s]), together.state.params)
        want = jax.tree_util.tree_map(lambda x: np.asarray(x[0]), alone.state.params)
        for (path, a), b in zip(jax.tree_util.tree_leaves_with_path(got),
                                jax.tree_util.tree_leaves(want), strict=True):
            # The key bias shifts every attention logit of a query equally (softmax-invariant):
            # its gradient is float noise, which Adam scales up to lr-sized steps.
            if "query_key_value" not in jax.tree_util.keystr(path):
                np.testing.assert_allclose(a, b, atol=1e-6, err_msg=jax.tree_util.keystr(path))
        np.testing.assert_allclose(rm.with_params(got).score(TEST_TEXTS),
                                   rm.with_params(want).score(TEST_TEXTS), atol=1e-5)
    heads = together.state.params["head"]["linear"]["kernel"]
    assert not np.allclose(heads[0], heads[1])  # the seeds really differ


def test_failure_aware_training_refreshes_failures_every_epoch(setup):
    rm, train, test = setup[0]
    common = dict(learning_rate=1e-2, batch_size=2, epochs=3, num_seeds=2)

    def run(loss):
        return train_irl(rm, train, test, IRLTrainConfig(loss=loss, **common), progress=False)

    fa = run(IRLLossConfig("fa_max_margin", failure=FailureConfig(tie_rule="margin")))
    shares = np.array([r["failures"]["failures"] for r in fa.history])  # [epochs, seeds]
    assert shares.shape == (3, 2)
    # Flags come from each epoch's starting reward: the untrained head ties every pair within
    # the margin γ = 1; as training separates the pairs, fewer stay failures.
    assert np.all(shares[0] == 1.0) and np.all(shares[-1] < shares[0])
    for r in fa.history:
        f = r["failures"]
        assert np.all(np.array(f["misclassified"]) <= np.array(f["failures"]))
        assert f["tie_threshold"] == [1.0, 1.0]
    # λ = 0 trains exactly like the base hinge loss.
    zero = run(IRLLossConfig("fa_max_margin", failure=FailureConfig(weight=0.0)))
    base = run(IRLLossConfig("hinge"))
    same = jax.tree_util.tree_map(np.array_equal, zero.state.params, base.state.params)
    assert all(jax.tree_util.tree_leaves(same))


def test_the_flattened_adam_takes_the_per_leaf_adam_steps():
    """make_optimizer runs Adam over one flat vector (speed); its steps are optax.adam's."""
    import jax.numpy as jnp
    import optax

    from jaxirl.irl.train import make_optimizer

    keys = iter(jax.random.split(jax.random.PRNGKey(0), 16))
    params = {"a": jax.random.normal(next(keys), (3, 4)), "b": {"c": jnp.ones(5), "d": jnp.zeros(())}}
    flat, leafwise = make_optimizer(1e-2), optax.adam(1e-2)
    s_flat, s_leaf = flat.init(params), leafwise.init(params)
    p_flat = p_leaf = params
    for _ in range(3):
        grads = jax.tree_util.tree_map(lambda x: jax.random.normal(next(keys), x.shape), params)
        u_flat, s_flat = flat.update(grads, s_flat, p_flat)
        u_leaf, s_leaf = leafwise.update(grads, s_leaf, p_leaf)
        p_flat, p_leaf = optax.apply_updates(p_flat, u_flat), optax.apply_updates(p_leaf, u_leaf)
        assert jax.tree_util.tree_structure(u_flat) == jax.tree_util.tree_structure(params)
    for x, y in zip(jax.tree_util.tree_leaves(p_flat), jax.tree_util.tree_leaves(p_leaf),
                    strict=True):
        np.testing.assert_allclose(x, y, rtol=1e-6, atol=1e-7)
    assert not np.allclose(p_flat["a"], params["a"])  # it moved


def test_epoch_minibatches_pad_with_weight_zero():
    config = IRLTrainConfig(batch_size=4, num_seeds=2, seed=3)
    idx, w = epoch_minibatches(10, 0, config)
    assert idx.shape == w.shape == (2, 3, 4)
    for s in range(2):
        real = idx[s].ravel()[w[s].ravel() > 0]
        assert sorted(real.tolist()) == list(range(10))
        np.testing.assert_array_equal(real, np.random.default_rng([3 + s, 0]).permutation(10))
    assert w[:, -1].tolist() == [[1, 1, 0, 0]] * 2


def test_resume_gives_identical_results(setup, tmp_path):
    rm, train, test = setup[1]
    common = dict(loss=IRLLossConfig("logistic"), learning_rate=1e-2, batch_size=4, num_seeds=2)
    full = train_irl(rm, train, test, IRLTrainConfig(epochs=3, **common), workdir=tmp_path / "a",
                     progress=False)
    train_irl(rm, train, test, IRLTrainConfig(epochs=1, **common), workdir=tmp_path / "b",
              progress=False)
    resumed = train_irl(rm, train, test, IRLTrainConfig(epochs=3, **common),
                        workdir=tmp_path / "b", resume=True, progress=False)
    assert int(resumed.state.epoch) == 3
    same = jax.tree_util.tree_map(np.array_equal, full.state.params, resumed.state.params)
    assert all(jax.tree_util.tree_leaves(same))

    def untimed(path):
        hist = json.loads((path / "irl_metrics.json").read_text())["history"]
        return [{k: v for k, v in r.items() if not k.startswith("time_")} for r in hist]

    assert untimed(tmp_path / "a") == untimed(tmp_path / "b")
    assert [r["epoch"] for r in untimed(tmp_path / "a")] == [1, 2, 3]

    def streamed(path):  # irl_metrics.jsonl: one line per epoch as it ends, step = epoch
        rows = read_metrics(path / "irl_metrics.jsonl")
        assert all(r["time"] > 0 and r["step"] == r["epoch"] for r in rows)
        return [{k: v for k, v in r.items() if not k.startswith("time") and k != "elapsed_s"
                 and k != "step"} for r in rows]

    assert streamed(tmp_path / "a") == streamed(tmp_path / "b") == untimed(tmp_path / "a")
    # Each seed's saved reward model scores like its slice of the trained params.
    loaded = load_reward_model(tmp_path / "a" / "reward_models" / "seed_1")
    seed1 = jax.tree_util.tree_map(lambda x: x[1], full.state.params)
    np.testing.assert_allclose(loaded.score(TEST_TEXTS), rm.with_params(seed1).score(TEST_TEXTS),
                               atol=1e-6)


def test_resume_with_other_settings_is_refused_but_more_epochs_continue(setup, tmp_path):
    # Another learning rate restores into the same tree: it used to continue silently.
    rm, train, test = setup[1]
    common = dict(loss=IRLLossConfig("logistic"), batch_size=4, num_seeds=2)
    train_irl(rm, train, test, IRLTrainConfig(epochs=1, learning_rate=1e-2, **common),
              workdir=tmp_path, progress=False)
    with pytest.raises(CheckpointError, match=r"was written with other settings "
                       r"\(train.learning_rate 0.01 → 0.001\)"):
        train_irl(rm, train, test, IRLTrainConfig(epochs=2, learning_rate=1e-3, **common),
                  workdir=tmp_path, resume=True, progress=False)
    more = train_irl(rm, train, test, IRLTrainConfig(epochs=2, learning_rate=1e-2, **common),
                     workdir=tmp_path, resume=True, progress=False)
    assert int(more.state.epoch) == 2


def test_logged_training_stats_weight_a_partial_minibatch_by_its_pairs(setup):
    # 10 pairs in minibatches of 4: 4 + 4 + 2. A learning rate of ~0 keeps the params, so
    # the logged pair accuracy must be the share over all 10 pairs (it was the mean of the
    # three steps' shares, the last 2 pairs weighing as much as 4).
    from jaxirl import parallel
    from jaxirl.irl.train import compile_epoch, pair_rewards, state_shardings

    rm, train, _ = setup[1]
    config = IRLTrainConfig(num_seeds=1, batch_size=4, learning_rate=1e-30)
    state = init_state(rm, config)
    r = pair_rewards(rm, state.params, train)[0]
    want = float(np.mean(r[:10] > r[10:]))
    mesh = parallel.make_mesh()
    idx, w = epoch_minibatches(len(train), 0, config)
    assert w.sum(-1).tolist() == [[4, 4, 2]]
    _, stats = compile_epoch(rm, config, mesh)(
        parallel.place(state, state_shardings(rm, config, mesh)),
        parallel.replicate(mesh, train.features), idx, w)
    assert float(np.asarray(stats["pair_accuracy"])[0]) == pytest.approx(want)


def _fake_epoch(monkeypatch, threshold):
    """An epoch's record when every seed recovers the truth up to its own scale and offset,
    and the held-out texts are less toxic than the training ones."""
    import jaxirl.irl.train as irl_train
    from jaxirl.irl.pairs import PairData

    rng = np.random.default_rng(0)
    s, p = 3, 200
    true_tr, true_te = rng.normal(size=2 * p), rng.normal(0.8, 1.0, size=2 * p)
    scale, offset = np.array([1.0, 5.0, 0.3])[:, None], np.array([0.0, 2.0, -1.0])[:, None]
    tr = scale * (true_tr + 0.3 * rng.normal(size=(s, 2 * p))) + offset
    te = scale * (true_te + 0.3 * rng.normal(size=(s, 2 * p))) + offset
    train = PairData({}, true_tr[:p], true_tr[p:])
    test = PairData({}, true_te[:p], true_te[p:])
    monkeypatch.setattr(irl_train, "pair_rewards",
                        lambda model, params, pairs, *a, **k: tr if pairs is train else te)
    record, _ = irl_train.evaluate_epoch(
        None, None, test, IRLTrainConfig(num_seeds=s, threshold=threshold), train)
    return record, tr, te, true_te


def test_epoch_ensemble_is_standardised_and_cut_on_training_texts(monkeypatch):
    # Standardised on the held-out texts themselves, the ensemble cut them near their own
    # mean (accuracy 0.69); on the training texts' statistics and midpoint it is as good
    # as its seeds.
    record, _, _, _ = _fake_epoch(monkeypatch, "train_midpoint")
    seeds = [r["accuracy"] for r in record["per_seed"]]
    assert min(seeds) > 0.9
    assert record["ensemble"]["accuracy"] >= min(seeds) - 0.01


def test_numeric_threshold_ensemble_uses_training_stats(monkeypatch):
    record, tr, te, true_te = _fake_epoch(monkeypatch, 0.0)
    assert record["seed_correlation_mean"] == pytest.approx(
        np.corrcoef(te)[~np.eye(3, dtype=bool)].mean())
    z = (te - tr.mean(1, keepdims=True)) / tr.std(1, keepdims=True)
    want = np.mean((z.mean(0) > 0) == (true_te > 0))
    assert record["ensemble"]["accuracy"] == pytest.approx(want)


def test_bad_settings_are_one_line_errors():
    # Library names, not a launcher's flags; 0 is a valid seed.
    with pytest.raises(ConfigError, match=r"IRLTrainConfig.learning_rate must be > 0, got 0.0"):
        IRLTrainConfig(learning_rate=0.0)
    with pytest.raises(ConfigError, match=r"IRLTrainConfig.num_seeds must be >= 1, got 0"):
        IRLTrainConfig(num_seeds=0)
    with pytest.raises(ConfigError, match=r"IRLTrainConfig.seed must be >= 0, got -5"):
        IRLTrainConfig(seed=-5)
    IRLTrainConfig(seed=0)
    with pytest.raises(ConfigError, match="IRLTrainConfig.threshold"):
        IRLTrainConfig(threshold="mean")
