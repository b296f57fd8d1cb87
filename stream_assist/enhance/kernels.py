"""Frame enhancement before the model sees the frame: CIELAB boost, adaptive tone curve, HDR simulation.

docs/enhancement.md has every formula and the reasons; in short, for an RGB uint8 frame, the steps are
composed without rounding between them, and the result is rounded (halves up) and clipped once:

1. advanced_color (with lab_enhancement): 8-bit sRGB → linear (IEC 61966-2-1) → XYZ (sRGB matrix) →
   CIELAB, D65 white (0.95047, 1, 1.08883); L* ← min(L*·l_channel_boost, 100), a*, b* ← ·ab_channel_boost;
   back the same way, linear RGB clipped to [0, 1]; s = 255·sRGB(linear) ∈ [0, 255]. In f-space
   (f = the CIELAB cube root) the boost is affine: fY' = min(kL·fY + (1 − kL)·4/29, 1),
   fX' = fY' + kab(fX − fY), fZ' = fY' − kab(fY − fZ).
2. adaptive_enhancement: Y = 0.299 R + 0.587 G + 0.114 B over a sample of the frame (every k-th pixel of every
   k-th row from k // 2, k = max(1, isqrt(h·w // 8192))); lo, hi = its ceil(0.005 n)-th and ceil(0.995 n)-th
   smallest; x̂ = clip((x − lo)/(hi − lo), 0, 1) when auto_contrast and hi − lo ≥ 16, else x/255;
   m = 255·mean(Ŷ); a = x̂^(1/dark_boost) if m < 85, x̂^light_boost if m > 170, else x̂.
3. hdr_simulation: e = (min(a·under, 1), a, min(a·over, 1)), w(e) = exp(−(e − 0.5)²/(2·0.2²)),
   h = (1 − strength)·a + strength·Σ w e / Σ w.  Output round(255·h).

Per pixel that is a fixed colour mapping followed by a per-frame curve on each channel, so the kernel
(Numba, float32, one pass) computes the boosted linear value v of each channel and looks the output up
in a per-frame table indexed by √v on a 65536-step grid, which holds the sRGB encoding and the whole
tone curve; with the LAB boost off, the curve is a 256-entry table. The statistics come from the sample
(about 8k pixels) before that pass. stream_assist/enhance/reference.py is the float64 definition.

Kernels compile into Numba's on-disk cache; `warm_up()` compiles or loads them at server start. Numba's
thread count belongs to the calling thread, so `enhance` applies `config.threads` itself each call (it runs
in the server's executor threads).
"""

from __future__ import annotations

import functools
import math
import threading
import time

import numba
import numpy as np
from llvmlite import ir
from numba import njit, prange, types
from numba.extending import intrinsic

from ..config import EnhancementConfig

# Published constants, shared with the float64 reference (reference.py).
SRGB_TO_XYZ = ((0.4124, 0.3576, 0.1805), (0.2126, 0.7152, 0.0722), (0.0193, 0.1192, 0.9505))  # IEC 61966-2-1
D65_WHITE = (0.95047, 1.0, 1.08883)
LUMA_WEIGHTS = (0.299, 0.587, 0.114)  # Rec. 601
STATS_SAMPLES = 8192  # the adaptive statistics sample about this many pixels (all of a smaller frame)
HDR_SIGMA = 0.2  # width of the well-exposedness weight around 0.5

_GRID = 65536  # steps of the √v grid the output table is indexed by
_CURVE = 65536  # steps of the x̂ grid of the tone curve table

_f32 = np.float32
_EPS = _f32((6 / 29) ** 3)  # CIELAB f(t): cube root above, linear below
_KAPPA = _f32(3 * (6 / 29) ** 2)
_INV_KAPPA = _f32(1 / (3 * (6 / 29) ** 2))
_F0 = _f32(4 / 29)
_DELTA = _f32(6 / 29)
_ONE, _ZERO, _HALF, _THIRD, _TWO_NINTHS = _f32(1), _f32(0), _f32(0.5), _f32(1 / 3), _f32(2 / 9)
_GRID_SCALE = _f32(_GRID - 1)
_RCBRT_MAGIC = _f32(0x54A2316D)  # bits(x^(-1/3)) ≈ MAGIC − bits(x)/3, at most 3.4% off
_ROWS_PER_CHUNK = 8

