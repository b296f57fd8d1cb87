"""Real aiortc peers streaming synthetic video into the real server and its tiny model."""

from __future__ import annotations

import asyncio
import json

import pytest

from stream_assist.bench.synthetic_client import connect
from stream_assist.latency.timeline import STAGES
from stream_assist.server.protocol import RateLimit

from .conftest import keeps_streaming

pytestmark = pytest.mark.asyncio(loop_scope="session")


async def test_guidance_arrives_with_timeline_and_counters(server) -> None:
    base, state = server
    client = await connect(base)
    try:
        assert client.ready["state"] == "ready" and "describe" in client.ready["presets"]
        first = await client.next_message("guidance")
        second = await client.next_message("guidance")
        assert isinstance(first["text"], str)
        assert second["frame_id"] > first["frame_id"] >= 1
        timeline = second["timeline"]
        assert list(timeline) == [s for s in STAGES if s != "speech_out"]  # no server voice: nothing spoken
        assert list(timeline.values()) == sorted(timeline.values())
        counters = second["counters"]
        assert counters["received"] >= counters["sampled"] >= counters["processed"] >= 2
        # every frame put in the slot was either taken, dropped for a newer one, or is waiting there now
        assert counters["queued"] - counters["processed"] - counters["dropped"] in (0, 1)
    finally:
        await client.close()


async def test_a_session_guided_every_n_seconds_sends_no_frame_sooner(server) -> None:
    base, state = server
    client, bystander = await connect(base), await connect(base)
    try:
        session = state.sessions[client.ready["session"]]
        await client.next_message("guidance")
        client.send({"type": "settings", "interval_s": 600})
        status = await client.next_message("status")
        assert status["interval_s"] == 600.0
        queued = session.slot.counters.put
        for _ in range(3):  # the bystander keeps being guided meanwhile; this session's frames are held back
            await keeps_streaming(bystander)
        assert session.too_soon > 0 and session.slot.counters.put <= queued + 1  # + one already being enhanced
        client.send({"type": "settings", "interval_s": 0})
        await client.next_message("status")
        held, guided = session.too_soon, session.guidance_sent
        message = await client.next_message("guidance")
        while message["counters"]["guidance"] <= guided:  # one answered before the change may still arrive
            message = await client.next_message("guidance")
        assert session.too_soon == held  # guided again, and no frame held back since
    finally:
        await client.close()
        await bystander.close()


async def test_settings_pause_and_resume(server) -> None:
    base, _ = server
    client = await connect(base)
    try:
        client.send({"type": "settings", "preset": "next_step", "task": "assemble a shelf"})
        status = await client.next_message("status")
        assert (status["state"], status["preset"], status["task"]) == ("settings", "next_step", "assemble a shelf")
        client.send({"type": "pause"})
        status = await client.next_message("status")
        assert status["paused"] is True
        processed = status["counters"]["processed"]
        client.send({"type": "resume"})
        assert (await client.next_message("status"))["paused"] is False
        guidance = await client.next_message("guidance")
        while guidance["counters"]["processed"] <= processed:  # the answer to a frame in flight at the pause
            guidance = await client.next_message("guidance")
        assert guidance["counters"]["processed"] > processed  # frames go to the model again after resume
    finally:
        await client.close()


@pytest.mark.parametrize(("raw", "code"), [
    ('{"type":"launch"}', "unknown_type"),
    ('{"type":"settings","note":"' + "x" * 5000 + '"}', "too_large"),
    ("not json", "bad_json"),
    ('{"type":"settings","preset":"custom","prompt":""}', "bad_field"),
    (b"\x00\x01binary", "bad_message"),
])
async def test_bad_channel_messages_get_errors_while_another_session_keeps_guidance(server, raw, code) -> None:
    base, _ = server
    bystander = await connect(base)
    offender = await connect(base)
    try:
        await bystander.next_message("guidance")
        offender.send(raw)
        error = await offender.next_message("error")
        assert error["code"] == code and error["message"]
        # both sessions still work: the offender's settings are unchanged, the bystander still gets guidance
        offender.send({"type": "settings"})
        status = await offender.next_message("status")
        assert status["state"] == "settings" and status["preset"] == "describe"
        await keeps_streaming(bystander)
    finally:
        await offender.close()
        await bystander.close()


