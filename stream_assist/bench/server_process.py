"""Servers as child processes: `stream-assist serve` (waiting for the URL it prints once listening) and
llama-cpp-python's OpenAI-compatible inference server.

Used where a server must be a process of its own: the load and soak benchmarks (its CPU, memory and
descriptors are then its own), the tests of the command as a user runs it, and the inference endpoints
the remote backend is tested against.
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import sys

from ..inference.model_source import ModelFiles

Started = tuple[asyncio.subprocess.Process, str]


async def start_server_process(files: ModelFiles | None, *args: str, env: dict[str, str] | None = None,
                               keep_stderr: bool = False, timeout: float = 600) -> Started:
    """Starts the server on a free port with the given model (None: args say, e.g. --endpoint) and extra
    arguments; returns it and its URL."""
    model = ["--model", str(files.text), "--mmproj", str(files.mmproj)] if files is not None else []
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "stream_assist", "serve", "--port", "0", *model, *args, env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE if keep_stderr else asyncio.subprocess.DEVNULL)
    line = await asyncio.wait_for(proc.stdout.readline(), timeout)
    while line.startswith(b"stream-assist: source "):  # what a camera source is, printed before the URL
        line = await asyncio.wait_for(proc.stdout.readline(), timeout)
    if not line.startswith(b"stream-assist: open "):
        proc.kill()
        await proc.wait()
        raise RuntimeError(f"server did not start: {line!r}")
    return proc, line.decode().split("open ", 1)[1].strip().rstrip("/")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class LlamaCppServer:
    """`python -m llama_cpp.server` (llama-cpp-python's `server` extra) as an OpenAI-compatible inference
    endpoint on a fixed port, so a restart comes back at the same URL: what the remote-inference tests
    route to, kill, freeze and restart, and what `bench load --endpoints` starts."""

    def __init__(self, files: ModelFiles, threads: int = 1) -> None:
        self.files = files
        self.threads = threads
        self.port = free_port()
        self.proc: asyncio.subprocess.Process | None = None
        self._drain: asyncio.Task | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    async def start(self) -> None:
        """Starts it and returns once uvicorn says it is listening."""
        self.proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "llama_cpp.server", "--model", str(self.files.text),
            "--clip_model_path", str(self.files.mmproj), "--chat_format", "mtmd", "--host", "127.0.0.1",
            "--port", str(self.port), "--n_ctx", "4096", "--n_threads", str(self.threads), "--verbose", "false",
            stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE)
        seen = []
        while b"Uvicorn running on" not in (line := await asyncio.wait_for(self.proc.stderr.readline(), 120)):
            seen.append(line)
            if not line:
                raise RuntimeError(f"llama_cpp.server did not start: {b''.join(seen[-20:]).decode(errors='replace')}")
        self._drain = asyncio.ensure_future(self._discard(self.proc.stderr))  # a full pipe would stall it

    @staticmethod
    async def _discard(stream: asyncio.StreamReader) -> None:
        while await stream.read(65536):
            pass

    def freeze(self) -> None:
        """SIGSTOP: the port still accepts connections, nothing answers (a hung server)."""
        os.kill(self.proc.pid, signal.SIGSTOP)

    def thaw(self) -> None:
        os.kill(self.proc.pid, signal.SIGCONT)

    async def kill(self) -> None:
        """SIGKILL: open connections are reset, new ones refused."""
        if self.proc is not None and self.proc.returncode is None:
            self.proc.kill()
            await self.proc.wait()
        if self._drain is not None:
            await self._drain
