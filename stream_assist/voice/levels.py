"""Sound levels in dB of int16 samples, one definition for the VAD, the loud-stretch cut and the echo canceller."""

from __future__ import annotations

import numpy as np


def frame_power(samples: np.ndarray, frame: int) -> np.ndarray:
    """Mean square of each whole frame of `frame` samples, plus one so digital silence is 0 dB, not -inf."""
    n = len(samples) // frame
    return np.mean(samples[:n * frame].astype(np.float64).reshape(n, frame) ** 2, axis=1) + 1.0


def frame_levels(samples: np.ndarray, frame: int) -> np.ndarray:
    """The level of each whole frame, in dB (0 dB: silence; a full-scale sine: ~87 dB)."""
    return 10 * np.log10(frame_power(samples, frame))


def level_db(samples: np.ndarray) -> float:
    """The level of all the samples as one frame, in dB."""
    return float(frame_levels(samples, len(samples))[0])
