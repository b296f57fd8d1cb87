"""Resume: a session's state outlives its connection for server.resume_s, by token; real aiortc peers."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import aiohttp
import pytest

from stream_assist.bench.synthetic_client import connect
from stream_assist.server.resume import MAX_KEPT, ResumeRegistry
from stream_assist.server.session_state import SessionState

from .conftest import keeps_streaming, running_server, small_config

pytestmark = pytest.mark.asyncio(loop_scope="session")

SETTINGS = {"type": "settings", "preset": "next_step", "task": "true a bicycle wheel", "interval_s": 2}


async def until(condition: Callable[[], bool], timeout: float = 30.0) -> None:
    """Polls a condition of server state the test cannot await directly (the registry's timers)."""
    async with asyncio.timeout(timeout):
        while not condition():
            await asyncio.sleep(0.02)


async def set_up(client) -> dict:  # noqa: ANN001 - synthetic Client
    """Sets the test's settings and pauses; returns the status that confirms the pause."""
    client.send(SETTINGS)
    await client.next_message("status")
    client.send({"type": "pause"})
    return await client.next_message("status")


def same_settings(status: dict, other: dict) -> bool:
    return all(status[k] == other[k] for k in ("preset", "task", "interval_s", "paused"))


async def test_a_closed_session_comes_back_with_its_settings_and_guidance(server) -> None:
    base, state = server
    client = await connect(base)
    token = client.ready["resume_token"]
    assert client.ready["resumed"] is False
    await client.next_message("guidance")
    before = await set_up(client)
    session = state.sessions[client.ready["session"]]
    await client.close()
    await asyncio.wait_for(session.closed.wait(), 60)
    assert token in state.resume
    again = await connect(base, resume=token)
    try:
        ready = again.ready
        assert ready["resumed"] is True and ready["resume_token"] == token and ready["session"] != session.id
        assert same_settings(ready, before) and ready["paused"] is True
        assert ready["recent"] and ready["recent"] == list(session.state.recent)  # the last few guidance texts
        assert token not in state.resume  # taken, not copied
        new = state.sessions[ready["session"]]
        assert new.state is session.state  # the very state, the assistant's task slot included
        again.send({"type": "resume"})  # the resumed, paused session streams again when asked
        assert (await again.next_message("status"))["paused"] is False
        await keeps_streaming(again)
    finally:
        await again.close()


async def test_an_open_session_with_the_same_token_is_replaced_and_told_so(server) -> None:
    """The old peer has not noticed it is dead, or the same page connected twice: the newer connection wins."""
    base, state = server
    old = await connect(base)
    try:
        before = await set_up(old)
        old_session = state.sessions[old.ready["session"]]
        new = await connect(base, resume=old.ready["resume_token"])
        try:
            notice = await old.next_message("error", timeout=30)
            assert notice["code"] == "replaced"
            assert old_session.closed.is_set() and old_session.id not in state.sessions
            assert new.ready["resumed"] is True and same_settings(new.ready, before)
        finally:
            await new.close()
    finally:
        await old.close()


async def test_unclaimed_state_is_freed_after_resume_s_and_unknown_tokens_start_fresh(vision_model) -> None:
    config = small_config()
    config.server.resume_s = 0.3
    async with running_server(vision_model, config) as (base, state):
        client = await connect(base)
        token = client.ready["resume_token"]
        await set_up(client)
        session = state.sessions[client.ready["session"]]
        await client.close()
        await asyncio.wait_for(session.closed.wait(), 60)
        async with aiohttp.ClientSession() as http, http.get(f"{base}/health") as res:
            assert (await res.json())["resumable"] == 1
        await until(lambda: token not in state.resume)
        assert state.resume.freed == 1
        async with aiohttp.ClientSession() as http, http.get(f"{base}/health") as res:
            assert (await res.json())["resumable"] == 0
        for offered in (token, "WellFormedButNeverIssued_1"):  # expired, and never known: both a fresh identity
            fresh = await connect(base, resume=offered)
            try:
                ready = fresh.ready
                assert ready["resumed"] is False and ready["resume_token"] == offered
                assert (ready["preset"], ready["task"], ready["paused"], ready["recent"]) == ("describe", "", False, [])
            finally:
                await fresh.close()


async def test_registry_takes_once_replaces_and_stays_bounded() -> None:
    registry = ResumeRegistry(60.0)
    first, second = SessionState(), SessionState()
    registry.keep("a" * 16, first)
    registry.keep("a" * 16, second)  # a newer state for the same token replaces the older
    assert len(registry) == 1 and registry.take("a" * 16) is second and registry.take("a" * 16) is None
    for n in range(MAX_KEPT + 5):
        registry.keep(f"token-{n:010d}", SessionState())
    assert len(registry) == MAX_KEPT and "token-0000000000" not in registry and f"token-{MAX_KEPT + 4:010d}" in registry
    registry.clear()
    assert len(registry) == 0
