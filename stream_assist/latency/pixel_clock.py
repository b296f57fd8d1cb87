"""Capture time written into the pixels: ground truth for glass-to-guidance latency.

In the page's test-pattern camera (web/app.js, `drawPixelClock`) each frame carries the browser-clock
millisecond at which it was drawn and captured, as 56 black or white cells across the top of the frame:
48 bits of the integer time, then an 8-bit checksum (the sum of the time's six bytes, mod 256). Cells
are 1/32 of the frame's width by 1/24 of its height, in two rows of 28 starting one cell in from the
top-left corner, so the pattern survives scaling and VP8/H.264 compression; a cell whose centre is not
clearly black or white, or a bad checksum, means "no pattern here".
"""

from __future__ import annotations

import numpy as np

COLS, ROWS, TIME_BITS, CHECK_BITS = 28, 2, 48, 8
GRID_W, GRID_H = 32, 24  # cells across the frame's width and down its height


def _checksum(value: int) -> int:
    return sum((value >> (8 * i)) & 0xFF for i in range(TIME_BITS // 8)) & 0xFF


def bits_of(ms: int) -> list[int]:
    """The 56 cell values (most significant first) for a capture time in integer ms."""
    word = (ms << CHECK_BITS) | _checksum(ms)
    return [(word >> (TIME_BITS + CHECK_BITS - 1 - i)) & 1 for i in range(TIME_BITS + CHECK_BITS)]


def draw(rgb: np.ndarray, ms: int) -> None:
    """Writes the pattern into an RGB frame in place (the Python twin of the page's drawing, for tests)."""
    cell_w, cell_h = rgb.shape[1] / GRID_W, rgb.shape[0] / GRID_H
    for i, bit in enumerate(bits_of(ms)):
        row, col = divmod(i, COLS)
        y0, x0 = round((row + 1) * cell_h), round((col + 1) * cell_w)
        rgb[y0:round((row + 2) * cell_h), x0:round((col + 2) * cell_w)] = 255 if bit else 0


def read_capture_ms(rgb: np.ndarray) -> int | None:
    """The capture time written in the frame, or None when the frame carries no (readable) pattern."""
    height, width = rgb.shape[:2]
    cell_w, cell_h = width / GRID_W, height / GRID_H
    if min(cell_w, cell_h) < 4:
        return None
    rx, ry = int(cell_w / 4), int(cell_h / 4)
    word = 0
    for i in range(TIME_BITS + CHECK_BITS):
        row, col = divmod(i, COLS)
        cy, cx = int((row + 1.5) * cell_h), int((col + 1.5) * cell_w)
        patch = rgb[cy - ry:cy + ry, cx - rx:cx + rx]
        level = float(patch.mean())
        if 64 <= level <= 192:
            return None
        word = (word << 1) | (level > 192)
    ms, check = word >> CHECK_BITS, word & 0xFF
    return ms if check == _checksum(ms) and ms > 0 else None
