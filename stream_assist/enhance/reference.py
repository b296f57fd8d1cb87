"""The enhancement chain in plain float64 NumPy, written straight from the formulas in docs/enhancement.md.

This is the definition the Numba kernels (kernels.py) are tested against, and the benchmark's slow
baseline. It shares only the published constants with the kernels: every step is evaluated per pixel,
without tables, grids or tricks. The steps compose without rounding; only the output is rounded.
"""

from __future__ import annotations

import math

import numpy as np

from ..config import EnhancementConfig
from .kernels import D65_WHITE, HDR_SIGMA, LUMA_WEIGHTS, SRGB_TO_XYZ, STATS_SAMPLES

_EPS = (6 / 29) ** 3  # CIELAB: f(t) is linear below this t
_KAPPA = 3 * (6 / 29) ** 2


def to_uint8(levels: np.ndarray) -> np.ndarray:
    """Rounds halves up and clips to 0..255."""
    return np.clip(np.floor(levels + 0.5), 0, 255).astype(np.uint8)


def srgb_decode(levels: np.ndarray) -> np.ndarray:
    """sRGB levels 0..255 → linear [0, 1] (IEC 61966-2-1)."""
    c = np.asarray(levels, dtype=np.float64) / 255.0
    return np.where(c <= 0.04045, c / 12.92, ((c + 0.055) / 1.055) ** 2.4)


def srgb_encode(linear: np.ndarray) -> np.ndarray:
    """Linear → sRGB levels 0..255 (IEC 61966-2-1), linear clipped to [0, 1] first."""
    v = np.clip(linear, 0.0, 1.0)
    return 255 * np.where(v <= 0.0031308, 12.92 * v, 1.055 * np.power(v, 1 / 2.4) - 0.055)


def rgb_to_lab(rgb: np.ndarray) -> np.ndarray:
    """RGB levels HxWx3 → CIELAB (D65)."""
    xyz = srgb_decode(rgb) @ np.asarray(SRGB_TO_XYZ).T / np.asarray(D65_WHITE)
    f = np.where(xyz > _EPS, np.cbrt(xyz), xyz / _KAPPA + 4 / 29)
    return np.stack([116 * f[..., 1] - 16, 500 * (f[..., 0] - f[..., 1]), 200 * (f[..., 1] - f[..., 2])], axis=-1)


def lab_to_levels(lab: np.ndarray) -> np.ndarray:
    """CIELAB (D65) → sRGB levels in [0, 255], unrounded (out-of-gamut colours clipped in linear RGB)."""
    fy = (lab[..., 0] + 16) / 116
    f = np.stack([fy + lab[..., 1] / 500, fy, fy - lab[..., 2] / 200], axis=-1)
    xyz = np.where(f > 6 / 29, f**3, _KAPPA * (f - 4 / 29)) * np.asarray(D65_WHITE)
    return srgb_encode(xyz @ np.linalg.inv(np.asarray(SRGB_TO_XYZ)).T)


def lab_boost(rgb: np.ndarray, l_boost: float, ab_boost: float) -> np.ndarray:
    """advanced_color: L* ← min(L*·l_boost, 100), a* ← a*·ab_boost, b* ← b*·ab_boost; unrounded levels."""
    lab = rgb_to_lab(rgb)
    lab[..., 0] = np.clip(lab[..., 0] * l_boost, 0, 100)
    lab[..., 1:] *= ab_boost
    return lab_to_levels(lab)


def stats_sample(levels: np.ndarray) -> np.ndarray:
    """Every k-th pixel of every k-th row from k // 2, k = max(1, isqrt(h·w // STATS_SAMPLES))."""
    k = max(1, math.isqrt(levels.shape[0] * levels.shape[1] // STATS_SAMPLES))
    return levels[k // 2 :: k, k // 2 :: k]


def adaptive(levels: np.ndarray, sample: np.ndarray, auto_contrast: bool, dark_boost: float,
             light_boost: float) -> np.ndarray:
    """adaptive_enhancement of levels (0..255) with statistics from sample levels: values a in [0, 1]."""
    y = np.sort((sample.reshape(-1, 3) @ np.asarray(LUMA_WEIGHTS)).ravel())
    n = y.size
    lo, hi = y[(5 * n + 999) // 1000 - 1], y[(995 * n + 999) // 1000 - 1]  # ceil(0.005 n)-th, ceil(0.995 n)-th
    stretch = auto_contrast and hi - lo >= 16

    def normalise(x: np.ndarray) -> np.ndarray:
        return np.clip((x - lo) / (hi - lo), 0.0, 1.0) if stretch else x / 255.0

    m = 255 * normalise(y).mean()
    x_hat = normalise(np.asarray(levels, dtype=np.float64))
    if m < 85:
        return x_hat ** (1 / dark_boost)
    if m > 170:
        return x_hat**light_boost
    return x_hat


def hdr(a: np.ndarray, strength: float, under: float, over: float) -> np.ndarray:
    """hdr_simulation of values a in [0, 1]: fusion of a·under, a, a·over by well-exposedness."""
    exposures = [np.clip(a * under, 0, 1), a, np.clip(a * over, 0, 1)]
    weights = [np.exp(-((e - 0.5) ** 2) / (2 * HDR_SIGMA**2)) for e in exposures]
    fused = sum(w * e for w, e in zip(weights, exposures, strict=True)) / sum(weights)
    return (1 - strength) * a + strength * fused


def enhance(rgb: np.ndarray, config: EnhancementConfig) -> np.ndarray:
    """The whole chain on an RGB uint8 image; the steps compose unrounded, the output is rounded once."""
    levels = np.asarray(rgb, dtype=np.float64)
    if config.advanced_color and config.lab_enhancement:
        levels = lab_boost(rgb, config.l_channel_boost, config.ab_channel_boost)
    a = levels / 255.0
    if config.adaptive_enhancement:
        sample = stats_sample(levels)
        a = adaptive(levels, sample, config.auto_contrast, config.dark_boost, config.light_boost)
    if config.hdr_simulation:
        a = hdr(a, config.hdr_strength, config.under_exposure, config.over_exposure)
    return to_uint8(255 * a)
