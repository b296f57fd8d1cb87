"""The enhancement chain done the straightforward OpenCV way: the benchmark's baseline for the Numba kernels.

Same operations as kernels.py (docs/enhancement.md): float32 `cv2.cvtColor` RGB ↔ CIELAB (OpenCV
applies the sRGB curve and uses D65), the boost on the Lab planes, and the adaptive and HDR steps as one
256-entry table applied with `cv2.LUT` to the 8-bit result. Rounding the LAB result to 8 bits before the
table is the one shortcut (the definition rounds once, at the end), so it agrees with the reference to
within a few levels where the tone curve is steep, and closely elsewhere.
"""

from __future__ import annotations

import math

import cv2
import numpy as np

from ..config import EnhancementConfig
from .kernels import HDR_SIGMA, LUMA_WEIGHTS, STATS_SAMPLES


def lab_boost(rgb: np.ndarray, l_boost: float, ab_boost: float) -> np.ndarray:
    """advanced_color with float32 cvtColor: RGB uint8 → Lab → scaled → RGB uint8."""
    lab = cv2.cvtColor(rgb.astype(np.float32) * np.float32(1 / 255), cv2.COLOR_RGB2Lab)
    lab *= np.float32([l_boost, ab_boost, ab_boost])
    np.minimum(lab[..., 0], 100, out=lab[..., 0])
    out = cv2.cvtColor(lab, cv2.COLOR_Lab2RGB)
    return cv2.convertScaleAbs(np.clip(out, 0, 1, out=out), alpha=255)


def tone_table(rgb: np.ndarray, config: EnhancementConfig) -> np.ndarray:
    """The adaptive curve (from this frame's sample) followed by HDR, as a 256-entry uint8 table."""
    x = np.arange(256, dtype=np.float64)
    a = x / 255
    if config.adaptive_enhancement:
        step = max(1, math.isqrt(rgb.shape[0] * rgb.shape[1] // STATS_SAMPLES))
        sample = rgb[step // 2 :: step, step // 2 :: step].reshape(-1, 3).astype(np.float64)
        y = np.sort(sample @ np.asarray(LUMA_WEIGHTS))
        lo, hi = y[(5 * y.size + 999) // 1000 - 1], y[(995 * y.size + 999) // 1000 - 1]
        if config.auto_contrast and hi - lo >= 16:
            a, y_hat = np.clip((x - lo) / (hi - lo), 0, 1), np.clip((y - lo) / (hi - lo), 0, 1)
        else:
            y_hat = y / 255
        m = 255 * y_hat.mean()
        a = a ** (1 / config.dark_boost) if m < 85 else a**config.light_boost if m > 170 else a
    if config.hdr_simulation:
        e = np.stack([np.minimum(a * config.under_exposure, 1), a, np.minimum(a * config.over_exposure, 1)])
        w = np.exp(-((e - 0.5) ** 2) / (2 * HDR_SIGMA**2))
        a = (1 - config.hdr_strength) * a + config.hdr_strength * (w * e).sum(axis=0) / w.sum(axis=0)
    return np.clip(np.floor(255 * a + 0.5), 0, 255).astype(np.uint8)


def enhance(rgb: np.ndarray, config: EnhancementConfig) -> np.ndarray:
    """The enabled steps on an RGB uint8 frame."""
    out = rgb
    if config.advanced_color and config.lab_enhancement:
        out = lab_boost(out, config.l_channel_boost, config.ab_channel_boost)
    if config.adaptive_enhancement or config.hdr_simulation:
        out = cv2.LUT(out, tone_table(out, config))
    return out
