"""A real `python -m llama_cpp.server` process running the tiny model: an OpenAI-compatible endpoint to
route to, kill, freeze and restart in the remote-inference tests."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import sys

from stream_assist.model_source import ModelFiles


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class InferenceServer:
    """One llama_cpp.server on a fixed port, so a restart comes back at the same URL."""

    def __init__(self, files: ModelFiles) -> None:
        self.files = files
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
            "--port", str(self.port), "--n_ctx", "1024", "--n_threads", "1", "--verbose", "false",
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
