"""The capture time written into pixels survives scaling and lossy compression, and is never invented."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from stream_assist.latency.capture_clock import ntp_to_unix_ms, rtp_diff
from stream_assist.latency.pixel_clock import draw, read_capture_ms

MS = 1_764_190_000_123


def frame_with_pattern(ms: int, width: int = 640, height: int = 480) -> np.ndarray:
    rng = np.random.default_rng(3)
    rgb = rng.integers(60, 200, (height, width, 3), dtype=np.uint8)
    draw(rgb, ms)
    return rgb


@pytest.mark.parametrize(("size", "quality"), [((640, 480), 95), ((512, 384), 40), ((320, 240), 60), ((1280, 720), 30)])
def test_pattern_survives_scaling_and_jpeg(size, quality) -> None:
    rgb = cv2.resize(frame_with_pattern(MS), size, interpolation=cv2.INTER_AREA)
    ok, buf = cv2.imencode(".jpg", rgb, [cv2.IMWRITE_JPEG_QUALITY, quality])
    assert ok
    assert read_capture_ms(cv2.imdecode(buf, cv2.IMREAD_COLOR)) == MS


def test_frames_without_a_pattern_read_as_none() -> None:
    rng = np.random.default_rng(0)
    assert read_capture_ms(rng.integers(0, 256, (480, 640, 3), dtype=np.uint8)) is None
    assert read_capture_ms(np.zeros((480, 640, 3), np.uint8)) is None  # all black: checksum of 0 is 0, but 0 is no time
    assert read_capture_ms(np.full((480, 640, 3), 255, np.uint8)) is None
    assert read_capture_ms(np.zeros((8, 8, 3), np.uint8)) is None
    damaged = frame_with_pattern(MS)
    damaged[15:60, 100:140] = 255 - damaged[15:60, 100:140]  # flip a few cells: the checksum catches it
    assert read_capture_ms(damaged) is None


def test_rtp_and_ntp_arithmetic() -> None:
    assert rtp_diff(10, 2**32 - 10) == 20 and rtp_diff(2**32 - 10, 10) == -20
    assert ntp_to_unix_ms((2208988800 + 1) << 32 | 2**31) == pytest.approx(1500.0)
