"""`stream-assist enhance IN OUT`: what the model would see of a photo, to tune the enhancement settings on it."""

from __future__ import annotations

from pathlib import Path

import cv2

from ..config import Config
from ..inference.hardware import GPU_MAX_EDGE
from ..video.sampler import fit_size
from .kernels import enhance


def enhance_file(in_path: Path, out_path: Path, config: Config) -> tuple[int, int]:
    """Reads an image, resizes it (INTER_AREA) to the model's size (pipeline.max_edge, the server's rule;
    auto = 1024, the reference's size), enhances it, writes it; returns (width, height) written."""
    bgr = cv2.imread(str(in_path), cv2.IMREAD_COLOR)
    if bgr is None:
        raise ValueError(f"cannot read an image from {in_path}")
    width, height = fit_size(bgr.shape[1], bgr.shape[0], config.pipeline.max_edge or GPU_MAX_EDGE)
    if (width, height) != (bgr.shape[1], bgr.shape[0]):
        bgr = cv2.resize(bgr, (width, height), interpolation=cv2.INTER_AREA)
    rgb = enhance(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB), config.enhancement)
    if not cv2.imwrite(str(out_path), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)):
        raise ValueError(f"cannot write an image to {out_path} (unknown extension or unwritable)")
    return width, height
