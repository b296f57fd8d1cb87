"""A browser that vanishes without closing: its session is reaped, and everything it held is freed."""

from __future__ import annotations

import asyncio
import sys
import time

from stream_assist.bench.synthetic_client import connect

from .conftest import keeps_streaming, running_server, small_config

BROWSER = """
import asyncio, sys
from stream_assist.bench.synthetic_client import connect

async def main():
    client = await connect(sys.argv[1])
    print(client.ready["session"], flush=True)
    await client.next_message("guidance")
    print("streaming", flush=True)
    await asyncio.Event().wait()

asyncio.run(main())
"""


async def test_browser_killed_mid_stream_is_reaped_and_its_slot_freed(vision_model) -> None:
    config = small_config()
    config.server.peer_timeout_s = 2.0
    async with running_server(vision_model, config) as (base, state):
        bystander = await connect(base)
        browser = await asyncio.create_subprocess_exec(sys.executable, "-c", BROWSER, base,
                                                       stdout=asyncio.subprocess.PIPE)
        try:
            session_id = (await asyncio.wait_for(browser.stdout.readline(), 120)).decode().strip()
            assert await asyncio.wait_for(browser.stdout.readline(), 120) == b"streaming\n"
            session = state.sessions[session_id]
        finally:
            browser.kill()  # no close, no BYE: the process is simply gone
            await browser.wait()
        killed = time.monotonic()
        await asyncio.wait_for(session.closed.wait(), 60)
        reaped = time.monotonic() - killed
        assert session_id not in state.sessions and set(state.sessions) == {next(iter(state.sessions))}
        assert session_id not in [c.key for c in state.worker._clients] and not session.slot.full
        assert session.pc.connectionState == "closed"
        await keeps_streaming(bystander)
        await bystander.close()
    print(f"\nfault: browser killed mid-stream: session reaped {reaped:.1f} s later (server.peer_timeout_s 2)")
