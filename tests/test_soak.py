"""A short soak: sessions that come and go leave nothing behind (the full one is `stream-assist bench soak`)."""

from __future__ import annotations

import asyncio
import os

import pytest

from stream_assist.bench.synthetic_client import connect

pytestmark = pytest.mark.asyncio(loop_scope="session")


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


async def test_connect_stream_disconnect_cycles_release_sessions_slots_and_sockets(server) -> None:
    base, state = server

    ids: list[str] = []

    async def cycle() -> None:
        client = await connect(base)
        session = state.sessions[client.ready["session"]]
        ids.append(session.id)
        await client.next_message("guidance")
        await client.close()
        await asyncio.wait_for(session.closed.wait(), 60)

    for _ in range(3):
        await cycle()
    fds, retired = open_fds(), state.metrics.retired["guidance"]
    for _ in range(12):
        await cycle()
    assert open_fds() <= fds  # every peer's sockets closed (both ends live in this process)
    registered = {c.key for c in state.worker._clients}
    assert not set(ids) & (set(state.sessions) | registered)  # no session, slot or worker registration left
    assert state.metrics.retired["guidance"] >= retired + 12  # closed sessions' counts kept in the totals
