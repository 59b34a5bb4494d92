"""The evaluate stage's summary, from IRL outputs written by hand."""

import json

import datasets
import numpy as np
import pytest

from jaxirl.irl.demos import save_demos
from jaxirl.report.irl_summary import summarize_irl

SEEDS, TRAIN, TEST, EPOCHS = 2, 8, 6, 3


def _split(rng, n, prefix):
    expert = rng.normal(1.0, 1.0, n)
    return datasets.Dataset.from_dict({
        "prompt": [f"{prefix} prompt {i}" for i in range(n)],
        "expert_text": [f"{prefix} kind {i}" for i in range(n)],
        "base_text": [f"{prefix} rude {i}" for i in range(n)],
        "expert_true_reward": expert.tolist(),
        "base_true_reward": (expert - rng.uniform(0.5, 2.0, n)).tolist()})


@pytest.fixture
def irl_outputs(tmp_path):
    rng = np.random.default_rng(0)
    save_demos(datasets.DatasetDict({"train": _split(rng, TRAIN, "a"),
                                     "test": _split(rng, TEST, "b")}), tmp_path / "demos")
    np.save(tmp_path / "test.npy", rng.normal(size=(SEEDS, 2 * TEST)))
    np.save(tmp_path / "train.npy", rng.normal(size=(SEEDS, 2 * TRAIN)))
    history = [{"per_seed": [{"accuracy": 0.5 + 0.1 * e}] * SEEDS, "spread": {},
                "time_train_s": 1.0} for e in range(EPOCHS)]
    (tmp_path / "metrics.json").write_text(json.dumps(
        {"history": history, "train_config": {"loss": "max_margin"}}))
    (tmp_path / "epoch0.json").write_text(json.dumps({"per_seed": [{"accuracy": 0.5}] * SEEDS}))
    return tmp_path


def _summary(folder, epoch0):
    return summarize_irl(str(folder / "metrics.json"), str(folder / "demos"),
                         str(folder / "test.npy"), str(folder / "train.npy"), epoch0,
                         n_resamples=50)


def test_epoch_numbers_start_at_zero_only_with_the_untrained_point(irl_outputs):
    with_start = _summary(irl_outputs, str(irl_outputs / "epoch0.json"))
    assert with_start["per_epoch_starts_at"] == 0
    assert all(len(curve) == EPOCHS + 1 for curve in with_start["per_epoch"])
    # A folder without epoch0.json: the curves hold the trained epochs 1..N only.
    missing = _summary(irl_outputs, str(irl_outputs / "absent.json"))
    assert missing["per_epoch_starts_at"] == 1
    assert all(len(curve) == EPOCHS for curve in missing["per_epoch"])
    assert _summary(irl_outputs, None)["per_epoch_starts_at"] == 1