# One frame at a time: a kernel already uses every Numba thread, and the workqueue layer is not thread-safe.
_lock = threading.Lock()


# --- float32 kernels: short loops that LLVM vectorises, over planar row buffers ----------------------------

_fast = njit(fastmath=True, error_model="numpy", cache=True)


@intrinsic
def _float_bits(typingctx, x):  # noqa: ANN001, ANN202 - Numba intrinsic
    """The bit pattern of a float32, as an int32."""
    if x != types.float32:
        return None
    return types.int32(types.float32), lambda context, builder, sig, args: builder.bitcast(args[0], ir.IntType(32))


@intrinsic
def _bits_float(typingctx, i):  # noqa: ANN001, ANN202 - Numba intrinsic
    """The float32 with the bit pattern of an int32."""
    if i != types.int32:
        return None
    return types.float32(types.int32), lambda context, builder, sig, args: builder.bitcast(args[0], ir.FloatType())


@_fast
def _rcbrt(x: float) -> float:
    """x^(-1/3) for x > 0, no division: a guess from the float's bits (within 3.4%), a third-order step
    (2e-4), a Newton step (7e-8, float32's own precision)."""
    r = _bits_float(np.int32(_RCBRT_MAGIC - _f32(_float_bits(x)) * _THIRD))
    d = _ONE - x * r * r * r  # r·(1 − d)^(-1/3) is exact
    r = r + r * d * (_THIRD + d * _TWO_NINTHS)
    d = _ONE - x * r * r * r
    return r + r * d * _THIRD


@_fast
def _decode_row(src: np.ndarray, decode: np.ndarray, linear: np.ndarray) -> None:
    """Interleaved 8-bit sRGB → planar linear R, G, B by table (scalar loads)."""
    n = src.shape[0] // 3
    for j in range(n):
        linear[j], linear[n + j], linear[2 * n + j] = decode[src[3 * j]], decode[src[3 * j + 1]], decode[src[3 * j + 2]]


@_fast
def _to_lab_f(linear: np.ndarray, mf: np.ndarray, f: np.ndarray) -> None:
    """Planar linear RGB → planar CIELAB f(X/Xn), f(Y/Yn), f(Z/Zn)."""
    n = linear.shape[0] // 3
    m0, m1, m2, m3, m4, m5, m6, m7, m8 = mf[0], mf[1], mf[2], mf[3], mf[4], mf[5], mf[6], mf[7], mf[8]
    for j in range(n):
        r, g, b = linear[j], linear[n + j], linear[2 * n + j]
        f[j], f[n + j], f[2 * n + j] = m0 * r + m1 * g + m2 * b, m3 * r + m4 * g + m5 * b, m6 * r + m7 * g + m8 * b
    for k in range(3 * n):
        t = f[k]
        c = max(t, _EPS)
        r = _rcbrt(c)
        f[k] = c * r * r if t > _EPS else t * _INV_KAPPA + _F0


@_fast
def _lab_finv(f: float) -> float:
    """Inverse of CIELAB f."""
    return f * f * f if f > _DELTA else _KAPPA * (f - _F0)


@_fast
def _grid_index(v: float) -> np.uint16:
    """Index of linear v (clipped to [0, 1]) on the √v grid."""
    return np.uint16(np.sqrt(min(max(v, _ZERO), _ONE)) * _GRID_SCALE + _HALF)


