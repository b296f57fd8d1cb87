"""The embedded model in a process of its own, driven from that process's main thread.

Why: with an OpenMP build of llama.cpp (pip's default) decoding is ~1.7x slower from any thread but the
process's main thread, and a crash inside llama.cpp (SIGSEGV, abort) would end the whole server. Here a
spawned child loads the VisionModel and answers on its main thread; frames go in through one reusable
shared-memory buffer, text pieces and the Generation come back over a pipe. A child that dies or hangs
costs the frame in flight an error; the next frame gets a new child, after an exponential back-off.
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing
import signal
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from multiprocessing.connection import Connection
from multiprocessing.shared_memory import SharedMemory

import numpy as np

from ..config import ModelConfig
from .llama_log import LOG_FORMAT, build_info, route_llama_logs, uses_openmp
from .model_source import ModelFileError, ModelFiles
from .verdict import Choices
from .vision_model import Generation, VisionModel

log = logging.getLogger(__name__)

HANG_GRACE_S = 2.0  # past model.timeout_s (which the child enforces itself), the child counts as hung
FIRST_BACKOFF_S = 0.5  # the first restart waits this long, each further failure twice as long
LOAD_TIMEOUT_S = 600.0  # far beyond any model load seen (seconds), short of never
INITIAL_FRAME_BYTES = 1024 * 768 * 3  # the shared buffer grows when a larger frame comes


class ModelProcessError(RuntimeError):
    """The model process died or hung; the frame in flight is lost and a new process will be started."""


@dataclass
class _Request:
    frames: str  # the shared-memory buffer's name (it changes when the buffer grows)
    shape: tuple[int, int, int]
    prompt: str
    choices: Choices | None = None
    context: str = ""


_ERRORS: dict[str, type[Exception]] = {"ValueError": ValueError, "TimeoutError": TimeoutError}


def _answer(model: VisionModel, conn: Connection, frames: SharedMemory, request: _Request) -> None:
    """Runs one describe on a view of the shared frame, streaming pieces; any error goes back as a message."""
    rgb = np.ndarray(request.shape, np.uint8, frames.buf)
    try:
        conn.send(("done", model.describe(rgb, request.prompt, lambda piece: conn.send(("text", piece)),
                                            choices=request.choices, context=request.context)))
    except Exception as e:  # this frame failed; the model stays loaded for the next one
        conn.send(("error", type(e).__name__, str(e)))


def _child_main(conn: Connection, files: ModelFiles, config: ModelConfig, log_level: int) -> None:
    """The model process: loads the model, then answers requests on this, its main thread, until told to stop."""
    logging.basicConfig(level=log_level, format=LOG_FORMAT)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the whole group; the server stops us in order
    route_llama_logs()
    try:
        model = VisionModel(files, config)
    except Exception as e:
        conn.send(("failed", str(e)))
        return
    conn.send(("ready", model.load_seconds))
    frames: SharedMemory | None = None
    try:
        while (request := conn.recv()) is not None:
            if frames is None or frames.name != request.frames:
                if frames is not None:
                    frames.close()
                frames = SharedMemory(request.frames)
            _answer(model, conn, frames, request)
    except (EOFError, BrokenPipeError):  # the server is gone: so are we
        pass
    finally:
        if frames is not None:
            frames.close()
        model.close()


def _exit_reason(code: int | None) -> str:
    if code is None:
        return "hung"
    if code < 0:
        with contextlib.suppress(ValueError):
            return f"killed by {signal.Signals(-code).name}"
    return f"exited with code {code}"


class ModelProcess:
    """A Describer (see worker.py) whose VisionModel runs in a child process, restarted when it dies."""

    parallel = 1  # one frame at a time, like the VisionModel it runs

    def __init__(self, files: ModelFiles, config: ModelConfig) -> None:
        self.files = files
        self.config = config
        self.restarts = 0  # processes started after one died or hung
        self.failures = 0  # deaths, hangs and failed starts since the last answer
        self.last_error = ""
        self._spawn = multiprocessing.get_context("spawn")  # fork would copy the server's threads and locks
        self._frames: SharedMemory | None = SharedMemory(create=True, size=INITIAL_FRAME_BYTES)
        self._proc: multiprocessing.process.BaseProcess | None = None
        self._conn: Connection | None = None
        try:
            self._start()
        except ModelProcessError as e:  # e.g. a build that crashes loading this model: a one-line error at start
            self._release_frames()
            raise ModelFileError(f"cannot load {files.text.name}: {e}") from None
        except Exception:
            self._release_frames()
            raise
        log.info("model runs in process %d on its main thread (%s)", self._proc.pid, build_info())

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    def _start(self) -> None:
        """Starts a child and waits until its model is loaded; raises ModelFileError if it cannot load it."""
        ours, theirs = self._spawn.Pipe()
        proc = self._spawn.Process(target=_child_main, name="stream-assist-model", daemon=True,
                                   args=(theirs, self.files, self.config, logging.getLogger().getEffectiveLevel()))
        proc.start()
        theirs.close()
        if not ours.poll(LOAD_TIMEOUT_S):  # a load stuck in llama.cpp must not hold the worker for ever
            proc.kill()
            proc.join()
            ours.close()
            raise ModelProcessError(f"the model process did not finish loading within {LOAD_TIMEOUT_S:g} s")
        try:
            kind, detail = ours.recv()
        except EOFError:
            proc.join()
            ours.close()
            raise ModelProcessError(f"the model process {_exit_reason(proc.exitcode)} while loading") from None
        if kind == "failed":
            proc.join()
            ours.close()
            raise ModelFileError(detail)
        self._proc, self._conn = proc, ours

    def _lost(self, reason: str) -> ModelProcessError:
        """Ends the child (if it still runs) after it died or hung; returns the error for the frame in flight."""
        proc, conn = self._proc, self._conn
        self._proc = self._conn = None
        if proc.is_alive():
            proc.kill()
        proc.join()
        conn.close()
        self.failures += 1
        self.last_error = f"the model process {reason or _exit_reason(proc.exitcode)}"
        log.error("%s; a new one starts with the next frame", self.last_error)
        return ModelProcessError(f"{self.last_error}; restarting it")

    def _backoff(self) -> float:
        return min(self.config.max_restart_backoff_s, FIRST_BACKOFF_S * 2 ** max(0, self.failures - 1))

    def _restart(self, stopping: threading.Event) -> bool:
        """Starts a new child after the back-off, trying again until one loads; False when stopping first."""
        while not stopping.wait(self._backoff()):
            try:
                self._start()
            except Exception as e:  # e.g. it crashed again while loading: wait longer, try again
                self.failures += 1
                self.last_error = str(e)
                log.error("restarting the model process failed: %s", e)
                continue
            self.restarts += 1
            log.warning("model process restarted (pid %d, %d restarts so far)", self._proc.pid, self.restarts)
            return True
        return False

    @contextlib.contextmanager
    def lease(self, stopping: threading.Event) -> Iterator[Callable[..., Generation] | None]:
        """The describe function, once a child is running (after a back-off if the last one died)."""
        if self._proc is None and not self._restart(stopping):
            yield None
            return
        yield self.describe

    def _put_frame(self, rgb: np.ndarray) -> None:
        """Copies the frame into the shared buffer, growing it first if the frame is larger."""
        if rgb.nbytes > self._frames.size:
            self._release_frames()
            self._frames = SharedMemory(create=True, size=rgb.nbytes)
        np.ndarray(rgb.shape, np.uint8, self._frames.buf)[...] = rgb

    def describe(self, rgb: np.ndarray, prompt: str, on_text: Callable[[str], None] | None = None,
                 choices: Choices | None = None, context: str = "") -> Generation:
        """Answers prompt about an RGB frame in the child, streaming text pieces to on_text as they come (with
        choices, a verdict; context before the image: VisionModel.describe)."""
        if not isinstance(rgb, np.ndarray) or rgb.dtype != np.uint8 or rgb.ndim != 3 or rgb.shape[2] != 3:
            raise ValueError(f"expected an RGB uint8 frame, got {getattr(rgb, 'dtype', type(rgb))} "
                             f"{getattr(rgb, 'shape', '')}")
        if self._conn is None:
            raise ModelProcessError(f"{self.last_error}; restarting it")
        self._put_frame(rgb)
        try:
            self._conn.send(_Request(self._frames.name, rgb.shape, prompt, choices, context))
        except OSError:  # it died between frames
            raise self._lost("") from None
        deadline = time.monotonic() + self.config.timeout_s + HANG_GRACE_S
        callback_error: Exception | None = None
        while True:
            if not self._conn.poll(max(0.0, deadline - time.monotonic())):
                raise self._lost(f"gave no answer within {self.config.timeout_s + HANG_GRACE_S:g} s (hung)")
            try:
                kind, *detail = self._conn.recv()
            except (EOFError, OSError):
                raise self._lost("") from None
            if kind == "text":
                if on_text is not None and callback_error is None:
                    try:
                        on_text(detail[0])
                    except Exception as e:  # raised once the answer is in, so the pipe stays in step
                        callback_error = e
            elif kind == "done":
                self.failures = 0
                if callback_error is not None:
                    raise callback_error
                return detail[0]
            else:
                raise _ERRORS.get(detail[0], RuntimeError)(detail[1])

    def health(self) -> dict:
        """The model process's state for /health."""
        proc = self._proc  # read once: the worker thread may drop it meanwhile
        return {"pid": proc.pid if proc else None, "alive": proc is not None and proc.is_alive(),
                "restarts": self.restarts, "failures": self.failures, "last_error": self.last_error}

    def _release_frames(self) -> None:
        if self._frames is not None:
            self._frames.close()
            self._frames.unlink()
            self._frames = None

    def close(self) -> None:
        """Stops the child (it frees its model) and frees the shared buffer."""
        if self._proc is not None:
            with contextlib.suppress(OSError):
                self._conn.send(None)
            self._proc.join(10)
            if self._proc.is_alive():
                self._proc.kill()
                self._proc.join()
            self._conn.close()
            self._proc = self._conn = None
        self._release_frames()


def embedded_model(files: ModelFiles, config: ModelConfig) -> ModelProcess | VisionModel:
    """The embedded model as model.process says (its own process, or inline in the worker thread), quiet."""
    route_llama_logs()  # llama.cpp's chatter at DEBUG (shown with --verbose), its warnings and errors kept
    if config.process == "child":
        return ModelProcess(files, config)
    model = VisionModel(files, config)
    log.info("model runs in the server's inference thread (%s)%s", build_info(),
             "; this build decodes ~1.7x slower there than with model.process = child" if uses_openmp() else "")
    return model
