"""Access control: nothing is needed on loopback; elsewhere the token is, checked on every data route."""

from __future__ import annotations

import asyncio
import os
import signal
from pathlib import Path

import aiohttp
import pytest

from stream_assist.bench.server_process import start_server_process
from stream_assist.bench.synthetic_client import connect
from stream_assist.config import Config
from stream_assist.inference.model_source import ModelFiles
from stream_assist.server.access import is_loopback, resolve_token

from .conftest import running_server


def test_token_rules() -> None:
    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("localhost")
    assert not is_loopback("0.0.0.0") and not is_loopback("192.168.1.5")
    assert resolve_token("127.0.0.1", "") is None
    assert resolve_token("127.0.0.1", "given") == "given"
    first, second = resolve_token("0.0.0.0", ""), resolve_token("0.0.0.0", "")
    assert first and second and first != second and len(first) >= 20


@pytest.mark.asyncio(loop_scope="session")
async def test_protected_routes_need_the_token(vision_model) -> None:
    config = Config()
    config.server.token = "s3cret-token"
    async with running_server(vision_model, config) as (base, _):
        async with aiohttp.ClientSession() as http:
            for path in ("/metrics", "/stats", "/sessions/x/enhanced.jpg"):
                async with http.get(base + path) as res:
                    assert res.status == 401 and "token" in (await res.json())["error"]
                async with http.get(base + path, headers={"Authorization": "Bearer wrong"}) as res:
                    assert res.status == 401
            async with http.post(base + "/offer", json={"sdp": "v=0", "type": "offer"}) as res:
                assert res.status == 401
            async with http.get(base + "/metrics", headers={"Authorization": "Bearer s3cret-token"}) as res:
                assert res.status == 200
            async with http.get(base + "/stats?token=s3cret-token") as res:
                assert res.status == 200
            async with http.get(base + "/") as res:  # the page itself holds nothing
                assert res.status == 200
        with pytest.raises(RuntimeError, match="401"):
            await connect(base)


@pytest.mark.asyncio(loop_scope="session")
async def test_serving_beyond_loopback_prints_a_token_url_and_qr(tiny_files: ModelFiles, tmp_path: Path) -> None:
    proc, url = await start_server_process(tiny_files, "--host", "0.0.0.0", env={**os.environ, "HOME": str(tmp_path)},
                                           timeout=120)
    try:
        assert url.startswith("http://127.0.0.1:") and "?token=" in url
        base, token = url.split("/?token=")
        async with aiohttp.ClientSession() as http:
            async with http.get(base + "/metrics") as res:
                assert res.status == 401
            async with http.get(base + "/metrics", headers={"Authorization": f"Bearer {token}"}) as res:
                assert res.status == 200
        rest = b""
        while b"\xe2\x96\x88" not in rest:  # the QR code's blocks
            rest += await asyncio.wait_for(proc.stdout.readline(), 30)
    finally:
        proc.send_signal(signal.SIGTERM)
        await asyncio.wait_for(proc.wait(), 30)
