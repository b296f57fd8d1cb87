"""The `openai` backend against real `llama_cpp.server` processes running the tiny model: routing, and the
faults a deployment meets (an inference server killed mid-request, one that hangs, one that comes back).

Recovery times are printed (pytest -s) for the closing note's fault table; nothing asserts on them.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import threading
import time
from collections.abc import AsyncIterator, Callable

import aiohttp
import numpy as np
import pytest
from aiohttp import web

from stream_assist.bench.server_process import LlamaCppServer
from stream_assist.bench.synthetic_client import Client, connect
from stream_assist.config import Config
from stream_assist.inference.endpoint_pool import Endpoint, least_busy, next_backoff
from stream_assist.inference.prompts import instructions
from stream_assist.inference.remote_model import RemoteModel, jpeg_data_url
from stream_assist.inference.verdict import Choices

from .conftest import running_server, small_config


def remote_config(*servers: LlamaCppServer, timeout_s: float = 30.0) -> Config:
    config = small_config()
    config.model.backend = "openai"
    config.openai.endpoints = ",".join(s.url for s in servers)
    config.openai.timeout_s = timeout_s
    config.openai.max_backoff_s = 2.0
    return config


@contextlib.asynccontextmanager
async def inference_servers(files, n: int) -> AsyncIterator[list[LlamaCppServer]]:
    servers = [LlamaCppServer(files) for _ in range(n)]
    try:
        await asyncio.gather(*(s.start() for s in servers))
        yield servers
    finally:
        for s in servers:
            with contextlib.suppress(ProcessLookupError):
                s.thaw()
            await s.kill()


@contextlib.asynccontextmanager
async def remote_stack(config: Config) -> AsyncIterator[tuple[str, RemoteModel, Client]]:
    """stream-assist on the remote model, with one streaming client; yields (base URL, model, client)."""
    model = RemoteModel(config.openai, config.model)
    try:
        async with running_server(model, config) as (base, _state):
            client = await connect(base)
            try:
                yield base, model, client
            finally:
                await client.close()
    finally:
        model.close()


async def until(condition: Callable[[], bool], timeout: float = 60.0) -> None:
    """Waits for a condition on state another thread changes (checked every 10 ms), failing after timeout."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not reached"
        await asyncio.sleep(0.01)


async def guidance_from(client: Client, engine: str, limit: int = 200) -> dict:
    """The next guidance that came from the given endpoint."""
    for _ in range(limit):
        message = await client.next_message("guidance")
        if message["engine"] == engine:
            return message
    raise AssertionError(f"no guidance from {engine} in {limit}")


def test_least_busy_prefers_room_then_fewest_served() -> None:
    a, b, c = Endpoint("a", 2, healthy=True), Endpoint("b", 1, healthy=True), Endpoint("c", 4, healthy=False)
    assert least_busy([a, b, c]) is a  # a has served as few as b; ties go to the first
    b.requests = 0
    a.requests = 3
    assert least_busy([a, b, c]) is b
    b.in_flight = 1
    a.in_flight = 1
    assert least_busy([a, b, c]) is a  # b is full; a has room (1 of 2); c is down
    a.in_flight = 2
    assert least_busy([a, b, c]) is None


def test_backoff_doubles_from_half_a_second_up_to_the_cap() -> None:
    waits, wait = [], 0.0
    for _ in range(7):
        wait = next_backoff(wait, 10.0)
        waits.append(wait)
    assert waits == [0.5, 1.0, 2.0, 4.0, 8.0, 10.0, 10.0]


async def test_guidance_streams_from_a_real_llama_cpp_server(tiny_files) -> None:
    async with inference_servers(tiny_files, 1) as [server], remote_stack(remote_config(server)) as (base, _, client):
        partial = await client.next_message("partial")
        guidance = await client.next_message("guidance")
        assert guidance["engine"] == server.url and guidance["frame_id"] >= partial["frame_id"]
        assert guidance["tokens"]["completion"] >= 1 and guidance["model_ms"]["request_to_first_token"] > 0
        async with aiohttp.ClientSession() as http:
            async with http.get(f"{base}/health") as res:
                health = await res.json()
            async with http.get(f"{base}/metrics") as res:
                metrics = await res.text()
            async with http.get(f"{base}/stats") as res:  # what the dashboard shows
                shown = (await res.json())["endpoints"]
        assert [(e["url"], e["healthy"], e["in_flight"] in (0, 1)) for e in shown] == [(server.url, True, True)]
        assert f'stream_assist_endpoint_up{{url="{server.url}"}} 1.0' in metrics
        assert f'stream_assist_endpoint_failures_total{{url="{server.url}"}} 0.0' in metrics
        assert health["status"] == "ok"
        [endpoint] = health["endpoints"]
        assert endpoint["url"] == server.url and endpoint["healthy"] and endpoint["requests"] >= 1


