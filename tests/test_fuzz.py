"""Property-based fuzzing of everything a stranger can send: data-channel messages and POST /offer.

Every case must end in a ProtocolError / an `error` message / a 4xx with a JSON reason, never another
exception, a 5xx, or a lost session: a bystander session keeps streaming through the live fuzzing.
The cases per run (parser 5,000 + live channel 3,000 + offers 2,000 = 10,000) are printed (pytest -s).
Offers include random and truncated JSON, huge and broken SDP, SDP without video, and a real aiortc offer
truncated or rewritten to unsupported codecs only.
"""

from __future__ import annotations

import asyncio
import json

import aiohttp
import pytest
from aiortc import RTCPeerConnection
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from stream_assist.bench.synthetic_client import Client, SyntheticCamera, connect
from stream_assist.server.protocol import ProtocolError, parse_client_message

from .conftest import keeps_streaming, running_server, small_config

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True) | st.text(max_size=40),
    lambda children: st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=10), children, max_size=5),
    max_leaves=30)
messages = st.one_of(
    st.binary(max_size=300),
    st.text(max_size=300),
    json_values.map(json.dumps),
    st.fixed_dictionaries({"type": st.sampled_from(["settings", "pause", "resume", "ping", "x", "next", "back",
                                                    "repeat", "what_now", "draft"])},
                          optional={"preset": json_values, "task": json_values, "prompt": json_values,
                                    "interval_s": json_values, "extra": json_values, "card": json_values,
                                    "steps": json_values | st.lists(st.text(max_size=60), max_size=8)}).map(json.dumps),
    st.integers(1, 3000).map(lambda depth: "[" * depth + "]" * depth),
)


CODES = {"too_large", "bad_json", "bad_message", "unknown_type", "bad_field"}
LIVE_CODES = CODES | {"bad_task", "no_task"}  # the task assistant's refusals (a card or step list it cannot use)
PARSER_CASES, CHANNEL_CASES, OFFER_CASES = 5000, 3000, 2000


def test_any_channel_message_is_parsed_or_refused_with_a_code() -> None:
    cases = []

    @settings(max_examples=PARSER_CASES, deadline=None)
    @given(messages)
    def one(raw) -> None:
        cases.append(1)
        try:
            parse_client_message(raw, max_bytes=4096, max_prompt_chars=500)
        except ProtocolError as e:
            assert e.code in CODES and str(e)

    one()
    print(f"\nfuzz: {len(cases)} messages parsed or refused with a code")


# aioice and aiortc draw from `random` on the event loop while hypothesis generates on another thread;
# hypothesis cannot tell that apart from a strategy using `random`, and warns
RANDOM_ON_THE_LOOP = pytest.mark.filterwarnings("ignore::hypothesis.errors.HypothesisDeprecationWarning")


@RANDOM_ON_THE_LOOP
async def test_live_channel_answers_every_message_and_a_bystander_keeps_streaming(vision_model) -> None:
    config = small_config()
    config.channel.max_messages_per_s = 1e9  # the rate limit is tested elsewhere; here every message is looked at
    config.pipeline.sample_fps = 2.0  # the model, busy on two sessions, would slow every reply
    async with running_server(vision_model, config) as (base, state):
        bystander, fuzzer = await connect(base), await connect(base)
        replies: list[dict] = []

        @settings(max_examples=CHANNEL_CASES, deadline=None, suppress_health_check=list(HealthCheck))
        @given(raw=messages | st.binary(min_size=4097, max_size=60000))
        def one(raw) -> None:
            replies.append(asyncio.run_coroutine_threadsafe(ask(raw), loop).result(60))

        async def ask(raw) -> dict:
            fuzzer.send(raw)
            return await reply_to_message(fuzzer)

        loop = asyncio.get_running_loop()
        try:
            await bystander.next_message("guidance")
            await loop.run_in_executor(None, one)
            assert all(r["type"] == "status" or r["code"] in LIVE_CODES for r in replies)
            await keeps_streaming(bystander)
            fuzzer.send({"type": "resume"})  # the fuzzer's own session survived too
            assert (await reply_to_message(fuzzer))["state"] == "running"
            assert len(state.sessions) == 2
        finally:
            await bystander.close()
            await fuzzer.close()
    print(f"\nfuzz: {len(replies)} live data-channel messages each answered")


async def reply_to_message(client: Client) -> dict:
    """The next reply to a client message: an `error` or `status`, skipping what the pipeline sends unasked
    (an inference error), so every message is paired with its own reply."""
    while True:
        msg = await client.next_message(("error", "status"), timeout=30)
        if msg.get("code") != "inference_failed":
            return msg


