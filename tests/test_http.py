"""The HTTP surface: health, the page, and every kind of bad offer getting a clear 4xx."""

from __future__ import annotations

import aiohttp
import cv2
import numpy as np
import pytest

from stream_assist.bench.synthetic_client import connect

pytestmark = pytest.mark.asyncio(loop_scope="session")

VALID_HEAD = "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\n"


async def post(base: str, data, content_type: str = "application/json") -> tuple[int, dict]:
    async with aiohttp.ClientSession() as http:
        async with http.post(f"{base}/offer", data=data, headers={"Content-Type": content_type}) as res:
            return res.status, await res.json()


async def test_health_and_page(server) -> None:
    base, state = server
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{base}/health") as res:
            body = await res.json()
        assert res.status == 200
        assert body["model_loaded"] is True and body["worker_alive"] is True
        assert body["sessions"] == len(state.sessions)
        async with http.get(f"{base}/") as res:
            assert res.status == 200 and "stream-assist" in await res.text()
        async with http.get(f"{base}/app.js") as res:
            assert res.status == 200


async def test_page_gets_the_ice_servers(server) -> None:
    base, _ = server
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{base}/ice") as res:
            assert res.status == 200 and await res.json() == {"iceServers": []}


async def test_metrics_follow_the_pipeline(server) -> None:
    base, _ = server
    client = await connect(base)
    try:
        await client.next_message("guidance")
        async with aiohttp.ClientSession() as http:
            async with http.get(f"{base}/metrics") as res:
                assert res.status == 200 and res.content_type == "text/plain"
                text = await res.text()
    finally:
        await client.close()
    samples = {line.split(" ")[0]: float(line.split(" ")[1]) for line in text.splitlines() if line and line[0] != "#"}
    frames = {k.split('"')[1]: v for k, v in samples.items() if k.startswith("stream_assist_frames_total")}
    assert frames["received"] >= frames["sampled"] >= frames["processed"] >= 1
    assert samples["stream_assist_sessions"] >= 1
    assert samples['stream_assist_stage_seconds_count{stage="taken"}'] >= 1
    assert samples["stream_assist_frame_age_at_inference_seconds_count"] >= 1
    assert samples["stream_assist_generation_tokens_per_second"] >= 0


async def test_enhanced_frame_shows_what_the_model_sees(server) -> None:
    base, state = server
    client = await connect(base, width=640, height=480)
    try:
        session = client.ready["session"]
        await client.next_message("guidance")
        async with aiohttp.ClientSession() as http:
            async with http.get(f"{base}/sessions/{session}/enhanced.jpg") as res:
                assert res.status == 200 and res.content_type == "image/jpeg"
                image = cv2.imdecode(np.frombuffer(await res.read(), np.uint8), cv2.IMREAD_COLOR)
            async with http.get(f"{base}/sessions/nosuchsession/enhanced.jpg") as res:
                assert res.status == 404
    finally:
        await client.close()
    assert max(image.shape[:2]) == state.config.pipeline.max_edge  # the model's size, not the camera's


@pytest.mark.parametrize("path", ["/../pyproject.toml", "/%2e%2e/pyproject.toml", "/..%2fpyproject.toml"])
async def test_no_file_outside_web_is_served(server, path: str) -> None:
    base, _ = server
    async with aiohttp.ClientSession() as http:
        async with http.get(base + path) as res:
            assert res.status in (403, 404)
            assert "[project]" not in await res.text()


@pytest.mark.parametrize(("data", "content_type", "status", "needle"), [
    ('{"sdp": "v=0", "type": "offer"}', "text/plain", 415, "application/json"),
    ("{not json", "application/json", 400, "not valid JSON"),
    ("[1, 2]", "application/json", 400, "JSON object"),
    ('{"sdp": "v=0\\r\\n", "type": "answer"}', "application/json", 400, "must be \\\"offer\\\""),
    ('{"sdp": 5, "type": "offer"}', "application/json", 400, "SDP offer"),
    ('{"sdp": "hello", "type": "offer"}', "application/json", 400, "SDP offer"),
    ('{"sdp": "' + VALID_HEAD.replace("\r\n", "\\r\\n") + '", "type": "offer"}', "application/json", 400, "no video"),
    ('{"sdp": "' + (VALID_HEAD + "m=video 9 UDP/TLS/RTP/SAVPF 96\r\nbroken\r\n").replace("\r\n", "\\r\\n")
     + '", "type": "offer"}', "application/json", 400, "invalid SDP offer"),
    ('{"sdp": "v=0' + "a" * 40000 + '\\nm=video", "type": "offer"}', "application/json", 400, "longer than"),
    ('{"sdp": "' + VALID_HEAD.replace("\r\n", "\\r\\n") + 'm=video 9 UDP/TLS/RTP/SAVPF 96", "type": "offer", '
     '"resume": "../../etc"}', "application/json", 400, "resume must be a token"),
])
async def test_bad_offers_get_clear_errors_and_leave_sessions_alone(server, data, content_type, status, needle) -> None:
    base, state = server
    before = len(state.sessions)
    code, body = await post(base, data, content_type)
    assert code == status
    assert needle.replace('\\"', '"') in body["error"]
    assert len(state.sessions) == before


async def test_a_session_keeps_the_resume_token_it_was_offered_and_issues_one_otherwise(server) -> None:
    base, _ = server
    first = await connect(base)
    try:
        token = first.ready["resume_token"]
        again = await connect(base, resume=token)
        try:
            assert again.ready["resume_token"] == token
        finally:
            await again.close()
        other = await connect(base)
        try:
            assert other.ready["resume_token"] != token
        finally:
            await other.close()
    finally:
        await first.close()


async def test_oversized_body_is_refused(server) -> None:
    base, state = server
    async with aiohttp.ClientSession() as http:
        async with http.post(f"{base}/offer", data="x" * 200_000, headers={"Content-Type": "application/json"}) as res:
            assert res.status == 413


async def test_offers_over_the_session_limit_get_503(server) -> None:
    base, state = server
    clients = []
    try:
        while len(state.sessions) < state.config.server.max_sessions:
            clients.append(await connect(base))
        with pytest.raises(RuntimeError, match="503") as e:
            await connect(base)
        assert "server is full" in str(e.value)
    finally:
        for c in clients:
            await c.close()