async def test_two_endpoints_both_serve_two_sessions(tiny_files) -> None:
    async with inference_servers(tiny_files, 2) as servers, remote_stack(remote_config(*servers)) as (base, model, a):
        b = await connect(base)
        try:
            engines = set()
            for _ in range(200):
                engines |= {(await a.next_message("guidance"))["engine"], (await b.next_message("guidance"))["engine"]}
                if len(engines) == 2:
                    break
        finally:
            await b.close()
        assert engines == {s.url for s in servers}
        assert all(e.requests >= 1 and e.failures == 0 for e in model.pool.endpoints)


async def test_endpoint_killed_mid_request_gives_an_error_then_guidance_from_the_other(tiny_files) -> None:
    async with inference_servers(tiny_files, 2) as (doomed, spare), \
            remote_stack(remote_config(doomed, spare)) as (_, model, client):
        await guidance_from(client, doomed.url)
        doomed.freeze()  # the next request routed there stays in flight...
        await until(lambda: model.pool.endpoints[0].in_flight == 1)
        killed = time.monotonic()
        await doomed.kill()  # ...and is cut by the kill
        error = await client.next_message("error")
        assert error["code"] == "inference_failed" and doomed.url in error["message"] and error["retrying"]
        after = await client.next_message("guidance")
        resumed = time.monotonic() - killed
        assert after["engine"] == spare.url and after["frame_id"] >= error["frame_id"]
        assert not model.pool.endpoints[0].healthy and model.pool.endpoints[0].failures == 1
    print(f"\nfault: endpoint killed mid-request (of 2): error then guidance from the other {resumed * 1000:.0f} ms "
          "after the kill")


async def test_only_endpoint_killed_then_restarted_gives_an_error_then_guidance_once_it_is_back(tiny_files) -> None:
    async with inference_servers(tiny_files, 1) as [server], \
            remote_stack(remote_config(server)) as (base, model, client):
        await client.next_message("guidance")
        server.freeze()
        await until(lambda: model.pool.endpoints[0].in_flight == 1)
        killed = time.monotonic()
        await server.kill()
        error = await client.next_message("error")
        assert error["code"] == "inference_failed" and server.url in error["message"]
        async with aiohttp.ClientSession() as http, http.get(f"{base}/health") as res:
            assert (await res.json())["status"] == "degraded"  # no endpoint to answer
        await server.start()
        back = time.monotonic()
        guidance = await client.next_message("guidance")
        done = time.monotonic()
        assert guidance["engine"] == server.url and model.pool.endpoints[0].healthy
    print(f"\nfault: only endpoint killed, restarted: guidance {(done - back) * 1000:.0f} ms after it listened again "
          f"({(done - killed):.1f} s after the kill, restart included)")


async def test_endpoint_that_hangs_times_out_then_serves_again_when_it_wakes(tiny_files) -> None:
    async with inference_servers(tiny_files, 1) as [server], \
            remote_stack(remote_config(server, timeout_s=2.0)) as (_, model, client):
        await client.next_message("guidance")
        server.freeze()
        await until(lambda: model.pool.endpoints[0].in_flight == 1)
        hung = time.monotonic()
        error = await client.next_message("error")
        timed_out = time.monotonic() - hung
        assert "timed out" in error["message"].lower() and model.pool.endpoints[0].failures >= 1
        server.thaw()
        woke = time.monotonic()
        await client.next_message("guidance")
        resumed = time.monotonic() - woke
    print(f"\nfault: endpoint hangs: error after {timed_out:.1f} s (openai.timeout_s 2), "
          f"guidance {resumed * 1000:.0f} ms after it woke")


