"""Frame enhancement before the model sees the frame.

A pass-through for now: the Numba kernels (LAB boost, adaptive contrast, HDR simulation) replace it.
It is a stage of its own so its time is on every frame's timeline from the start.
"""

from __future__ import annotations

import numpy as np

from .config import EnhancementConfig


def enhance(rgb: np.ndarray, config: EnhancementConfig) -> np.ndarray:
    """Returns the frame the model should see (unchanged while no kernel is enabled)."""
    return rgb
