"""The study's second lane: stages run one after another in a thread, errors reach the caller."""

import os
import threading
import time

import pytest

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