@_fast
def _boost(f: np.ndarray, kl: float, kab: float, mi: np.ndarray, index: np.ndarray) -> None:
    """The LAB boost, an affine map of f-space, back to linear RGB: planar √v-grid indices."""
    n = f.shape[0] // 3
    m0, m1, m2, m3, m4, m5, m6, m7, m8 = mi[0], mi[1], mi[2], mi[3], mi[4], mi[5], mi[6], mi[7], mi[8]
    c0 = (_ONE - kl) * _F0
    for j in range(n):
        fx, fy, fz = f[j], f[n + j], f[2 * n + j]
        fy2 = min(kl * fy + c0, _ONE)
        x, y, z = _lab_finv(fy2 + kab * (fx - fy)), _lab_finv(fy2), _lab_finv(fy2 - kab * (fy - fz))
        index[j] = _grid_index(m0 * x + m1 * y + m2 * z)
        index[n + j] = _grid_index(m3 * x + m4 * y + m5 * z)
        index[2 * n + j] = _grid_index(m6 * x + m7 * y + m8 * z)


@_fast
def _lab_row(src: np.ndarray, out: np.ndarray, table: np.ndarray, colour: tuple, linear: np.ndarray, f: np.ndarray,
             index: np.ndarray) -> None:
    """One interleaved row: out = table[√v-grid index of the LAB-boosted src] (linear, f, index: scratch)."""
    decode, mf, mi, kl, kab = colour
    _decode_row(src, decode, linear)
    _to_lab_f(linear, mf, f)
    _boost(f, kl, kab, mi, index)
    n = src.shape[0] // 3
    for j in range(n):
        out[3 * j], out[3 * j + 1], out[3 * j + 2] = table[index[j]], table[index[n + j]], table[index[2 * n + j]]


