"""The interpretability stage trains its SAEs in threads: same SAEs as one after the other."""

import os

import jax
import numpy as np
import pytest

from jaxirl.interp.sae import SAEConfig, train_sae
from jaxirl.metrics_log import MetricsLog
from jaxirl.pipeline.interp_stage import _train_in_threads


def test_saes_trained_in_threads_equal_the_sequential_ones():
    rng = np.random.default_rng(0)
    acts = {layer: rng.standard_normal((512, 8)).astype(np.float32) for layer in (0, 1)}
    jobs = [(m, layer) for m in (1, 4) for layer in (0, 1)]
    started = []

    def train_one(job, bar):
        started.append(job)
        multiple, layer = job
        sae, _ = train_sae(acts[layer], SAEConfig(dict_multiple=multiple, num_epochs=2,
                                                  batch_size=64, seed=layer))
        return sae

    one = _train_in_threads(jobs, train_one, 1, progress=False)
    assert started == jobs
    started.clear()
    two = _train_in_threads(jobs, train_one, 2, progress=False)
    assert sorted(started) == sorted(jobs) and started[:2] == [(4, 0), (4, 1)]  # largest first
    assert set(two) == set(jobs)
    for job in jobs:
        for a, b in zip(jax.tree_util.tree_leaves(one[job]), jax.tree_util.tree_leaves(two[job]),
                        strict=True):
            np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_a_tensorboard_folder_made_by_another_writer_meanwhile_is_no_error(tmp_path, monkeypatch):
    """SAE threads start their writers together: tensorboardX checks that the folder is
    missing, then creates it, and a second writer could create it in between."""
    event_file_writer = pytest.importorskip("tensorboardX.event_file_writer")
    real_makedirs = os.makedirs

    def another_writer_was_first(path, *args, **kwargs):
        real_makedirs(path, exist_ok=True)
        real_makedirs(path, *args, **kwargs)  # FileExistsError, as in the race

    monkeypatch.setattr(event_file_writer.os, "makedirs", another_writer_was_first)
    with MetricsLog(tmp_path / "run" / "m.jsonl", tensorboard=True,
                    tensorboard_dir=tmp_path / "tb") as log:
        log.write(1, {"loss": 1.0})
    assert len(list((tmp_path / "tb").iterdir())) == 1
