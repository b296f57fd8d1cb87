"""Property-based fuzzing of everything a stranger can send: data-channel messages and POST /offer.

Every case must end in a ProtocolError / a 4xx with a JSON reason — never another exception, a 5xx, or a
lost session (a bystander session keeps streaming through the HTTP fuzzing).
"""

from __future__ import annotations

import asyncio
import json

import aiohttp
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from stream_assist.protocol import ProtocolError, parse_client_message
from stream_assist.synthetic_client import connect

from .conftest import keeps_streaming

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True) | st.text(max_size=40),
    lambda children: st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=10), children, max_size=5),
    max_leaves=30)
messages = st.one_of(
    st.binary(max_size=300),
    st.text(max_size=300),
    json_values.map(json.dumps),
    st.fixed_dictionaries({"type": st.sampled_from(["settings", "pause", "resume", "ping", "x"])},
                          optional={"preset": json_values, "task": json_values, "prompt": json_values,
                                    "extra": json_values}).map(json.dumps),
    st.integers(1, 3000).map(lambda depth: "[" * depth + "]" * depth),
)


@settings(max_examples=3000, deadline=None)
@given(messages)
def test_any_channel_message_is_parsed_or_refused_with_a_code(raw) -> None:
    try:
        parse_client_message(raw, max_bytes=4096, max_prompt_chars=500)
    except ProtocolError as e:
        assert e.code in {"too_large", "bad_json", "bad_message", "unknown_type", "bad_field"} and str(e)


VIDEO_HEAD = "v=0\r\nm=video 9 UDP/TLS/RTP/SAVPF 96\r\n"
offer_bodies = st.one_of(
    st.binary(max_size=500),
    json_values.map(lambda v: json.dumps(v).encode()),
    st.fixed_dictionaries({"sdp": st.one_of(st.text(max_size=400), json_values,
                                            st.text(max_size=200).map(lambda t: "v=0\r\n" + t),
                                            st.text(max_size=200).map(lambda t: VIDEO_HEAD + t)),
                           "type": st.sampled_from(["offer", "answer", "", 5])}).map(lambda d: json.dumps(d).encode()),
)


@pytest.mark.asyncio(loop_scope="session")
async def test_offer_endpoint_answers_every_body_with_a_4xx_and_a_bystander_keeps_streaming(server) -> None:
    base, state = server
    bystander = await connect(base)
    seen: list[int] = []

    @settings(max_examples=400, deadline=None, suppress_health_check=list(HealthCheck))
    @given(body=offer_bodies, content_type=st.sampled_from(["application/json", "text/plain", ""]))
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
    finally:
        await bystander.close()
