"""The HTTP side: serves the pages, answers WebRTC offers, reports health, shuts everything down.

`POST /offer` takes `{"sdp", "type": "offer"}` and answers `{"sdp", "type": "answer"}`; every bad
request gets a 4xx with a JSON `{"error": ...}` and leaves the open sessions untouched.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import shutil
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from aiohttp import web
from aiortc import RTCConfiguration, RTCIceServer, RTCPeerConnection, RTCSessionDescription
from prometheus_client import CONTENT_TYPE_LATEST

from ..assistant.history import past_sessions
from ..assistant.places import journal_for, usable_cards
from ..config import Config
from ..enhance.kernels import warm_up
from ..inference.hardware import apply_hardware_defaults
from ..inference.vision_model import gpu_offload_available
from ..inference.worker import InferenceWorker
from ..source.feed import SourceFeed
from ..speech_out.synth import Synthesiser
from ..voice.faster_whisper_source import chosen_asr, describe
from .access import middleware, resolve_token
from .audio_offer import answer_with_declined, decline_undecodable_audio
from .metrics import Metrics
from .protocol import parse_resume_token
from .resume import ResumeRegistry
from .session import Session
from .session_state import SessionState
from .watch import jpeg, recorder_for, routes, start_source, stop_source

log = logging.getLogger(__name__)

WEB_DIR = Path(__file__).resolve().parents[2] / "web"
MAX_SDP_CHARS = 32768

APP_STATE = web.AppKey("state", "ServerState")


class ServerState:
    """What the app owns: the shared worker (and its model), the sessions, the enhancement threads."""

    def __init__(self, config: Config, worker: InferenceWorker, model_name: str,
                 voice: Synthesiser | None = None) -> None:
        self.config = apply_hardware_defaults(config, gpu_offload_available())
        if config.voice.enabled:
            config.voice.asr = chosen_asr(config.voice.asr)
        log.info("voice: %s", f"recogniser {describe(config.voice.asr)} ({config.voice.asr})" if config.voice.enabled
                 else "off")
        self.voice = voice  # the server's voice (speech_out.load_voice), or None: pages speak for themselves
        log.info("enhancement kernels ready in %.2f s (compiled, or loaded from Numba's cache)", warm_up())
        self.worker = worker
        self.model_name = model_name
        self.sessions: dict[str, Session] = {}
        self.executor = ThreadPoolExecutor(max_workers=2, thread_name_prefix="enhance")
        self.metrics = Metrics(lambda: [s.counters() for s in [*self.sessions.values(), *self.sources()]],
                               lambda: endpoints(self.worker.model),
                               lambda: model_process(self.worker.model).get("model_process"),
                               lambda: self.feed.state.as_dict() if self.feed else None)
        self.cpu_sample = (time.monotonic(), time.process_time())
        self.token = resolve_token(config.server.host, config.server.token)
        self.resume = ResumeRegistry(config.server.resume_s)
        self.journal = journal_for(config.assistant)
        log.info("task journals in %s (%d old ones removed)", self.journal.directory, self.journal.prune())
        self.source: Session | None = None  # the camera source's session (watch.py), when config.source.url is set
        self.feed: SourceFeed | None = None
        self.feed_task: asyncio.Task | None = None
        self.stopping = asyncio.Event()  # ends the pages' video streams at shutdown

    def sources(self) -> list[Session]:
        return [self.source] if self.source is not None else []

    def closed(self, session: Session) -> None:
        """A session has released everything: forget it, keep its counts."""
        if self.sessions.pop(session.id, None) is not None:
            self.metrics.retire(session.counters())
            self.resume.keep(session.resume_token, session.state)


def ice_servers(config: Config) -> list[dict]:
    """The configured STUN/TURN servers, as RTCIceServer dictionaries (what browsers and aiortc take)."""
    urls = [u.strip() for u in config.server.ice_urls.split(",") if u.strip()]
    if not urls:
        return []
    server: dict = {"urls": urls}
    if config.server.ice_username:
        server.update(username=config.server.ice_username, credential=config.server.ice_credential)
    return [server]


def _error(status: int, message: str) -> web.Response:
    return web.json_response({"error": message}, status=status)


def _parse_offer(body: Any, watching: bool = False) -> tuple[RTCSessionDescription, str | None]:
    """Checks the offer's shape; returns it and its resume token, if any; raises ValueError with a message for the
    client. A page watching the server's camera source sends no video."""
    if not isinstance(body, dict):
        raise ValueError("body must be a JSON object with 'sdp' and 'type'")
    sdp, kind = body.get("sdp"), body.get("type")
    if kind != "offer":
        raise ValueError("'type' must be \"offer\"")
    if not isinstance(sdp, str) or not sdp.startswith("v=0"):
        raise ValueError("'sdp' must be an SDP offer (starting with v=0)")
    if len(sdp) > MAX_SDP_CHARS:
        raise ValueError(f"'sdp' is longer than {MAX_SDP_CHARS} characters")
    if "\nm=video" not in sdp and not watching:
        raise ValueError("the offer has no video; send the camera track")
    return RTCSessionDescription(sdp=sdp, type="offer"), parse_resume_token(body.get("resume"))


