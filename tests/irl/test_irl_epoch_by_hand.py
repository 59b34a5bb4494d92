"""An IRL epoch's seed correlation and ensemble with faked rewards, by hand."""

import numpy as np
import pytest


def _fake_epoch(monkeypatch, threshold):
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
    record, _ = irl_train.evaluate_epoch(None, None, test,
                                         irl_train.IRLTrainConfig(num_seeds=s, threshold=threshold),
                                         train)
    return record, tr, te, true_te


def test_numeric_threshold_ensemble_uses_training_stats(monkeypatch):
    record, tr, te, true_te = _fake_epoch(monkeypatch, 0.0)
    assert record["seed_correlation_mean"] == pytest.approx(
        np.corrcoef(te)[~np.eye(3, dtype=bool)].mean())
    z = (te - tr.mean(1, keepdims=True)) / tr.std(1, keepdims=True)
    want = np.mean((z.mean(0) > 0) == (true_te > 0))
    assert record["ensemble"]["accuracy"] == pytest.approx(want)