@njit(parallel=True, fastmath=True, error_model="numpy", cache=True)
def _lab_lookup(src: np.ndarray, dst: np.ndarray, table: np.ndarray, colour: tuple) -> None:
    """_lab_row over (h, 3w) rows, in chunks of rows across Numba's threads."""
    h, n = src.shape[0], src.shape[1] // 3
    for c in prange((h + _ROWS_PER_CHUNK - 1) // _ROWS_PER_CHUNK):
        linear, f, index = np.empty(3 * n, np.float32), np.empty(3 * n, np.float32), np.empty(3 * n, np.uint16)
        for i in range(c * _ROWS_PER_CHUNK, min(h, (c + 1) * _ROWS_PER_CHUNK)):
            _lab_row(src[i], dst[i], table, colour, linear, f, index)


@njit(parallel=True, cache=True)
def _apply_table(src: np.ndarray, dst: np.ndarray, table: np.ndarray) -> None:
    """dst = table[src], for (h, 3w) uint8 rows."""
    for i in prange(src.shape[0]):
        for j in range(src.shape[1]):
            dst[i, j] = table[src[i, j]]


@njit(fastmath=True, error_model="numpy", cache=True)
def _sample_luma(rgb: np.ndarray, step: int, levels: np.ndarray, colour: tuple, lab: bool) -> np.ndarray:
    """Luma 0.299 R + 0.587 G + 0.114 B of every step-th pixel of every step-th row from step // 2, after the
    LAB boost when lab (levels: the √v grid's levels, the identity table for the boost)."""
    h, w = rgb.shape[0], rgb.shape[1]
    o = step // 2
    rows, cols = (h - o + step - 1) // step, (w - o + step - 1) // step
    src, row = np.empty(3 * cols, np.uint8), np.empty(3 * cols, np.float32)
    linear, f, index = np.empty(3 * cols, np.float32), np.empty(3 * cols, np.float32), np.empty(3 * cols, np.uint16)
    luma = np.empty(rows * cols)
    wr, wg, wb = LUMA_WEIGHTS
    for i in range(rows):
        for j in range(cols):
            for c in range(3):
                src[3 * j + c] = rgb[o + i * step, o + j * step, c]
        if lab:
            _lab_row(src, row, levels, colour, linear, f, index)
        else:
            row[:] = src
        for j in range(cols):
            luma[i * cols + j] = wr * row[3 * j] + wg * row[3 * j + 1] + wb * row[3 * j + 2]
    return luma


@njit(cache=True)
def _order_statistics(y: np.ndarray, k_lo: int, k_hi: int) -> tuple[float, float]:
    """The k_lo-th and k_hi-th smallest (1-based) of values in [0, 256), exactly: a 1/16-level histogram
    finds the bin holding each, and only that bin's values are sorted."""
    counts = np.zeros(4097, np.int64)
    for v in y:
        counts[int(v * 16)] += 1
    found = np.empty(2)
    for slot, k in enumerate((k_lo, k_hi)):
        below, b = 0, 0
        while below + counts[b] < k:
            below += counts[b]
            b += 1
        found[slot] = np.sort(np.array([v for v in y if int(v * 16) == b]))[k - below - 1]
    return found[0], found[1]


@njit(cache=True)
def _stretch_stats(y: np.ndarray, auto_contrast: bool) -> tuple[float, float, float]:
    """(offset, scale, mean) of the lumas y: x̂ = clip((x − offset)·scale, 0, 1), mean = 255·mean(ŷ)."""
    n = y.shape[0]
    lo, hi = _order_statistics(y, (5 * n + 999) // 1000, (995 * n + 999) // 1000)  # ceil(0.005 n), ceil(0.995 n)
    offset, scale = (lo, 1.0 / (hi - lo)) if auto_contrast and hi - lo >= 16 else (0.0, 1.0 / 255)
    total = 0.0
    for v in y:
        total += min(max((v - offset) * scale, 0.0), 1.0)
    return offset, scale, 255 * total / n


@njit(cache=True)
def _compose(levels: np.ndarray, offset: float, scale: float, curve: np.ndarray, out: np.ndarray) -> None:
    """out[i] = curve[x̂ of levels[i] on the curve's grid], x̂ = clip((level − offset)·scale, 0, 1)."""
    top = curve.shape[0] - 1
    for i in range(levels.shape[0]):
        out[i] = curve[int(min(max((levels[i] - offset) * scale, 0.0), 1.0) * top + 0.5)]


# --- tables: per configuration (cached) and per frame -------------------------------------------------------


def _round8(x: np.ndarray) -> np.ndarray:
    """Halves up, clipped to 0..255, as uint8."""
    return np.clip(np.floor(x + 0.5), 0, 255).astype(np.uint8)


@functools.lru_cache(maxsize=8)
def _colour(l_boost: float, ab_boost: float) -> tuple:
    """The LAB kernel's float32 inputs: decode table, white-normalised matrices, boosts."""
    c = np.arange(256) / 255.0
    decode = np.where(c <= 0.04045, c / 12.92, ((c + 0.055) / 1.055) ** 2.4)
    m = np.asarray(SRGB_TO_XYZ)
    white = np.asarray(D65_WHITE)
    mf = (m / white[:, None]).ravel()  # linear RGB → (X/Xn, Y/Yn, Z/Zn)
    mi = (np.linalg.inv(m) * white[None, :]).ravel()  # and back
    return decode.astype(np.float32), mf.astype(np.float32), mi.astype(np.float32), _f32(l_boost), _f32(ab_boost)


@functools.lru_cache(maxsize=1)
def _grid_levels() -> np.ndarray:
    """s = 255·sRGB(v) at each point v = (i/(GRID−1))² of the √v grid, float64."""
    v = (np.arange(_GRID) / (_GRID - 1)) ** 2
    return 255 * np.where(v <= 0.0031308, 12.92 * v, 1.055 * v ** (1 / 2.4) - 0.055)


@functools.lru_cache(maxsize=1)
def _grid_levels32() -> np.ndarray:
    """_grid_levels() as float32, the table that makes the LAB kernel return the levels themselves."""
    return _grid_levels().astype(np.float32)


def _hdr(a: np.ndarray, strength: float, under: float, over: float) -> np.ndarray:
    """hdr_simulation of values a in [0, 1]: exposure fusion blended with the input."""
    exposures = np.stack([np.minimum(a * under, 1.0), a, np.minimum(a * over, 1.0)])
    weights = np.exp(-((exposures - 0.5) ** 2) / (2 * HDR_SIGMA**2))
    return (1 - strength) * a + strength * (weights * exposures).sum(axis=0) / weights.sum(axis=0)


def _hdr_params(config: EnhancementConfig) -> tuple[float, float, float] | None:
    """(strength, under, over) when hdr_simulation is on."""
    return (config.hdr_strength, config.under_exposure, config.over_exposure) if config.hdr_simulation else None


def _tone(x_hat: np.ndarray, gamma: float, hdr_params: tuple[float, float, float] | None) -> np.ndarray:
    """Output levels for normalised inputs x̂: the gamma, then HDR when enabled, rounded."""
    a = x_hat**gamma
    return _round8(255 * (a if hdr_params is None else _hdr(a, *hdr_params)))


@functools.lru_cache(maxsize=16)
def _curve(gamma: float, hdr_params: tuple[float, float, float] | None) -> np.ndarray:
    """The tone curve on the x̂ grid (CURVE steps)."""
    return _tone(np.arange(_CURVE + 1) / _CURVE, gamma, hdr_params)


def adaptive_params(rgb: np.ndarray, config: EnhancementConfig) -> tuple[float, float, float]:
    """(offset, scale, gamma) of the adaptive step for this frame: x̂ = clip((x − offset)·scale, 0, 1), a = x̂^gamma."""
    h, w = rgb.shape[:2]
    step = max(1, math.isqrt(h * w // STATS_SAMPLES))
    lab = config.advanced_color and config.lab_enhancement
    luma = _sample_luma(rgb, step, _grid_levels32(), _colour(config.l_channel_boost, config.ab_channel_boost), lab)
    offset, scale, mean = _stretch_stats(luma, config.auto_contrast)
    gamma = 1 / config.dark_boost if mean < 85 else config.light_boost if mean > 170 else 1.0
    return offset, scale, gamma


# --- the chain ----------------------------------------------------------------------------------------------


def _rows(rgb: np.ndarray) -> np.ndarray:
    """An HxWx3 array as (h, 3w) rows, the kernels' layout (a view)."""
    return rgb.reshape(rgb.shape[0], -1)


def enhance(rgb: np.ndarray, config: EnhancementConfig) -> np.ndarray:
    """Returns the frame the model should see: the enabled steps applied (RGB uint8 HxWx3 in and out)."""
    lab = config.advanced_color and config.lab_enhancement
    if not (lab or config.adaptive_enhancement or config.hdr_simulation):
        return rgb
    set_threads(config.threads)
    rgb = np.ascontiguousarray(rgb)
    if not rgb.flags.writeable:  # a read-only array is another Numba type: it would compile on a live frame
        rgb = rgb.copy()
    offset, scale, gamma = adaptive_params(rgb, config) if config.adaptive_enhancement else (0.0, 1 / 255, 1.0)
    out = np.empty_like(rgb)
    if not lab:
        table = _tone(np.clip((np.arange(256) - offset) * scale, 0.0, 1.0), gamma, _hdr_params(config))
        with _lock:
            _apply_table(_rows(rgb), _rows(out), table)
        return out
    table = np.empty(_GRID, np.uint8)
    _compose(_grid_levels(), offset, scale, _curve(gamma, _hdr_params(config)), table)
    with _lock:
        _lab_lookup(_rows(rgb), _rows(out), table, _colour(config.l_channel_boost, config.ab_channel_boost))
    return out


def set_threads(n: int) -> int:
    """Sets Numba's thread count for kernels launched from the calling thread (0: Numba's default)."""
    count = numba.config.NUMBA_NUM_THREADS if n <= 0 else min(n, numba.config.NUMBA_NUM_THREADS)
    numba.set_num_threads(count)
    return count


def warm_up() -> float:
    """Compiles (or loads from Numba's cache) every kernel on a tiny image; returns the seconds it took."""
    started = time.perf_counter()
    rgb = np.arange(5 * 7 * 3, dtype=np.uint8).reshape(5, 7, 3)
    enhance(rgb, EnhancementConfig())
    enhance(rgb, EnhancementConfig(advanced_color=False))
    return time.perf_counter() - started
