"""Defaults that depend on the machine: what gives the freshest useful guidance here."""

from __future__ import annotations

import logging

from ..config import Config

log = logging.getLogger(__name__)

GPU_MAX_EDGE = 1024  # the reference's frame size: a GPU encodes it in milliseconds
CPU_MAX_EDGE = 512  # the overview the model sees is 512 px: converting and enhancing more is wasted


def apply_hardware_defaults(config: Config, gpu: bool) -> Config:
    """Fills the settings left on "auto" (pipeline.max_edge, enhancement.threads = 0) for a GPU or CPU-only build,
    or for remote endpoints (the model is elsewhere: every core here is free, frames travel at 512 px)."""
    if config.model.backend == "openai":
        if config.pipeline.max_edge == 0:
            config.pipeline.max_edge = CPU_MAX_EDGE
        log.info("remote inference on %s: frames at %d px", config.openai.endpoints, config.pipeline.max_edge)
        return config
    if config.pipeline.max_edge == 0:
        config.pipeline.max_edge = GPU_MAX_EDGE if gpu else CPU_MAX_EDGE
    if config.enhancement.threads == 0 and not gpu:
        # llama.cpp keeps every core busy during inference, when enhancement also runs: one Numba
        # thread beside it is faster than two fighting it (docs/enhancement.md, "Threads")
        config.enhancement.threads = 1
    if gpu:
        log.info("GPU build: %s model layers on the GPU, frames at %d px, image slicing %s",
                 "all" if config.model.n_gpu_layers < 0 else config.model.n_gpu_layers,
                 config.pipeline.max_edge, config.model.slicing)
    else:
        log.info("CPU-only build: frames at %d px, one image encode per frame (slicing %s), %d enhancement thread; "
                 "the vision encoder dominates, so --variant 256m answers sooner at the same image cost; a CUDA "
                 "build is far faster (README)", config.pipeline.max_edge, config.model.slicing,
                 config.enhancement.threads)
    return config
