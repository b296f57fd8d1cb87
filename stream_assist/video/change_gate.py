"""The change gate: don't ask the model about a scene it has just described.

Each enhanced frame is reduced to a small grey thumbnail (box averages, one Numba pass); the mean
absolute difference from the thumbnail of the last frame sent to the model, in 8-bit levels, says
whether the scene changed. Unchanged frames are skipped (and counted) until `max_interval_s` has
passed, so the model's time goes to frames that carry news and a still scene is re-checked now and then.
"""

from __future__ import annotations

from dataclasses import dataclass

import numba
import numpy as np

THUMB_W, THUMB_H = 32, 24


@numba.njit(cache=True, nogil=True)
def thumbnail(rgb: np.ndarray, out_h: int = THUMB_H, out_w: int = THUMB_W) -> np.ndarray:
    """Grey (R+G+B)/3 box-averaged thumbnail; each output cell averages its block of input pixels.
    Sums are exact integers, and each column's cell is looked up rather than divided out per pixel."""
    h, w = rgb.shape[0], rgb.shape[1]
    col = np.empty(w, np.int64)
    cols = np.zeros(out_w, np.int64)  # input columns per cell column
    for x in range(w):
        col[x] = x * out_w // w
        cols[col[x]] += 1
    rows = np.zeros(out_h, np.int64)
    sums = np.zeros((out_h, out_w), np.int64)
    for y in range(h):
        ty = y * out_h // h
        rows[ty] += 1
        for x in range(w):
            sums[ty, col[x]] += np.int64(rgb[y, x, 0]) + np.int64(rgb[y, x, 1]) + np.int64(rgb[y, x, 2])
    out = np.zeros((out_h, out_w), np.float32)
    for ty in range(out_h):
        for tx in range(out_w):
            if rows[ty] * cols[tx] > 0:
                out[ty, tx] = sums[ty, tx] / (3.0 * rows[ty] * cols[tx])
    return out


def difference(a: np.ndarray, b: np.ndarray) -> float:
    """Mean absolute difference of two thumbnails, in 8-bit levels."""
    return float(np.mean(np.abs(a - b)))


@dataclass
class ChangeGate:
    """Decides per frame whether the model should see it; threshold 0 lets every frame through."""

    threshold: float
    max_interval_s: float
    _last: np.ndarray | None = None
    _last_at: float = 0.0
    skipped: int = 0

    def admit(self, thumb: np.ndarray, now: float) -> bool:
        """True (and remembered as the new reference) when the frame is news or the scene is due a re-check."""
        stale = now - self._last_at >= self.max_interval_s
        if self._last is None or self.threshold <= 0 or stale or difference(thumb, self._last) >= self.threshold:
            self._last, self._last_at = thumb, now
            return True
        self.skipped += 1
        return False

    def reset(self) -> None:
        """Forget the reference (after a prompt change the same scene is news again)."""
        self._last = None
