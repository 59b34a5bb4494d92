"""SAE checkpoints: a killed training run continues to the uninterrupted result, a finished
one is read back without training, and a checkpoint of other data or settings is refused.
The interpretability stage keeps one per SAE, so a stage killed after its SAEs reruns none."""

import threading

import jax
import numpy as np
import pytest

from jaxirl.checkpoint import Checkpointer
from jaxirl.errors import CheckpointError
from jaxirl.interp.sae import SAEConfig, train_sae
from jaxirl.metrics_log import MetricsLog, read_metrics

CONFIG = SAEConfig(dict_multiple=2, batch_size=32, num_epochs=4, learning_rate=1e-2, seed=3)


class Killed(Exception):
    """Stands for the process dying right after an epoch's metrics line."""


class KillAfter:
    """A metrics log that raises after the line of epoch ``step`` (or never)."""

    def __init__(self, step=None):
        self.step, self.rows = step, []

    def write(self, step, metrics):
        self.rows.append((step, metrics))
        if step == self.step:
            raise Killed


@pytest.fixture(scope="module")
def activations():
    rng = np.random.default_rng(0)
    return rng.normal(size=(200, 8)).astype(np.float32), rng.normal(size=(40, 8)).astype(
        np.float32)


@pytest.fixture(scope="module")
def uninterrupted(activations):
    log = KillAfter()
    sae, history = train_sae(activations[0], CONFIG, activations[1], metrics_log=log)
    return sae, history, log.rows


def _same(a, b):
    for x, y in zip(jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b), strict=True):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


def test_a_run_killed_mid_training_resumes_to_the_uninterrupted_result(
        activations, uninterrupted, tmp_path):
    ckpt = Checkpointer(tmp_path / "ck", max_to_keep=1)
    with pytest.raises(Killed):
        train_sae(activations[0], CONFIG, activations[1], metrics_log=KillAfter(3),
                  checkpointer=ckpt, checkpoint_every_s=0.0)
    # The kill came after epoch 3's metrics line, before its save.
    assert ckpt.latest_step() == 2
    log = KillAfter()
    sae, history = train_sae(activations[0], CONFIG, activations[1], metrics_log=log,
                             checkpointer=ckpt, checkpoint_every_s=0.0)
    ref_sae, ref_history, ref_rows = uninterrupted
    _same(sae, ref_sae)
    # The resumed call trains epochs 3 and 4, and returns every epoch's history.
    assert log.rows == ref_rows[2:]
    for key in ("loss", "recon", "mse", "l1", "l0"):
        assert history[key] == ref_history[key], key
    assert history["eval"] == ref_history["eval"]
    assert ckpt.latest_step() == CONFIG.num_epochs


def test_a_finished_sae_is_read_back_without_training(activations, uninterrupted, tmp_path):
    ckpt = Checkpointer(tmp_path / "ck", max_to_keep=1)
    first = train_sae(activations[0], CONFIG, activations[1], checkpointer=ckpt)
    # With saves at most once a minute, the last epoch's is the only one.
    assert sorted(p.name for p in ckpt.directory.iterdir() if p.name.isdigit()) == ["4"]
    log = KillAfter()
    sae, history = train_sae(activations[0], CONFIG, activations[1], metrics_log=log,
                             checkpointer=ckpt)
    assert log.rows == []
    _same(sae, uninterrupted[0])
    _same(first[0], sae)
    assert history["loss"] == uninterrupted[1]["loss"]


@pytest.mark.parametrize(("every_s", "saves"), [(0.0, [1, 2, 3, 4]), (60.0, [4])])
def test_saves_follow_the_interval(activations, tmp_path, monkeypatch, every_s, saves):
    saved = []
    ckpt = Checkpointer(tmp_path / "ck", max_to_keep=1)
    real = ckpt.save
    monkeypatch.setattr(ckpt, "save", lambda step, *a, **k: saved.append(step) or real(step, *a,
                                                                                        **k))
    train_sae(activations[0], CONFIG, checkpointer=ckpt, checkpoint_every_s=every_s)
    assert saved == saves


