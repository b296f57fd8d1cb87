"""The change gate's thumbnail against a NumPy reference, and its decisions."""

from __future__ import annotations

import numpy as np
import pytest

from stream_assist.video.change_gate import ChangeGate, difference, thumbnail


def reference_thumbnail(rgb: np.ndarray, out_h: int, out_w: int) -> np.ndarray:
    grey = rgb.astype(np.float64).mean(axis=2)
    rows = np.arange(rgb.shape[0]) * out_h // rgb.shape[0]
    cols = np.arange(rgb.shape[1]) * out_w // rgb.shape[1]
    out = np.zeros((out_h, out_w))
    for ty in range(out_h):
        for tx in range(out_w):
            block = grey[rows == ty][:, cols == tx]
            out[ty, tx] = block.mean() if block.size else 0.0
    return out


@pytest.mark.parametrize("shape", [(480, 640), (37, 53), (24, 32), (7, 5), (1, 1)])
def test_thumbnail_matches_block_means(shape) -> None:
    rgb = np.random.default_rng(1).integers(0, 256, (*shape, 3), dtype=np.uint8)
    assert np.allclose(thumbnail(rgb), reference_thumbnail(rgb, 24, 32), atol=1e-3)


def test_gate_skips_unchanged_scenes_until_the_re_check_interval() -> None:
    gate = ChangeGate(threshold=3.0, max_interval_s=10.0)
    still = np.full((24, 32), 100.0, np.float32)
    assert gate.admit(still, now=0.0)  # the first frame is always news
    assert not gate.admit(still + 2.0, now=1.0)  # below threshold
    assert gate.admit(still + 5.0, now=2.0)  # a change
    assert not gate.admit(still + 5.5, now=3.0)  # compared with the last admitted frame
    assert gate.admit(still + 5.5, now=12.0)  # unchanged but due a re-check
    assert gate.skipped == 2
    gate.reset()
    assert gate.admit(still + 5.5, now=12.5)  # after reset (new prompt) the scene is news again
    assert difference(still, still + 4.0) == pytest.approx(4.0)


def test_threshold_zero_admits_everything() -> None:
    gate = ChangeGate(threshold=0.0, max_interval_s=10.0)
    still = np.zeros((24, 32), np.float32)
    assert all(gate.admit(still, now=t) for t in range(5))