async def offer(request: web.Request) -> web.Response:
    state = request.app[APP_STATE]
    if request.content_type != "application/json":
        return _error(415, "content type must be application/json")
    try:
        body = json.loads(await request.text())
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError):
        return _error(400, "body is not valid JSON")
    try:
        description, resume_token = _parse_offer(body, watching=state.source is not None)
    except ValueError as e:
        return _error(400, str(e))
    await _take_over(state, resume_token)
    if len(state.sessions) >= state.config.server.max_sessions:
        return _error(503, f"server is full ({state.config.server.max_sessions} sessions); try again later")

    pc = RTCPeerConnection(RTCConfiguration(iceServers=[RTCIceServer(**s) for s in ice_servers(state.config)]))
    kept: SessionState | None = state.resume.take(resume_token) if resume_token else None
    session = Session(pc, state.worker, state.config, state.executor, state.metrics, on_closed=state.closed,
                      resume_token=resume_token, state=kept, follows=state.source, voice=state.voice)
    if state.source is None:
        session.recorder = recorder_for(state, session.id)
    state.sessions[session.id] = session
    usable, declined = decline_undecodable_audio(description.sdp)  # a microphone we cannot decode: video only
    try:
        await pc.setRemoteDescription(RTCSessionDescription(sdp=usable, type="offer"))
        session.attach_speech()  # the server's voice on the page's receiving audio section, if there is one
        await pc.setLocalDescription(await pc.createAnswer())
    except Exception as e:  # aiortc raises several types for SDP it cannot use
        await session.close()
        return _error(400, f"invalid SDP offer: {e}")
    log.info("session %s opened (%d open)%s", session.id, len(state.sessions), " with kept state" if kept else "")
    return web.json_response({"sdp": answer_with_declined(pc.localDescription.sdp, declined),
                              "type": pc.localDescription.type,
                              "resume_token": session.resume_token})


async def _take_over(state: ServerState, token: str | None) -> None:
    """Closes any open session with this resume token, so that its state is kept for the new one: its peer is
    gone without the server noticing yet, or the same page connected twice (the newer connection wins)."""
    if token is None:
        return
    for old in [s for s in state.sessions.values() if s.resume_token == token]:
        log.info("session %s replaced by a new connection with its token", old.id)
        await old.hand_over()
        await old.closed.wait()  # it may have been closing already (its peer failed): its state is kept once closed


def endpoints(model: Any) -> list[dict]:
    """The remote endpoints' state for /health (none for the embedded model)."""
    pool = getattr(model, "pool", None)
    return pool.snapshot() if pool is not None else []


def model_process(model: Any) -> dict:
    """The embedded model's own process (pid, alive, restarts) for /health, where it runs in one."""
    report = getattr(model, "health", None)
    return {"model_process": report()} if report is not None else {}


async def health(request: web.Request) -> web.Response:
    state = request.app[APP_STATE]
    remote = endpoints(state.worker.model)
    serving = state.worker.alive and (not remote or any(e["healthy"] for e in remote))
    return web.json_response({
        "status": "ok" if serving else "degraded",
        "model_loaded": True,
        "model": state.model_name,
        "worker_alive": state.worker.alive,
        "worker_restarts": state.worker.restarts,
        "worker_in_progress": state.worker.in_progress,
        **model_process(state.worker.model),
        "endpoints": remote,
        "sessions": len(state.sessions),
        "max_sessions": state.config.server.max_sessions,
        "asr": state.config.voice.asr if state.config.voice.enabled else "off",  # the recogniser auto picked
        "resumable": len(state.resume),  # closed sessions' state waiting server.resume_s for its page to come back
        "speech": {"voice": state.voice.name if state.voice else None,  # None: each page speaks (speechSynthesis)
                   "engine": "piper" if state.voice else "browser"},
        "source": state.feed.state.as_dict() if state.feed else None,  # the camera source, when there is one
    })


async def ice(request: web.Request) -> web.Response:
    """The ICE servers the page should use too (TURN credentials included, so behind the token)."""
    return web.json_response({"iceServers": ice_servers(request.app[APP_STATE].config)})


