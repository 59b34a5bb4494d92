"""The study's background lane: stages of a chain run one after another in threads, chains
side by side; errors and published values reach the waiting side."""

import os
import threading
import time

import pytest

from jaxirl.pipeline.stages import StageError
from jaxirl.pipeline.study import PRESETS, BackgroundLane, background_lane_applies


def test_jobs_run_in_order_and_return_their_results():
    lane, order = BackgroundLane(), []
    gate = threading.Event()

    def first():
        gate.wait(5)
        time.sleep(0.05)
        order.append("first")
        return 1

    lane.submit("first", first)
    lane.submit("second", lambda: order.append("second") or 2)
    assert order == []  # the first job holds both: they do not overlap
    gate.set()
    assert lane.result("second") == 2 and lane.result("first") == 1
    assert order == ["first", "second"]


def test_an_error_in_the_lane_is_raised_by_result():
    lane = BackgroundLane()

    def fail():
        raise ValueError("stage 'rlhf_seeds' failed")

    lane.submit("rlhf_seeds", fail)
    lane.submit("after", lambda: "ran")
    with pytest.raises(ValueError, match="rlhf_seeds"):
        lane.result("rlhf_seeds")
    assert lane.result("after") == "ran"  # the next job still runs; the caller decides


def test_chains_run_side_by_side_and_wait_for_published_values():
    lane = BackgroundLane()
    gate, order = threading.Event(), []

    def blocked():
        gate.wait(5)
        order.append("blocked")
        return "a"

    def waiting():
        order.append("waiting started")
        value = lane.wait_for("irl")
        order.append(f"got {value}")
        return value

    lane.submit("first", blocked)  # chain "lane"
    lane.submit("interp", waiting, chain="interp")
    lane.submit("after", lambda: order.append("after") or "b")  # after "first"
    time.sleep(0.2)
    assert order == ["waiting started"]  # its own chain: it did not wait for "first"
    lane.publish("irl", 3)
    assert lane.result("interp") == 3
    gate.set()
    assert lane.result("after") == "b" and lane.result("first") == "a"
    assert order == ["waiting started", "got 3", "blocked", "after"]
    assert lane.wait_for("irl") == 3  # published values stay


@pytest.mark.parametrize("abandon_first", [True, False])
def test_abandon_ends_every_wait_for_a_value_never_published(abandon_first):
    lane = BackgroundLane()
    if abandon_first:  # a stage that asks only after the study failed does not hang
        lane.abandon()
    lane.submit("interp", lambda: lane.wait_for("irl"), chain="interp")
    time.sleep(0.1)
    lane.stop()  # abandons, then waits: it returns
    with pytest.raises(StageError, match="the study failed before 'irl' finished"):
        lane.result("interp")


def test_the_lane_applies_to_a_whole_one_device_cpu_study_only():
    default = PRESETS["default"]
    cores = len(os.sched_getaffinity(0))
    assert background_lane_applies(default, None, None) == (cores >= 2)  # tests run on CPU
    assert not background_lane_applies(default, {"prepare", "rlhf"}, None)
    assert not background_lane_applies(default, None, "evaluate")
    assert not background_lane_applies(PRESETS["smoke"], None, None)  # one PPO seed
    import dataclasses

    from jaxirl.parallel import MeshConfig

    assert not background_lane_applies(dataclasses.replace(default, mesh=MeshConfig(data=2)),
                                       None, None)


@pytest.mark.parametrize("side_by_side", [True, False])
def test_the_extra_ppo_seeds_run_side_by_side_in_the_lane(tmp_path, monkeypatch, side_by_side):
    """In the lane the extra seeds' PPO runs share no thread (each waits at a barrier for
    the other); either way each seed gets its folder and the stage the same outputs."""
    import dataclasses

    import jaxirl.pipeline.study as study

    config = dataclasses.replace(PRESETS["smoke"], rlhf_seeds=3)
    barrier = threading.Barrier(2, timeout=5)
    ran, threads = [], set()

    def rlhf(config, model, dataset, reward, folder, progress, seed, export, eval_before):
        if side_by_side:
            barrier.wait()  # BrokenBarrierError unless the other seed's run is there too
        ran.append((seed, folder, export, eval_before))
        threads.add(threading.current_thread().name)

    monkeypatch.setattr(study, "_rlhf", rlhf)
    out = study._rlhf_seeds(config, "m", "d", "r", tmp_path, False, tmp_path / "true",
                            side_by_side=side_by_side)
    seeds = study.extra_ppo_seeds(config)
    assert out == {"runs": {str(s): str(tmp_path / f"seed_{s}") for s in seeds}}
    assert list(out["runs"]) == [str(s) for s in seeds]  # in seed order either way
    assert sorted(ran) == [(s, tmp_path / f"seed_{s}", False, tmp_path / "true" / f"seed_{s}")
                           for s in seeds]
    assert len(threads) == (2 if side_by_side else 1)