VIDEO_HEAD = "v=0\r\nm=video 9 UDP/TLS/RTP/SAVPF 96\r\n"
offer_bodies = st.one_of(
    st.binary(max_size=500),
    json_values.map(lambda v: json.dumps(v).encode()),
    st.fixed_dictionaries({"sdp": st.one_of(st.text(max_size=400), json_values,
                                            st.text(max_size=200).map(lambda t: "v=0\r\n" + t),
                                            st.text(max_size=200).map(lambda t: VIDEO_HEAD + t)),
                           "type": st.sampled_from(["offer", "answer", "", 5])}).map(lambda d: json.dumps(d).encode()),
)


async def real_offer() -> str:
    """An offer aiortc makes for a camera and the guidance channel: the base for mangled ones."""
    pc = RTCPeerConnection()
    pc.addTransceiver(SyntheticCamera(), direction="sendonly")
    pc.createDataChannel("guidance")
    await pc.setLocalDescription(await pc.createOffer())
    await pc.close()
    return pc.localDescription.sdp


def unsupported_codecs_only(sdp: str, codec: str) -> bytes:
    """The offer with every video codec renamed to one the server cannot decode."""
    for name in ("VP8", "H264", "rtx"):
        sdp = sdp.replace(f" {name}/90000", f" {codec}/90000")
    return json.dumps({"sdp": sdp, "type": "offer"}).encode()


@RANDOM_ON_THE_LOOP
@pytest.mark.asyncio(loop_scope="session")
async def test_offer_endpoint_answers_every_body_with_a_4xx_and_a_bystander_keeps_streaming(server) -> None:
    base, state = server
    bystander = await connect(base)
    seen: list[int] = []
    sdp = await real_offer()
    real = json.dumps({"sdp": sdp, "type": "offer"}).encode()
    bodies = (offer_bodies
              | st.sampled_from(["H265", "AV1X", "THEORA", "MP4V-ES"]).map(lambda c: unsupported_codecs_only(sdp, c))
              | st.integers(0, len(real) - 1).map(lambda n: real[:n]))  # a real offer, truncated

    @settings(max_examples=OFFER_CASES, deadline=None, suppress_health_check=list(HealthCheck))
    @given(body=bodies, content_type=st.sampled_from(["application/json", "application/json", "text/plain", ""]))
    def one(body: bytes, content_type: str) -> None:
        seen.append(asyncio.run_coroutine_threadsafe(post(body, content_type), loop).result(60))

    async def post(body: bytes, content_type: str) -> int:
        async with aiohttp.ClientSession() as http:
            async with http.post(f"{base}/offer", data=body, headers={"Content-Type": content_type}) as res:
                if res.status != 200:
                    assert "error" in await res.json(content_type=None) or res.status == 413
                return res.status

    loop = asyncio.get_running_loop()
    try:
        await bystander.next_message("guidance")
        await loop.run_in_executor(None, one)
        assert seen and all(400 <= code < 500 for code in seen), sorted(set(seen))
        await keeps_streaming(bystander)
        assert len(state.sessions) == 1
    finally:
        await bystander.close()
    print(f"\nfuzz: {len(seen)} offers refused with a 4xx")


async def test_many_offers_at_once_get_answers_up_to_the_limit_and_4xx_or_503_beyond(server) -> None:
    base, state = server
    limit = state.config.server.max_sessions
    garbage = [json.dumps({"sdp": "v=0\r\n" + "x" * i, "type": "offer"}) for i in range(40)]

    async def post(body: str) -> int:
        async with aiohttp.ClientSession() as http, http.post(f"{base}/offer", data=body,
                                                             headers={"Content-Type": "application/json"}) as res:
            return res.status

    results = await asyncio.gather(*(connect(base) for _ in range(limit + 3)), *(post(b) for b in garbage),
                                   return_exceptions=True)
    clients = [r for r in results[:limit + 3] if not isinstance(r, Exception)]
    refused = [r for r in results[:limit + 3] if isinstance(r, Exception)]
    try:
        assert len(clients) == limit and all("503" in str(e) for e in refused)
        assert all(400 <= code < 500 for code in results[limit + 3:])
        assert len(state.sessions) == limit
        await keeps_streaming(clients[0])
    finally:
        opened = list(state.sessions.values())
        for c in clients:
            await c.close()
        await asyncio.wait_for(asyncio.gather(*(s.closed.wait() for s in opened)), 60)  # gone before the next test