async def stats(request: web.Request) -> web.Response:
    """Server CPU (since the previous call), GPU where nvidia-smi exists, sessions, worker state: the dashboard's."""
    state = request.app[APP_STATE]
    now, cpu = time.monotonic(), time.process_time()
    (then, cpu_then), state.cpu_sample = state.cpu_sample, (now, cpu)
    return web.json_response({
        "cpu_percent": 100.0 * (cpu - cpu_then) / max(now - then, 1e-6),
        "cpu_cores": os.cpu_count(),
        "gpu": await gpu_use(),
        "sessions": len(state.sessions),
        "worker_busy": state.worker.in_progress > 0,
        "worker_in_progress": state.worker.in_progress,
        "endpoints": [{"url": e["url"], "healthy": e["healthy"], "in_flight": e["in_flight"]}
                      for e in endpoints(state.worker.model)],
        "source": state.feed.state.as_dict() if state.feed else None,
    })


async def gpu_use() -> dict | None:
    """Utilisation and memory of the first NVIDIA GPU, or None where there is none."""
    if shutil.which("nvidia-smi") is None:
        return None
    proc = await asyncio.create_subprocess_exec(
        "nvidia-smi", "--query-gpu=utilization.gpu,memory.used", "--format=csv,noheader,nounits",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL)
    out, _ = await proc.communicate()
    try:
        util, mem = out.decode().splitlines()[0].split(",")
        return {"utilization_percent": int(util), "memory_used_mib": int(mem)}
    except (ValueError, IndexError):
        return None


async def enhanced_frame(request: web.Request) -> web.Response:
    """The newest frame a session handed to the model, as JPEG: what the model sees, beside the preview."""
    state = request.app[APP_STATE]
    session = {s.id: s for s in [*state.sessions.values(), *state.sources()]}.get(request.match_info["session"])
    if session is None:
        return _error(404, "no such session")
    rgb = session.last_enhanced
    if rgb is None:
        return _error(404, "no frame yet")
    data = await asyncio.get_running_loop().run_in_executor(state.executor, jpeg, rgb)
    return web.Response(body=data, content_type="image/jpeg", headers={"Cache-Control": "no-store"})


async def history(request: web.Request) -> web.Response:
    """Past task sessions from the journals (assistant/history.py), for the page's history view."""
    journal = request.app[APP_STATE].journal
    sessions = await asyncio.get_running_loop().run_in_executor(None, past_sessions, journal)
    return web.json_response({"sessions": [s.as_dict() for s in sessions]})


async def task_cards(request: web.Request) -> web.Response:
    """The task cards the page can pick (name, title, step count); broken ones are left out."""
    config = request.app[APP_STATE].config.assistant
    cards = usable_cards(config)
    return web.json_response({"cards": [{"name": c.name, "title": c.title, "steps": len(c.steps)} for c in cards]})


async def metrics(request: web.Request) -> web.Response:
    body = request.app[APP_STATE].metrics.render()
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})


async def index(request: web.Request) -> web.FileResponse:
    return web.FileResponse(WEB_DIR / "index.html")


async def _shutdown(app: web.Application) -> None:
    """Tells every open session, closes it, then stops the worker and frees the model."""
    state = app[APP_STATE]
    sessions = list(state.sessions.values())
    for session in [*sessions, *state.sources()]:
        session.send("status", state="closing")
    await asyncio.gather(*(session.close() for session in sessions))
    await stop_source(state)
    state.resume.clear()
    state.worker.stop()
    state.executor.shutdown(wait=True)
    state.worker.model.close()
    log.info("closed %d sessions, stopped the worker, freed the model", len(sessions))


def make_app(state: ServerState) -> web.Application:
    """The aiohttp application; the worker must already be started and is stopped on shutdown."""
    app = web.Application(client_max_size=state.config.server.max_body_bytes, middlewares=[middleware(state.token)])
    app[APP_STATE] = state
    app.router.add_get("/", index)
    app.router.add_post("/offer", offer)
    app.router.add_get("/health", health)
    app.router.add_get("/metrics", metrics)
    app.router.add_get("/stats", stats)
    app.router.add_get("/ice", ice)
    app.router.add_get("/history", history)
    app.router.add_get("/tasks", task_cards)
    app.router.add_get("/sessions/{session}/enhanced.jpg", enhanced_frame)
    app.router.add_routes(routes(state))
    app.router.add_static("/", WEB_DIR, follow_symlinks=False)
    app.on_shutdown.append(_shutdown)
    if state.config.source.url:
        app.on_startup.append(lambda app: start_source(app[APP_STATE]))
    return app


async def start_site(app: web.Application, host: str, port: int, ssl_context=None) -> tuple[web.AppRunner, int]:  # noqa: ANN001
    """Starts serving app; returns the runner (cleanup() shuts down) and the bound port (for port 0)."""
    runner = web.AppRunner(app, handle_signals=False)
    await runner.setup()
    await web.TCPSite(runner, host, port, ssl_context=ssl_context).start()
    return runner, runner.addresses[0][1]
