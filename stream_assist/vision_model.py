"""The vision-language model: SmolVLM (or any llama.cpp mtmd pair) loaded with llama-cpp-python.

One instance is shared by every session and used from the inference worker's thread only.
"""

from __future__ import annotations

import base64
import contextlib
import logging
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from .config import ModelConfig
from .model_source import ModelFileError, ModelFiles

log = logging.getLogger(__name__)


@dataclass
class Generation:
    """One answer and when its parts happened (time.time() seconds)."""

    text: str
    started_at: float
    first_token_at: float
    done_at: float
    prompt_tokens: int
    completion_tokens: int


def cpu_advertises_amx(cpuinfo: Path = Path("/proc/cpuinfo")) -> bool:
    """True when the CPU lists AMX; ggml then repacks quantized weights for AMX tiles."""
    try:
        text = cpuinfo.read_text()
    except OSError:
        return False
    return any(flag in text.split() for flag in ("amx_int8", "amx_tile"))


def use_extra_buffers(setting: str) -> bool:
    """Resolves model.cpu_extra_buffers.

    ggml's CPU "extra buffer types" repack quantized weights, for AMX among others. Some virtual
    machines advertise AMX but fault on it (SIGILL on the first decode of a Q4_K_M model), so `auto`
    leaves the extra buffers off wherever AMX is advertised; the plain CPU path is as fast there.
    """
    if setting == "auto":
        return not cpu_advertises_amx()
    return setting == "on"


@contextlib.contextmanager
def _model_defaults(extra_buffers: bool) -> Iterator[None]:
    """llama-cpp-python's Llama does not expose use_extra_bufts, so set it on the defaults it reads."""
    import llama_cpp.llama_cpp as native

    original = native.llama_model_default_params

    def defaults():  # noqa: ANN202 - ctypes struct
        params = original()
        params.use_extra_bufts = extra_buffers
        return params

    native.llama_model_default_params = defaults
    try:
        yield
    finally:
        native.llama_model_default_params = original


def rgb_to_data_uri(rgb: np.ndarray, quality: int = 90) -> str:
    """JPEG data URI of an RGB frame, the form llama-cpp-python's chat handler takes."""
    ok, buf = cv2.imencode(".jpg", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise ValueError("JPEG encoding failed")
    return "data:image/jpeg;base64," + base64.b64encode(buf.tobytes()).decode("ascii")


class VisionModel:
    """Owns the llama.cpp text model and its projector."""

    def __init__(self, files: ModelFiles, config: ModelConfig) -> None:
        from llama_cpp import Llama
        from llama_cpp.llama_chat_format import MTMDChatHandler

        self.files = files
        self.config = config
        self.extra_buffers = use_extra_buffers(config.cpu_extra_buffers)
        threads = config.n_threads or os.cpu_count() or 1
        started = time.perf_counter()
        try:
            handler = MTMDChatHandler(clip_model_path=str(files.mmproj), verbose=False)
            with _model_defaults(self.extra_buffers):
                self._llm = Llama(
                    model_path=str(files.text),
                    chat_handler=handler,
                    n_ctx=config.n_ctx,
                    n_gpu_layers=config.n_gpu_layers,
                    n_threads=threads,
                    n_threads_batch=threads,
                    verbose=False,
                )
        except ValueError as e:
            raise ModelFileError(f"cannot load model {files.text.name} / {files.mmproj.name}: {e}") from None
        self.load_seconds = time.perf_counter() - started
        log.info("model loaded in %.2f s from %s (%s), cpu extra buffers %s, %d threads",
                 self.load_seconds, files.text, files.source, "on" if self.extra_buffers else "off", threads)

    def describe(self, rgb: np.ndarray, prompt: str, on_text: Callable[[str], None] | None = None) -> Generation:
        """Answers prompt about an RGB frame, streaming text pieces to on_text as they are generated."""
        messages = [{
            "role": "user",
            "content": [
                {"type": "image_url", "image_url": {"url": rgb_to_data_uri(rgb)}},
                {"type": "text", "text": prompt},
            ],
        }]
        started = time.time()
        first = 0.0
        pieces: list[str] = []
        stream = self._llm.create_chat_completion(
            messages=messages, max_tokens=self.config.max_tokens, temperature=self.config.temperature, stream=True,
        )
        for chunk in stream:
            piece = chunk["choices"][0]["delta"].get("content") or ""
            if not piece:
                continue
            if not first:
                first = time.time()
            pieces.append(piece)
            if on_text is not None:
                on_text(piece)
        done = time.time()
        return Generation(
            text="".join(pieces).strip(),
            started_at=started,
            first_token_at=first or done,
            done_at=done,
            prompt_tokens=self._llm.n_tokens - len(pieces),
            completion_tokens=len(pieces),
        )

    def close(self) -> None:
        """Frees the model and projector (llama.cpp memory is not reclaimed by the GC in time)."""
        self._llm.close()
