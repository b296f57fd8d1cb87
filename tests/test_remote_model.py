"""The `openai` backend against real `llama_cpp.server` processes running the tiny model: routing, and the
faults a deployment meets (an inference server killed mid-request, one that hangs, one that comes back).

Recovery times are printed (pytest -s) for the closing note's fault table; nothing asserts on them.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable

import aiohttp

from stream_assist.bench.server_process import LlamaCppServer
from stream_assist.bench.synthetic_client import Client, connect
from stream_assist.config import Config
from stream_assist.inference.endpoint_pool import Endpoint, least_busy, next_backoff
from stream_assist.inference.remote_model import RemoteModel

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
