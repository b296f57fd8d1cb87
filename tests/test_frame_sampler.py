"""Which frames the sampler takes: at most sample_fps on average, without skipping a frame for jitter."""

from __future__ import annotations

import numpy as np

from stream_assist.video.sampler import SampleClock

INTERVAL = 1 / 15  # sample interval


def taken(arrivals) -> list[float]:
    clock = SampleClock(INTERVAL)
    return [t for t in arrivals if clock.admit(t)]


def test_a_camera_at_the_sample_rate_with_jitter_loses_no_frame() -> None:
    jitter = np.random.default_rng(1).uniform(-0.012, 0.012, 300)  # ±12 ms around a 66.7 ms grid
    arrivals = np.arange(300) * INTERVAL + jitter
    assert len(taken(arrivals)) == 300


def test_a_faster_camera_is_sampled_down_to_the_rate() -> None:
    assert 149 <= len(taken(np.arange(300) / 30)) <= 151  # 10 s of 30 fps: 15 a second
    assert 149 <= len(taken(np.arange(600) / 60)) <= 151  # 10 s of 60 fps


def test_the_average_rate_never_exceeds_the_sample_rate() -> None:
    arrivals = np.sort(np.random.default_rng(2).uniform(0, 10, 5000))  # bursty, 500 frames a second
    got = taken(arrivals)
    assert len(got) <= 10 / INTERVAL + 1
    assert min(np.diff(got)) >= INTERVAL / 2  # never two frames within half an interval


def test_after_a_pause_in_the_video_the_next_frame_is_taken_at_once() -> None:
    clock = SampleClock(INTERVAL)
    assert clock.admit(0.0) and not clock.admit(0.01) and clock.admit(5.0) and not clock.admit(5.03)