CONTEXT = "Task: Tea. Current step 1 of 3: Boil water."  # a task step: the system turn carries it


def _frame() -> np.ndarray:
    return np.full((64, 64, 3), 90, np.uint8)


async def test_a_verdict_comes_from_one_token_and_its_top_logprobs_on_a_real_server(tiny_files) -> None:
    """llama_cpp.server answers `max_tokens: 1` with top_logprobs; the words are what this random model would
    say (its likeliest letters), so the test reads a real distribution, not a scripted one."""
    async with inference_servers(tiny_files, 1) as [server]:
        config = remote_config(server)
        model = RemoteModel(config.openai, config.model)
        try:
            await until(lambda: model.pool.endpoints[0].healthy)
            probe = model._clients[server.url].chat.completions.create(
                model="x", max_tokens=1, temperature=0.0, logprobs=True, top_logprobs=20, messages=[
                    {"role": "system", "content": instructions(CONTEXT)},
                    {"role": "user", "content": [{"type": "image_url", "image_url": {"url": jpeg_data_url(
                        _frame(), config.openai.jpeg_quality)}}, {"type": "text", "text": "A or B?"}]}])
            top = {t.token: t.logprob for t in probe.choices[0].logprobs.content[0].top_logprobs}
            letters = [t for t in top if t.isalpha() and t.isupper()][:2] or [t for t in top if t.isalpha()][:2]
            assert len(letters) == 2, top
            choices = Choices(tuple((w, 0) for w in letters), min_mass=0.0)
            with model.lease(threading.Event()) as describe:
                gen = await asyncio.to_thread(describe, _frame(), "A or B?", None, choices, CONTEXT)
            assert set(gen.verdict) == set(letters) and gen.completion_tokens == 1
            share = math.exp(top[letters[0]]) / sum(math.exp(top[w]) for w in letters)
            assert gen.verdict[letters[0]] == pytest.approx(share, abs=1e-3) and gen.text in letters
            with model.lease(threading.Event()) as describe:  # words the model would not begin with: written
                written = await asyncio.to_thread(describe, _frame(), "A or B?", None,
                                                  Choices((("QQQQ", 0),), min_mass=0.0))
            assert written.verdict == {} and server.url not in model.without_logprobs
        finally:
            model.close()


async def test_an_engine_without_logprobs_is_asked_for_written_answers() -> None:
    """A minimal OpenAI-compatible engine that ignores `logprobs` (an edge we cannot run here for real): the verdict
    request falls back to the streamed answer, and later frames go straight to it."""
    asked: list[dict] = []

    async def models(_request: web.Request) -> web.Response:
        return web.json_response({"object": "list", "data": [{"id": "plain", "object": "model"}]})

    async def chat(request: web.Request) -> web.StreamResponse:
        body = await request.json()
        asked.append(body)
        base = {"id": "x", "created": 0, "model": "plain"}
        if not body.get("stream"):
            return web.json_response({**base, "object": "chat.completion", "choices": [
                {"index": 0, "finish_reason": "length", "message": {"role": "assistant", "content": "DONE"}}]})
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        for piece in ("DONE", ". Finished."):
            chunk = {**base, "object": "chat.completion.chunk",
                     "choices": [{"index": 0, "delta": {"content": piece}, "finish_reason": None}]}
            await response.write(f"data: {json.dumps(chunk)}\n\n".encode())
        await response.write(b"data: [DONE]\n\n")
        return response

    app = web.Application()
    app.router.add_get("/v1/models", models)
    app.router.add_post("/v1/chat/completions", chat)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    url = f"http://127.0.0.1:{site._server.sockets[0].getsockname()[1]}/v1"
    config = small_config()
    config.openai.endpoints = url
    model = RemoteModel(config.openai, config.model)
    try:
        await until(lambda: model.pool.endpoints[0].healthy)
        choices = Choices((("DONE", 0), ("NOT", 0)), min_mass=0.0)
        for _ in range(2):
            with model.lease(threading.Event()) as describe:
                gen = await asyncio.to_thread(describe, _frame(), "DONE or NOT?", None, choices)
            assert gen.verdict == {} and gen.text == "DONE. Finished."
        assert [a.get("logprobs") for a in asked] == [True, None, None] and url in model.without_logprobs
    finally:
        model.close()
        await runner.cleanup()
