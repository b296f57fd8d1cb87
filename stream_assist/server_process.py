"""Runs `stream-assist serve` as a child process and waits for the URL it prints once it is listening.

Used where the server must be a process of its own: the load and soak benchmarks (its CPU, memory and
descriptors are then its own) and the tests of the command as a user runs it.
"""

from __future__ import annotations

import asyncio
import sys

from .model_source import ModelFiles

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
    if not line.startswith(b"stream-assist: open "):
        proc.kill()
        await proc.wait()
        raise RuntimeError(f"server did not start: {line!r}")
    return proc, line.decode().split("open ", 1)[1].strip().rstrip("/")
