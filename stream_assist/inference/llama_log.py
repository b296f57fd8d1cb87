"""llama.cpp's and mtmd's own logging, routed through Python logging.

Left alone, a server prints ~250 loader lines at start and ~30 lines of mtmd chatter per frame to stderr.
Here ggml's INFO and DEBUG lines become DEBUG records of the `stream_assist.llama` logger (shown with
--verbose), while its warnings and errors stay WARNING and ERROR.
"""

from __future__ import annotations

import ctypes
import logging

log = logging.getLogger("stream_assist.llama")

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"  # the server's, and its model process's

# ggml.h's enum ggml_log_level (llama-cpp-python's own _logger.py still has the older order):
# NONE 0, DEBUG 1, INFO 2, WARN 3, ERROR 4, CONT 5 (continues the previous line)
_LEVELS = {0: logging.DEBUG, 1: logging.DEBUG, 2: logging.DEBUG, 3: logging.WARNING, 4: logging.ERROR}
_CONT = 5


class _LineRouter:
    """Joins ggml's pieces into lines (it sends a line in parts, the later ones at CONT level) and logs each."""

    def __init__(self) -> None:
        import llama_cpp

        self._level = logging.DEBUG
        self._pending = ""
        self.callback = llama_cpp.llama_log_callback(self._on_log)  # kept alive by this object

    def _on_log(self, level: int, text: bytes, user_data: ctypes.c_void_p) -> None:
        if level != _CONT:
            self._level = _LEVELS.get(level, logging.DEBUG)
        if not log.isEnabledFor(self._level):  # the common case: chatter below the shown level costs nothing
            self._pending = ""
            return
        self._pending += text.decode("utf-8", errors="replace")
        *lines, self._pending = self._pending.split("\n")
        for line in lines:
            if line.strip():
                log.log(self._level, "%s", line.rstrip())


_router: _LineRouter | None = None


def route_llama_logs() -> None:
    """Sends llama.cpp's, mtmd's and mtmd helper's logs to the `stream_assist.llama` logger (idempotent).

    Call it before loading a model, in every process that loads one."""
    global _router
    if _router is not None:
        return
    import llama_cpp
    import llama_cpp.mtmd_cpp as mtmd

    _router = _LineRouter()
    for setter in (llama_cpp.llama_log_set, mtmd.mtmd_log_set, mtmd.mtmd_helper_log_set):
        setter(_router.callback, ctypes.c_void_p(0))


def build_info() -> str:
    """Which llama.cpp build runs: its threading (OpenMP or ggml's own pool) and GPU offload."""
    import llama_cpp

    threading = "OpenMP" if uses_openmp() else "ggml's thread pool (no OpenMP)"
    gpu = "GPU offload" if llama_cpp.llama_supports_gpu_offload() else "CPU only"
    return f"llama-cpp-python {llama_cpp.__version__}, {threading}, {gpu}"


def uses_openmp() -> bool:
    """True for an OpenMP build, whose decoding is ~1.7x slower off the process's main thread."""
    import llama_cpp

    llama_cpp.llama_backend_init()  # where the CPU backend is a loadable module (the container image), load it first
    return "OPENMP = 1" in llama_cpp.llama_print_system_info().decode(errors="replace")
