"""`stream-assist serve` as a user runs it: a real process, TLS, and a clean stop on SIGTERM."""

from __future__ import annotations

import asyncio
import os
import signal
import ssl
from pathlib import Path

import aiohttp
import pytest

from stream_assist.bench.server_process import LlamaCppServer, start_server_process
from stream_assist.bench.synthetic_client import connect
from stream_assist.cli import main
from stream_assist.inference.model_source import ModelFiles

SESSION_LOOP = pytest.mark.asyncio(loop_scope="session")


async def start_server(files: ModelFiles | None, home: Path, *extra: str) -> tuple[asyncio.subprocess.Process, str]:
    return await start_server_process(files, *extra, env={**os.environ, "HOME": str(home)}, keep_stderr=True,
                                      timeout=120)


@SESSION_LOOP
async def test_sigterm_tells_sessions_closes_them_and_exits(tiny_files: ModelFiles, tmp_path: Path) -> None:
    proc, url = await start_server(tiny_files, tmp_path)
    try:
        assert url.startswith("http://127.0.0.1:")
        client = await connect(url)
        await client.next_message("guidance")
        proc.send_signal(signal.SIGTERM)
        closing = await client.next_message("status")
        while closing["state"] != "closing":
            closing = await client.next_message("status")
        rc = await asyncio.wait_for(proc.wait(), 30)
        stderr = (await proc.stderr.read()).decode()
        assert rc == 0, stderr[-2000:]
        assert "closed 1 sessions, stopped the worker, freed the model" in stderr
        await client.close()
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


@SESSION_LOOP
async def test_self_signed_https(tiny_files: ModelFiles, tmp_path: Path) -> None:
    proc, url = await start_server(tiny_files, tmp_path, "--self-signed")
    try:
        assert url.startswith("https://127.0.0.1:")
        cert = tmp_path / ".cache" / "stream-assist" / "tls" / "cert.pem"
        context = ssl.create_default_context(cafile=str(cert))  # verifies the chain and the IP address
        async with aiohttp.ClientSession() as http:
            async with http.get(url + "/health", ssl=context) as res:
                assert res.status == 200 and (await res.json())["model_loaded"] is True
    finally:
        proc.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(proc.wait(), 30) == 0


@SESSION_LOOP
async def test_serve_with_an_endpoint_loads_no_model_and_guides_from_it(tiny_files: ModelFiles, tmp_path: Path) -> None:
    inference = LlamaCppServer(tiny_files)
    await inference.start()
    proc, url = await start_server(None, tmp_path, "--endpoint", inference.url)
    try:
        client = await connect(url)
        assert (await client.next_message("guidance"))["engine"] == inference.url
        await client.close()
        async with aiohttp.ClientSession() as http, http.get(url + "/health") as res:
            health = await res.json()
        assert health["model"] == inference.url and health["endpoints"][0]["healthy"]
    finally:
        proc.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(proc.wait(), 30) == 0
        await inference.kill()


@pytest.mark.parametrize(("args", "needle"), [
    (["--endpoint", "ftp://gpu1/v1"], "openai.endpoints must be"),
    (["--config", "BROKEN"], "model.backend must be embedded or openai"),
])
def test_bad_backend_settings_are_one_line_errors(args, needle, tmp_path: Path, capsys) -> None:
    broken = tmp_path / "broken.toml"
    broken.write_text('[model]\nbackend = "cloud"\n')
    assert main(["serve", *[str(broken) if a == "BROKEN" else a for a in args]]) == 2
    assert needle in capsys.readouterr().err