async def test_closing_a_session_frees_it(server) -> None:
    base, state = server
    client = await connect(base)
    session = state.sessions[client.ready["session"]]
    await client.next_message("guidance")
    slot = session.slot
    await client.close()
    await asyncio.wait_for(session.closed.wait(), 60)  # the server learns of the close over DTLS
    assert session.id not in state.sessions
    assert not slot.full and session.id not in [c.key for c in state.worker._clients]


async def test_still_scene_is_not_asked_again_until_it_changes(server) -> None:
    base, state = server
    client = await connect(base)
    try:
        session = state.sessions[client.ready["session"]]
        session.gate.threshold = 3.0  # this session gates as the default configuration does
        session.rate = RateLimit(10_000)  # the test asks for counters as fast as they come back
        client.camera.still = True
        first = await client.next_message("guidance")
        while True:  # ask for counters until the gate has turned frames away
            client.send({"type": "resume"})
            counters = (await client.next_message("status"))["counters"]
            if counters["unchanged"] >= 5:
                break
        assert counters["guidance"] == first["counters"]["guidance"]  # no new guidance for the still scene
        client.camera.still = False
        moved = await client.next_message("guidance")
        assert moved["frame_id"] > first["frame_id"] and moved["counters"]["unchanged"] >= 5
    finally:
        await client.close()


async def test_clock_channel_answers_pings_and_refuses_other_messages(server) -> None:
    base, _ = server
    client = await connect(base)
    try:
        clock = client.pc.createDataChannel("clock", ordered=False, maxRetransmits=0)
        pongs: asyncio.Queue = asyncio.Queue()
        clock.on("message", lambda m: pongs.put_nowait(json.loads(m)))
        opened = asyncio.get_running_loop().create_future()
        clock.on("open", lambda: opened.done() or opened.set_result(True))
        await asyncio.wait_for(opened, 30)
        clock.send(json.dumps({"type": "ping", "t0": 1234.5}))
        pong = await asyncio.wait_for(pongs.get(), 30)
        assert pong["type"] == "pong" and pong["t0"] == 1234.5 and pong["t1"] <= pong["t2"]
        clock.send(json.dumps({"type": "ping", "t0": "soon"}))
        assert (await client.next_message("error"))["code"] == "bad_field"
    finally:
        await client.close()


async def test_a_flood_of_messages_is_cut_off_and_other_sessions_keep_guidance(server) -> None:
    base, _ = server
    bystander = await connect(base)
    flooder = await connect(base)
    try:
        await bystander.next_message("guidance")
        for _ in range(300):
            flooder.send({"type": "settings", "task": "again"})
        error = await flooder.next_message("error")
        assert error["code"] == "rate_limited"
        await keeps_streaming(bystander)
    finally:
        await flooder.close()
        await bystander.close()


async def test_a_frame_that_fails_to_convert_is_counted_and_skipped(server) -> None:
    base, state = server
    client = await connect(base)
    try:
        session = state.sessions[client.ready["session"]]
        prepare, broken = session._prepare, []

        def fails_once(item, *rest):  # a corrupt frame, injected at the conversion step
            if not broken:
                broken.append(item.frame_id)
                raise ValueError("corrupt frame")
            return prepare(item, *rest)

        session._prepare = fails_once
        guidance = await client.next_message("guidance")
        while not guidance["counters"]["failed"]:
            guidance = await client.next_message("guidance")
        assert guidance["counters"]["failed"] == 1 and guidance["frame_id"] > broken[0]
    finally:
        await client.close()