@pytest.mark.parametrize("change", ["data", "config"])
def test_a_checkpoint_of_other_data_or_settings_is_refused(activations, tmp_path, change):
    ckpt = Checkpointer(tmp_path / "ck", max_to_keep=1)
    train_sae(activations[0], CONFIG, checkpointer=ckpt)
    x, config = activations[0], CONFIG
    if change == "data":
        x = x.copy()
        x[0, 0] += 1.0
    else:
        config = SAEConfig(**{**CONFIG.__dict__, "l1_coef": 0.01})
    with pytest.raises(CheckpointError, match="other settings") as err:
        train_sae(x, config, checkpointer=ckpt)
    assert ("activations" if change == "data" else "l1_coef") in str(err.value)


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    from interp_texts import save_base_and_tuned

    root = tmp_path_factory.mktemp("sae_resume_models")
    save_base_and_tuned(root)
    return root


def _run_stage(models, out):
    from interp_texts import synthetic_texts

    from jaxirl.interp import InterpConfig
    from jaxirl.pipeline import interp_stage
    from jaxirl.rewards import make_scorer

    texts = synthetic_texts(60, 4)
    config = InterpConfig(num_layers=1, dict_multiples=(1, 2), max_tokens=16, top_k_contexts=3,
                          sae=SAEConfig(num_epochs=3, batch_size=64))
    return interp_stage.run_interp(config, out, models / "base", models / "tuned", texts[:48],
                                   texts[48:], make_scorer("profanity"), progress=False)


def test_the_stage_killed_after_its_saes_reruns_none_of_them(models, tmp_path, monkeypatch):
    """A kill in the IRM fit, after every SAE finished: the rerun reads each SAE back (no
    epoch trains again), and every file equals an uninterrupted run's."""
    from jaxirl.pipeline import interp_stage

    expected = _run_stage(models, tmp_path / "whole")
    fit = interp_stage.fit_implicit_reward_model

    def killed(*args, **kwargs):
        raise Killed

    monkeypatch.setattr(interp_stage, "fit_implicit_reward_model", killed)
    with pytest.raises(Killed):
        _run_stage(models, tmp_path / "killed")
    monkeypatch.setattr(interp_stage, "fit_implicit_reward_model", fit)
    trained = []
    real_write = MetricsLog.write
    monkeypatch.setattr(MetricsLog, "write",
                        lambda self, step, m: trained.append(step) or real_write(self, step, m))
    np.testing.assert_equal(_run_stage(models, tmp_path / "killed"), expected)  # NaN == NaN
    assert trained == []
    for name in ("sae_layer1_x1", "sae_layer1_x2"):
        rows = read_metrics(tmp_path / "killed" / name / "train_metrics.jsonl")
        assert [r["step"] for r in rows] == [1, 2, 3], name
        for f in ("sae_weights.safetensors", "cfg.json"):
            assert (tmp_path / "killed" / name / f).read_bytes() == \
                (tmp_path / "whole" / name / f).read_bytes(), (name, f)
    for f in ("interp_results.json", "interp_tables.md"):
        assert (tmp_path / "killed" / f).read_text() == (tmp_path / "whole" / f).read_text(), f


def test_a_kill_before_an_sae_checkpoint_leaves_one_curve_per_sae(models, tmp_path,
                                                                   monkeypatch):
    """Killed in an SAE's second epoch (before its first save): the rerun trains it from
    the start, and TensorBoard shows each epoch once, not the killed attempt's too."""
    pytest.importorskip("tensorboardX")
    event_accumulator = pytest.importorskip(
        "tensorboard.backend.event_processing.event_accumulator")
    real_write = MetricsLog.write

    def dies_in_epoch_2(self, step, metrics):
        row = real_write(self, step, {**metrics, "loss": 99.0})
        if step == 2:
            raise Killed
        return row

    monkeypatch.setattr(MetricsLog, "write", dies_in_epoch_2)
    out = tmp_path / "stage"
    with pytest.raises(Killed):
        _run_stage(models, out)
    # A real kill ends the other SAE's thread too; here it runs on to its own epoch 2.
    for thread in threading.enumerate():
        if thread.name.startswith("jaxirl-sae"):
            thread.join()
    monkeypatch.setattr(MetricsLog, "write", real_write)
    _run_stage(models, out)
    for name in ("sae_layer1_x1", "sae_layer1_x2"):
        acc = event_accumulator.EventAccumulator(str(out / "tensorboard" / name))
        acc.Reload()
        loss = acc.Scalars(f"{name}/loss")
        assert [e.step for e in loss] == [1, 2, 3], name
        assert 99.0 not in [e.value for e in loss], name
        assert [r["step"] for r in read_metrics(out / name / "train_metrics.jsonl")] == [1, 2, 3]
