"""Watch mode: a camera source (stream_assist/source/) guided from server start, and the pages that watch it.

The source runs in a session without a peer connection, from start to shutdown; every page that opens the
server follows it (session.py: its guidance, task and status go to every page, their settings and spoken
commands come back to it). Pages see its frames as an MJPEG stream of what the model is shown: encoded only
while someone watches, at most `FPS` a second, and no WebRTC video encoder per page.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import logging
from typing import TYPE_CHECKING

import cv2
import numpy as np
from aiohttp import web

from ..record.recorder import Recorder, start_recording
from ..source.feed import SourceFeed
from ..source.spec import SourceSpec, parse_source
from .session import Session

if TYPE_CHECKING:
    from .app import ServerState

log = logging.getLogger(__name__)

FPS = 10.0  # the most frames a second a watching page is sent
BOUNDARY = "frame"


def source_token(spec: SourceSpec) -> str:
    """The source's resume token, the same at every start: its task and step come back from the journal."""
    return base64.urlsafe_b64encode(hashlib.sha256(spec.url.encode()).digest()[:16]).decode().rstrip("=")


def recorder_for(state: ServerState, name: str, source: str | None = None) -> Recorder | None:
    """A recording for a new session from its start, when `record.dir` is set (else only on a page's request)."""
    return start_recording(state.config, name, source) if state.config.record.dir else None


async def start_source(state: ServerState) -> None:
    """Opens the configured source's session and starts feeding it (the feed retries on its own)."""
    spec = parse_source(state.config.source.url, state.config.source.loop)
    session = Session(None, state.worker, state.config, state.executor, state.metrics, on_closed=state.closed,
                      resume_token=source_token(spec))
    session.recorder = recorder_for(state, f"source-{session.id}", spec.shown)
    feed = SourceFeed(spec, session.watch, lambda fields: session.send("source", **fields),
                      state.config.source.max_backoff_s)
    state.source, state.feed = session, feed
    state.feed_task = asyncio.ensure_future(feed.run())
    state.feed_task.add_done_callback(_ended)
    log.info("source %s: guided from now on; pages that open the server watch it", spec.shown)


def _ended(task: asyncio.Task) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.error("the source's feed stopped", exc_info=task.exception())


async def stop_source(state: ServerState) -> None:
    state.stopping.set()
    if state.feed_task is not None:
        state.feed_task.cancel()
        await asyncio.gather(state.feed_task, return_exceptions=True)
    if state.source is not None:
        await state.source.close()
    if state.feed is not None:
        await state.feed.close()


def jpeg(rgb: np.ndarray) -> bytes:
    """An RGB frame as JPEG (quality 80: what a person needs to see, at a tenth of the bytes)."""
    ok, buf = cv2.imencode(".jpg", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 80])
    if not ok:
        raise ValueError("JPEG encoding failed")
    return buf.tobytes()


def routes(state: ServerState) -> list[web.RouteDef]:
    """GET /source (its state; null without one) and GET /source/video.mjpg."""

    async def source_info(request: web.Request) -> web.Response:
        if state.feed is None:
            return web.json_response({"source": None})
        return web.json_response({"source": state.feed.state.as_dict(), "session": state.source.id})

    async def source_video(request: web.Request) -> web.StreamResponse:
        return await stream_frames(state, request)

    return [web.get("/source", source_info), web.get("/source/video.mjpg", source_video)]


async def stream_frames(state: ServerState, request: web.Request) -> web.StreamResponse:
    """multipart/x-mixed-replace JPEGs of the frames the model is shown (an <img> plays it as video)."""
    if state.source is None:
        raise web.HTTPNotFound(text="this server has no camera source")
    response = web.StreamResponse(headers={"Content-Type": f"multipart/x-mixed-replace; boundary={BOUNDARY}",
                                           "Cache-Control": "no-store"})
    await response.prepare(request)
    loop = asyncio.get_running_loop()
    shown = None
    while not state.stopping.is_set():
        rgb = state.source.last_enhanced
        if rgb is not None and rgb is not shown:
            shown = rgb
            data = await loop.run_in_executor(state.executor, jpeg, rgb)
            try:
                await response.write(f"--{BOUNDARY}\r\nContent-Type: image/jpeg\r\nContent-Length: {len(data)}\r\n\r\n"
                                     .encode() + data + b"\r\n")
            except (ConnectionResetError, RuntimeError):  # the page went away
                break
        try:
            await asyncio.wait_for(state.stopping.wait(), 1.0 / FPS)
        except TimeoutError:
            pass
    return response
