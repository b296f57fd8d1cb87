"""A real aiortc peer speaks (espeak-ng clips as its microphone track) into the real server."""

from __future__ import annotations

import re
from dataclasses import replace
from pathlib import Path

import aiohttp
import numpy as np
import pytest
from aiortc import RTCPeerConnection

from stream_assist.bench.synthetic_client import SyntheticCamera, SyntheticMicrophone, connect

from .conftest import keeps_streaming
from .voice_clips import SENTENCES, clip, to_48k

pytestmark = pytest.mark.asyncio(loop_scope="session")


@pytest.fixture(scope="module")
def clips(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("speech")


async def say(client, clips: Path, text: str) -> dict:  # noqa: ANN001
    """Plays `text` into the client's microphone; returns the server's `heard` for it."""
    client.microphone.play(to_48k(clip(clips, text)))
    return await client.next_message("heard", timeout=60)


async def test_spoken_pause_and_resume_change_the_status_and_a_sentence_changes_nothing(server, clips: Path) -> None:
    base, state = server
    client = await connect(base, microphone=True)
    try:
        session = state.sessions[client.ready["session"]]
        heard = await say(client, clips, "pause")
        assert (heard["text"], heard["command"], heard["accepted"]) == ("pause", "pause", True)
        assert (await client.next_message("status"))["paused"] is True
        heard = await say(client, clips, "resume")
        assert heard["command"] == "resume"
        assert (await client.next_message("status"))["paused"] is False
        def settings() -> tuple:  # copies, so a change in place would show
            return session.state.paused, replace(session.state.prompt), session.assistant.state.policy.hushed

        before = settings()
        heard = await say(client, clips, SENTENCES[0])
        assert heard["accepted"] is False and heard["reason"]
        assert settings() == before
        await keeps_streaming(client)  # video, enhancement and the model carried on throughout
    finally:
        await client.close()


async def test_a_known_task_said_by_name_starts_its_card_after_yes(server, clips: Path) -> None:
    base, _state = server
    client = await connect(base, microphone=True)
    try:
        heard = await say(client, clips, "my task is replace a wall light switch")
        assert (heard["command"], heard["task"]) == ("task", "replace a wall light switch")  # the title, exactly
        assert (await say(client, clips, "yes"))["command"] == "yes"
        task = await client.next_message("task", timeout=60)
        assert task["name"] == "wall-light-switch" and task["step"] == 0 and len(task["steps"]) > 2
    finally:
        await client.close()


async def test_a_monologue_is_no_command_and_another_session_is_unaffected(server, clips: Path) -> None:
    base, state = server
    bystander = await connect(base)
    talker = await connect(base, microphone=True)
    try:
        talk = np.concatenate([trimmed(clip(clips, s)) for s in SENTENCES[:4]])  # ~5 s without a pause
        heard = await say_samples(talker, talk)
        # cut and dropped at max_utterance_s, or, once the room's level has risen with the talk, heard in pieces
        reasons = ("over 3 s of sound: dropped", "too long for a command")
        assert heard["accepted"] is False and heard["reason"] in reasons
        await keeps_streaming(bystander)
        await keeps_streaming(talker)
    finally:
        await talker.close()
        await bystander.close()


def trimmed(samples: np.ndarray) -> np.ndarray:
    loud = np.flatnonzero(np.abs(samples) > 300)
    return samples[loud[0]:loud[-1]]


async def say_samples(client, samples: np.ndarray) -> dict:  # noqa: ANN001
    client.microphone.play(to_48k(samples))
    return await client.next_message("heard", timeout=60)


async def test_an_audio_only_offer_is_refused(server) -> None:
    base, _ = server
    pc = RTCPeerConnection()
    pc.addTransceiver(SyntheticMicrophone(), direction="sendonly")
    pc.createDataChannel("guidance")
    await pc.setLocalDescription(await pc.createOffer())
    try:
        async with aiohttp.ClientSession() as http, http.post(
                f"{base}/offer", json={"sdp": pc.localDescription.sdp, "type": "offer"}) as res:
            assert res.status == 400 and "no video" in (await res.json())["error"]
    finally:
        await pc.close()


def only_amr_audio(sdp: str) -> str:
    """The offer with its audio section offering only AMR-WB, which aiortc does not decode."""
    sections = re.split(r"(?=^m=)", sdp, flags=re.M)
    for i, section in enumerate(sections):
        if section.startswith("m=audio"):
            section = re.sub(r"^(m=audio \d+ \S+) [\d ]+", r"\1 111", section, flags=re.M)
            section = re.sub(r"^a=(rtpmap|fmtp|rtcp-fb):\d+ .*\r\n", "", section, flags=re.M)
            sections[i] = section.replace("a=rtcp-mux\r\n", "a=rtcp-mux\r\na=rtpmap:111 AMR-WB/16000\r\n")
    return "".join(sections)


async def test_an_audio_codec_the_server_lacks_is_declined_and_the_video_accepted(server) -> None:
    base, state = server
    pc = RTCPeerConnection()
    pc.addTransceiver(SyntheticCamera(), direction="sendonly")
    pc.addTransceiver(SyntheticMicrophone(), direction="sendonly")
    pc.createDataChannel("guidance")
    await pc.setLocalDescription(await pc.createOffer())
    try:
        offer = {"sdp": only_amr_audio(pc.localDescription.sdp), "type": "offer"}
        async with aiohttp.ClientSession() as http, http.post(f"{base}/offer", json=offer) as res:
            assert res.status == 200
            answer = (await res.json())["sdp"]
        media = re.findall(r"^m=(\w+) (\d+)", answer, flags=re.M)
        assert [kind for kind, _ in media] == ["video", "audio", "application"]  # every offered section, in order
        assert dict(media)["audio"] == "0" and dict(media)["video"] != "0"  # the audio declined, the rest kept
        assert re.search(r"^a=group:BUNDLE 0 2\r$", answer, flags=re.M)  # a declined section leaves the bundle
    finally:
        await pc.close()
        for session in [s for s in state.sessions.values() if s.channel is None]:
            await session.close()  # the one this offer opened: never connected


async def test_quiet_help_and_speaking_messages(server) -> None:
    base, _ = server
    client = await connect(base)
    try:
        client.send({"type": "quiet"})
        status = await client.next_message("status")
        assert (status["state"], status["quiet"]) == ("quiet", True)
        client.send({"type": "resume"})
        assert (await client.next_message("status"))["quiet"] is False
        client.send({"type": "help"})
        help_message = await client.next_message("help")
        assert "pause" in help_message["commands"] and "pause" in help_message["text"]
        client.send({"type": "speaking", "on": "yes"})
        error = await client.next_message("error")
        assert error["code"] == "bad_field" and "speaking" in error["message"]
        client.send({"type": "speaking", "on": False})  # accepted quietly, also without a microphone
        client.send({"type": "settings"})
        assert (await client.next_message(("status", "error")))["type"] == "status"
    finally:
        await client.close()
