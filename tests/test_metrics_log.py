"""jaxirl.metrics_log: streamed JSONL rows, resume truncation, TensorBoard events read back."""

import itertools
import json

import numpy as np
import pytest

from jaxirl import metrics_log
from jaxirl.errors import ConfigError
from jaxirl.metrics_log import MetricsLog, read_metrics

WALL_CLOCK = ("time", "elapsed_s")


def _rows(path):
    return [{k: v for k, v in r.items() if k not in WALL_CLOCK} for r in read_metrics(path)]


def _metrics(step):
    return {"loss": 1.0 / step, "per_seed": np.array([step, -step], np.float32),
            "eval": {"acc": 0.5 + 0.01 * step, "name": "x"}}


def test_rows_are_streamed_with_step_and_wall_clock(tmp_path):
    path = tmp_path / "m.jsonl"
    with MetricsLog(path, tensorboard=False) as log:
        log.write(1, _metrics(1))
        # Readable while the run goes on: every line is flushed as it is written.
        assert [r["step"] for r in read_metrics(path)] == [1]
        log.write(2, _metrics(2))
    rows = read_metrics(path)
    assert [r["step"] for r in rows] == [1, 2]
    assert rows[1]["per_seed"] == [2.0, -2.0] and rows[1]["eval"] == {"acc": 0.52, "name": "x"}
    assert rows[0]["time"] <= rows[1]["time"] and 0 <= rows[0]["elapsed_s"] <= rows[1]["elapsed_s"]
    assert abs(rows[1]["time"] - rows[0]["time"] - (rows[1]["elapsed_s"] - rows[0]["elapsed_s"])) < 1.0


def test_resumed_log_equals_an_uninterrupted_one(tmp_path):
    with MetricsLog(tmp_path / "full.jsonl", tensorboard=False) as log:
        for step in range(1, 6):
            log.write(step, _metrics(step))
    # A run killed after step 4 whose last checkpoint is step 3; the kill cut a line short.
    path = tmp_path / "resumed.jsonl"
    with MetricsLog(path, tensorboard=False) as log:
        for step in range(1, 5):
            log.write(step, {**_metrics(step), "loss": 99.0} if step == 4 else _metrics(step))
    with open(path, "a") as f:
        f.write('{"step": 5, "lo')
    with MetricsLog(path, resume_step=3, tensorboard=False) as log:
        kept = [json.loads(x) for x in path.read_text().splitlines()]
        assert [r["step"] for r in kept] == [1, 2, 3]
        for step in (4, 5):
            log.write(step, _metrics(step))
    assert _rows(path) == _rows(tmp_path / "full.jsonl")
    rows = read_metrics(path)
    assert rows[3]["elapsed_s"] >= rows[2]["elapsed_s"]  # wall time counts across the resume
    # A fresh (not resumed) run starts an empty file.
    with MetricsLog(path, tensorboard=False) as log:
        log.write(1, {"loss": 0.0})
    assert [r["step"] for r in read_metrics(path)] == [1]


@pytest.mark.parametrize("first_writer_id", [0, 9])
def test_tensorboard_events_are_written_and_read_back(tmp_path, monkeypatch, first_writer_id):
    pytest.importorskip("tensorboardX")
    # Writer 9 then 10 in one second once sorted ".10" before ".9": the resumed run's
    # events were replayed first and the purge missed the stale step 4 (a CI failure).
    monkeypatch.setattr(metrics_log, "_WRITER_IDS", itertools.count(first_writer_id))
    event_accumulator = pytest.importorskip(
        "tensorboard.backend.event_processing.event_accumulator")
    path = tmp_path / "run" / "m.jsonl"
    with MetricsLog(path, tag_prefix="irl/") as log:  # tensorboardX installed: on by default
        for step in range(1, 5):
            log.write(step, {**_metrics(step), "loss": 99.0} if step == 4 else _metrics(step))
    # Resumed from the step-3 checkpoint: TensorBoard must drop the stale step 4.
    with MetricsLog(path, resume_step=3, tag_prefix="irl/") as log:
        for step in (4, 5):
            log.write(step, _metrics(step))
    acc = event_accumulator.EventAccumulator(str(tmp_path / "run" / "tensorboard"))
    acc.Reload()
    tags = set(acc.Tags()["scalars"])
    assert {"irl/loss", "irl/per_seed/0", "irl/per_seed/1", "irl/eval/acc",
            "irl/elapsed_s"} <= tags
    assert not {t for t in tags if t.endswith(("/step", "/time", "/name"))}
    loss = acc.Scalars("irl/loss")
    assert [e.step for e in loss] == [1, 2, 3, 4, 5]
    np.testing.assert_allclose([e.value for e in loss], [1 / s for s in range(1, 6)], rtol=1e-6)
    assert [e.value for e in acc.Scalars("irl/per_seed/1")] == [-1, -2, -3, -4, -5]


def test_a_resume_before_the_first_checkpoint_hides_the_killed_runs_events(tmp_path):
    pytest.importorskip("tensorboardX")
    event_accumulator = pytest.importorskip(
        "tensorboard.backend.event_processing.event_accumulator")
    path = tmp_path / "run" / "m.jsonl"
    with MetricsLog(path, resume_step=0, tag_prefix="ppo/") as log:
        for step in (1, 2, 3):
            log.write(step, {"loss": 1.0})
    # Killed before its first checkpoint: the resumed run starts at step 0 again.
    with MetricsLog(path, resume_step=0, tag_prefix="ppo/") as log:
        for step in (1, 2):
            log.write(step, {"loss": 2.0})
    assert [r["step"] for r in read_metrics(path)] == [1, 2]
    acc = event_accumulator.EventAccumulator(str(tmp_path / "run" / "tensorboard"))
    acc.Reload()
    assert [(e.step, e.value) for e in acc.Scalars("ppo/loss")] == [(1, 2.0), (2, 2.0)]


def test_tensorboard_on_request_needs_the_extra(tmp_path, monkeypatch):
    monkeypatch.setattr(metrics_log, "tensorboard_available", lambda: False)
    with pytest.raises(ConfigError, match=r"tensorboardX: pip install 'jaxirl\[tb\]'"):
        MetricsLog(tmp_path / "m.jsonl", tensorboard=True)
    with MetricsLog(tmp_path / "m.jsonl") as log:  # None: off without tensorboardX
        assert log.writer is None
    assert not (tmp_path / "tensorboard").exists()
