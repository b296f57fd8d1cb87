"""One browser's session: its peer connection, video path into the shared worker, and data channel.

Frames flow one way: track → sampler → RGB + enhancement (in a thread) → this session's slot →
worker → guidance on the data channel. Settings are the session's own. Nothing here blocks the loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import Callable
from concurrent.futures import Executor

import numpy as np
from aiortc import RTCDataChannel, RTCPeerConnection
from aiortc.mediastreams import MediaStreamTrack

from ..assistant.cards import CardError
from ..assistant.live import LiveTask, NoTaskError
from ..config import Config
from ..enhance.kernels import enhance
from ..inference.prompts import PRESET_NAMES
from ..inference.verdict import Choices
from ..inference.worker import InferenceWorker, Job, Outcome
from ..latency.capture_clock import CaptureClock
from ..latency.pixel_clock import read_capture_ms
from ..latency.timeline import Timeline
from ..record.recorder import Recorder, start_recording
from ..speech_out.synth import Synthesiser
from ..video.change_gate import ChangeGate, thumbnail
from ..video.jitter_buffer import use_marker_jitter_buffer
from ..video.sampler import FrameSampler, SampledFrame, to_rgb
from . import protocol
from .metrics import Metrics
from .session_state import SessionState
from .speech_link import SpeechLink, receiving_transceiver
from .voice_link import VoiceLink, help_fields

log = logging.getLogger(__name__)

CHANNEL_LABEL = "guidance"
CLOCK_LABEL = "clock"  # unordered, no retransmits: a late clock sample is worse than a lost one


class Session:
    """Everything one peer connection owns; closed by close() from any state."""

    def __init__(self, pc: RTCPeerConnection | None, worker: InferenceWorker, config: Config, executor: Executor,
                 metrics: Metrics, on_closed: Callable[[Session], None], resume_token: str | None = None,
                 state: SessionState | None = None, follows: Session | None = None,
                 voice: Synthesiser | None = None) -> None:
        self.id = uuid.uuid4().hex[:12]
        # The person's identity across reconnects and restarts: kept by the page, sent back with its next offer.
        self.resume_token = resume_token or protocol.new_resume_token()
        self.pc = pc
        self.worker = worker
        self.config = config
        self.executor = executor
        self.metrics = metrics
        self.on_closed = on_closed
        # The person's settings and progress: kept by resume.py when this connection closes, handed to the next
        # one that offers the same token. The task and step come with it, or else from the journal.
        self.state = state or SessionState()
        self.resumed = state is not None
        self.assistant = LiveTask(config.assistant, self.resume_token, state=self.state.task)
        self.state.task = self.assistant.state
        self.last_queued_at = float("-inf")  # time.monotonic() of the last frame put into the slot
        self.too_soon = 0  # sampled frames skipped because interval_s had not passed
        self.voice: VoiceLink | None = None  # the microphone's listener, once an audio track arrives
        self.server_voice = voice  # the Piper voice, when the server speaks (attach_speech)
        self.speech: SpeechLink | None = None  # this session's audio track and speaker, once attached
        self.channel: RTCDataChannel | None = None
        self.sampler: FrameSampler | None = None
        self.capture_clock: CaptureClock | None = None
        self.slot = worker.new_slot(config.pipeline.queue)
        if self.state.paused:
            self.slot.pause()
        self.frames_failed = 0
        self.guidance_sent = 0
        self.last_enhanced: np.ndarray | None = None  # the newest frame handed to the model, for the page to show
        self.gate = ChangeGate(config.pipeline.change_threshold, config.pipeline.max_reguide_s)
        self.rate = protocol.RateLimit(config.channel.max_messages_per_s)
        self.refused = 0  # messages over the rate limit: answered with one error, then dropped quietly
        self._tasks: set[asyncio.Task] = set()
        self._loop = asyncio.get_running_loop()
        self._closing = False
        self.closed = asyncio.Event()  # set once everything is released
        # Watch mode (stream_assist/source/): a camera source is a session without a peer, and each page that opens
        # the server follows it: sees its guidance, and its settings, task and spoken commands go to it.
        self.follows = follows
        self.viewers: set[Session] = set()
        self.recorder: Recorder | None = None  # writes what the model was shown and what was said (--record)
        self.last_video_at = time.monotonic()  # a browser that vanished without closing stops sending video
        self._watchdog = self._loop.call_later(config.server.peer_timeout_s, self._check_alive)
        if pc is None or follows is not None:  # no camera of its own: a source says when it drops; ICE, a page
            self._watchdog.cancel()
        worker.register(self.id, self.slot, self._from_worker, self._partial_from_worker)
        if follows is not None:
            follows.viewers.add(self)
        if pc is not None:
            pc.on("track", self._on_track)
            pc.on("datachannel", self._on_datachannel)
            pc.on("connectionstatechange", self._on_connection_state)

    # --- video path -------------------------------------------------------------------------------

    def attach_speech(self) -> None:
        """After the offer is set: the server's voice goes out on the page's receiving audio section, if it has one
        (and the microphone then hears through the voice's echo canceller)."""
        if self.follows is not None:  # a page watching the server's camera speaks for itself (speechSynthesis)
            return
        transceiver = receiving_transceiver(self.pc) if self.server_voice is not None else None
        if transceiver is None or self.server_voice is None:
            return
        self.speech = SpeechLink(self.server_voice, transceiver, self.config.speech, self.metrics, self.send,
                                 self._assistant_speaking)
        if self.voice is not None:
            self.voice.hear_over(self.speech.reference, self.config.speech)

    def _assistant_speaking(self, on: bool, text: str) -> None:
        if self.voice is not None:
            self.voice.assistant_speaking(on, text)

    def _on_track(self, track: MediaStreamTrack) -> None:
        if track.kind == "audio" and self.voice is None:
            self.voice = VoiceLink(self, track)
            if self.speech is not None:
                self.voice.hear_over(self.speech.reference, self.config.speech)
            self._spawn(self.voice.listen())
        if track.kind != "video" or self.sampler is not None:
            return
        if self.follows is not None:  # a page watching the server's camera: its own video is drained, not used
            self._spawn(FrameSampler(track, 1.0).drain())
            return
        receiver = next((t.receiver for t in self.pc.getTransceivers() if t.receiver.track is track), None)
        if receiver is not None:
            use_marker_jitter_buffer(receiver)  # frames reach the decoder one frame interval sooner
        self.capture_clock = CaptureClock(receiver) if receiver is not None else None
        self.watch(track)

    def watch(self, track: MediaStreamTrack) -> asyncio.Task:
        """Samples this video track into the pipeline (a camera source calls it again after each reconnect; the
        counters go on); returns the task that ends when the track does."""
        counters = self.sampler.counters if self.sampler else None
        self.sampler = FrameSampler(track, self.config.pipeline.sample_fps)
        if counters is not None:
            self.sampler.counters = counters
        drain = asyncio.ensure_future(self.sampler.drain())
        self._tasks.add(drain)
        drain.add_done_callback(self._tasks.discard)
        self._spawn(self._feed(self.sampler))
        return drain

    def _prepare(self, item: SampledFrame, timeline: Timeline, prompt: str, context: str, choices: Choices | None,
                 estimate: float | None) -> None:
        """Runs in the executor: decoded frame → RGB at model size → enhanced → (if the scene changed) into
        the slot, where the worker can take it without waiting for the event loop to come round."""
        rgb = to_rgb(item.frame, self.config.pipeline.max_edge)
        truth = read_capture_ms(rgb)  # the capture time written in its pixels, for the page's test pattern
        out = enhance(rgb, self.config.enhancement)
        timeline.mark("enhanced")
        if self.state.paused or self._closing or not self.gate.admit(thumbnail(out), time.time()):
            return
        self.last_queued_at = time.monotonic()
        timeline.mark("queued")
        self.last_enhanced = out
        self.slot.put(Job(item.frame_id, out, prompt, timeline, {"estimate_ms": estimate, "truth_ms": truth},
                          choices=choices, context=context))

    async def _feed(self, sampler: FrameSampler) -> None:
        async for item in sampler.frames():
            self.last_video_at = time.monotonic()
            if self.state.paused:
                continue
            if self.last_video_at - self.last_queued_at < self.state.interval_s:  # the user asked to be guided less
                self.too_soon += 1
                continue
            timeline = Timeline()
            timeline.mark("decoded", item.decoded_at)
            timeline.mark("sampled")
            estimate = self.capture_clock.capture_ms(item.frame.pts) if self.capture_clock else None
            try:
                prompt = self.assistant.question() or self.state.prompt.text()  # a task's narrow question, if on
                context = self.assistant.context()  # its step, asked once before the image
                words = self.assistant.verdict_words()  # its verdict read from one decoding step
                choices = Choices(words, self.config.assistant.verdict_min_mass) if words else None
                await self._loop.run_in_executor(self.executor, self._prepare, item, timeline, prompt, context,
                                                 choices, estimate)
            except Exception:
                self.frames_failed += 1
                log.exception("session %s: frame %d could not be converted", self.id, item.frame_id)

    def _from_worker(self, outcome: Outcome) -> None:
        """Called on the worker thread; hops to the loop."""
        self._loop.call_soon_threadsafe(self._deliver, outcome)

    def _partial_from_worker(self, job: Job, text: str) -> None:
        """Called on the worker thread as tokens arrive; the page shows the answer growing."""
        self._loop.call_soon_threadsafe(self._partial, job, text)

    def _partial(self, job: Job, text: str) -> None:
        if self._closing:
            return
        self.send("partial", frame_id=job.frame_id, text=text)
        if self.speech is not None and not self.state.paused:  # its first sentence, said while the rest is written
            self.speech.partial(job.frame_id, job.timeline, text, self.assistant.speaks_early)

    def _deliver(self, outcome: Outcome) -> None:
        job = outcome.job
        if self._closing:  # an answer that arrives after close must not touch state a new session now holds
            return
        if outcome.error is not None:
            self.send("error", code="inference_failed", message=outcome.error, frame_id=job.frame_id,
                      retrying=outcome.retrying)
            return
        gen = outcome.generation
        assert gen is not None
        tl = job.timeline
        tl.mark("inference_start", gen.started_at)
        tl.mark("first_token", gen.first_token_at)
        tl.mark("done", gen.done_at)
        tl.mark("sent")
        self.metrics.observe(tl, gen)
        if self.recorder is not None:
            self.recorder.frame(job, gen.text)
        self.guidance_sent += 1
        repeat = gen.text == self.state.last_text
        self.state.recent.append(gen.text)
        frame = dict(text=gen.text, repeat=repeat, frame_id=job.frame_id, capture=job.capture,
                     engine=gen.engine, timeline=tl.as_ms(),
                     stages_ms=tl.durations_ms(), counters=self.counters(), model_ms=gen.phases_ms,
                     tokens={"prompt": gen.prompt_tokens, "reused": gen.reused_tokens,
                             "completion": gen.completion_tokens, "image_encodes": gen.image_encodes},
                     verdict=gen.verdict)
        for kind, fields in self.assistant.on_answer(job.prompt, gen.text, gen.verdict, job.context):  # said?
            self.send(kind, **({**frame, **fields} if kind == "guidance" else fields))
            if self.speech is not None:
                self.speech.sent(kind, {**frame, **fields} if kind == "guidance" else fields, tl)

    def counters(self) -> dict[str, int]:
        sampler = self.sampler.counters if self.sampler else None
        return {
            "received": sampler.received if sampler else 0,
            "sampled": sampler.sampled if sampler else 0,
            "failed": self.frames_failed,
            "queued": self.slot.counters.put,
            "dropped": self.slot.counters.dropped,
            "unchanged": self.gate.skipped,
            "too_soon": self.too_soon,
            "processed": self.slot.counters.taken,
            "guidance": self.guidance_sent,
        }

    # --- data channel -----------------------------------------------------------------------------

    def _on_datachannel(self, channel: RTCDataChannel) -> None:
        if channel.label == CLOCK_LABEL:
            channel.on("message", lambda raw: self._on_clock(channel, raw))
            return
        if channel.label != CHANNEL_LABEL:
            channel.close()
            return
        self.channel = channel
        channel.on("message", self._on_message)
        if channel.readyState == "open":
            self._ready()
        else:
            channel.on("open", self._ready)

    def _ready(self) -> None:
        self._send_status("ready")
        owner = self.follows or self
        if owner.assistant.state.card is not None:  # a task restored by the resume token (or the source's)
            self.send_all([owner.assistant.task_message()])

    def _on_clock(self, channel: RTCDataChannel, raw: str | bytes) -> None:
        """NTP-style clock sample: echo the client's t0 with the server's receive and send times (ms)."""
        received = time.time() * 1000.0
        if not self.rate.allow(time.monotonic()):
            return  # the clock shares the session's message budget
        try:
            t0 = protocol.parse_clock_ping(raw)
        except protocol.ProtocolError as e:
            self.send("error", code=e.code, message=str(e))
            return
        if channel.readyState == "open":
            channel.send(protocol.encode("pong", t0=t0, t1=received, t2=time.time() * 1000.0))

    def _send_status(self, state: str) -> None:
        owner = self.follows or self  # a page watching a source shows the source's settings and progress
        self.send("status", state=state, session=owner.id, resume_token=self.resume_token,
                  protocol=protocol.PROTOCOL_VERSION, paused=owner.state.paused,
                  preset=owner.state.prompt.preset, task=owner.state.prompt.task, presets=list(PRESET_NAMES),
                  interval_s=owner.state.interval_s, quiet=owner.assistant.state.policy.hushed,
                  frame_max_edge=self.config.pipeline.max_edge, resumed=self.resumed or owner is not self,
                  recent=list(owner.state.recent), counters=owner.counters(), watch=owner is not self,
                  recording=owner.recorder.video_path.name if owner.recorder is not None else None,
                  speech_out="server" if self.speech is not None else "page",
                  **owner.assistant.progress())

    def _on_message(self, raw: str | bytes) -> None:
        channel_cfg = self.config.channel
        if not self.rate.allow(time.monotonic()):
            self.refused += 1
            if self.refused == 1 or self.refused % 100 == 0:  # a flood must not become a flood of errors
                self.send("error", code="rate_limited",
                          message=f"more than {channel_cfg.max_messages_per_s:g} messages a second; slow down")
            return
        try:
            message = protocol.parse_client_message(raw, channel_cfg.max_message_bytes, channel_cfg.max_prompt_chars)
        except protocol.ProtocolError as e:
            self.send("error", code=e.code, message=str(e))
            return
        self.apply(message)

    def apply(self, message: protocol.ClientMessage) -> None:
        """Carries out one checked message, whether it came over the data channel or by another route."""
        if self.follows is not None and not isinstance(message, protocol.Help | protocol.Speaking):
            self.follows.apply(message)  # settings, task and commands belong to the source this page watches
            return
        if isinstance(message, (protocol.Pause, protocol.Quiet)) and self.speech is not None:
            self.speech.stop("paused" if isinstance(message, protocol.Pause) else "quiet")
        if isinstance(message, protocol.Pause):
            self.state.paused = True
            self.slot.pause()
            self._send_status("paused")
        elif isinstance(message, protocol.Resume):
            if self.state.paused:
                self.state.paused = False
                self.gate.reset()  # the scene may have changed while paused
                self.slot.resume()
            self.assistant.state.policy.hush(False)  # `resume` also ends the assistant's `quiet`
            self._send_status("running")
        elif isinstance(message, protocol.TaskCommand):
            try:
                self.send_all(self.assistant.command(message.name))
            except NoTaskError as e:
                if message.name == "repeat" and self.speech is not None and self.speech.repeat():
                    return  # no task: repeat says again what the voice said last
                self.send("error", code="no_task", message=str(e))
                return
            self._send_status("task")
        elif isinstance(message, protocol.Draft):
            self.send_all(self.assistant.request_draft(message.task))
            self.gate.reset()  # the draft is asked of the next frame, even if the scene is unchanged
            self._send_status("drafting")
        elif isinstance(message, protocol.Quiet):
            self.assistant.state.policy.hush()  # show only, until `resume` or a new step
            self._send_status("quiet")
        elif isinstance(message, protocol.Help):
            self.send_all([("help", help_fields())])
        elif isinstance(message, protocol.Speaking):
            if self.voice is not None:
                self.voice.speaking(message)
        elif isinstance(message, protocol.Record):
            if message.on and self.recorder is None:
                self.recorder = start_recording(self.config, self.id)
            if message.on or self.recorder is None:
                self._send_status("recording" if message.on else "running")
            else:
                self._spawn(self._stop_recording())
        else:
            try:  # the task first: a bad card or step list changes nothing
                card = self.assistant.resolve(message.card, list(message.steps) if message.steps is not None
                                              else None, message.task or self.state.prompt.task)
            except CardError as e:
                self.send("error", code="bad_task", message=str(e))
                return
            if card is not None:
                self.send_all(self.assistant.set_card(card))
            if message.preset is not None:
                self.state.prompt.preset = message.preset
            if message.task is not None:
                self.state.prompt.task = message.task
            if message.prompt is not None:
                self.state.prompt.custom = message.prompt
            if message.interval_s is not None:
                self.state.interval_s = message.interval_s
            self.gate.reset()  # a new question makes the same scene news again
            self._send_status("settings")

    async def _stop_recording(self) -> None:
        """Finishes the recording (its writer thread first), then says so: the file is complete when `status` comes."""
        recorder, self.recorder = self.recorder, None
        await self._loop.run_in_executor(self.executor, recorder.close)
        self._send_status("running")

    def person_speaking(self, on: bool) -> None:
        """The person started or stopped speaking: the assistant holds its speech meanwhile (the server's voice
        falls silent at its next frame: a barge-in), then says what waited."""
        if self.follows is not None:
            self.follows.person_speaking(on)
            return
        if on and self.speech is not None:
            self.speech.stop("barge_in")
        self.send_all(self.assistant.set_person_speaking(on))

    def send_all(self, messages: list[tuple[str, dict]]) -> None:
        """Sends messages not about a frame (task commands, help, held-back speech); the voice says what is said."""
        for kind, fields in messages:
            self.send(kind, **fields)
            if self.speech is not None:
                self.speech.sent(kind, fields)

    def send(self, kind: str, **fields: object) -> None:
        """Sends one message to this page if its channel is open (a closed channel means the session is going), to
        the pages watching this session, and to the recording of this session or of the source this page watches."""
        text = None
        for session in (self, *self.viewers):
            if session.channel is not None and session.channel.readyState == "open":
                text = text or protocol.encode(kind, **fields)
                session.channel.send(text)
        recorder = self.recorder or (self.follows.recorder if self.follows is not None else None)
        if recorder is not None:
            recorder.message(kind, fields)

    # --- lifetime ---------------------------------------------------------------------------------

    def _spawn(self, coro) -> None:  # noqa: ANN001 - coroutine
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _check_alive(self) -> None:
        """Closes a session whose browser sent no video for server.peer_timeout_s (it vanished, or its camera
        stopped); ICE consent expiry (about 30 s in aioice) would catch a vanished one later."""
        limit = self.config.server.peer_timeout_s
        idle = time.monotonic() - self.last_video_at
        if idle < limit:
            self._watchdog = self._loop.call_later(limit - idle, self._check_alive)
            return
        log.info("session %s: no video for %.0f s; closing it", self.id, idle)
        self.send("error", code="no_video", message=f"no video for {limit:g} s: the session is closed")
        self._closer = asyncio.ensure_future(self.close())  # held (a bare task may be collected); not in _tasks,
        # which close() cancels

    async def _on_connection_state(self) -> None:
        if self.pc.connectionState in ("failed", "closed"):
            await self.close()

    async def hand_over(self) -> None:
        """Closes this session because its token was offered again (its peer is gone, or the same page connected
        twice): tells this page not to reconnect; the state goes on to the new session through on_closed."""
        self.send("error", code="replaced", message="this session goes on in a newer connection")
        await self._sent(1.0)
        await self.close()

    async def _sent(self, timeout: float) -> None:
        """Waits, at most timeout, until the guidance channel has handed all it queued to SCTP (before an abort)."""
        channel = self.channel
        if channel is None or channel.readyState != "open" or channel.bufferedAmount == 0:
            return
        done = self._loop.create_future()
        channel.once("bufferedamountlow", lambda: done.done() or done.set_result(None))
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(done, timeout)

    async def close(self) -> None:
        """Stops the tasks, leaves the worker, closes the peer connection; safe to call twice."""
        if self._closing:
            return
        self._closing = True
        self._watchdog.cancel()
        if self.voice is not None:
            self.voice.close()
        if self.speech is not None:
            self.speech.close()
        self.worker.unregister(self.id)
        self.slot.pause()
        if self.follows is not None:
            self.follows.viewers.discard(self)
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self.pc is not None:
            await self.pc.close()
        if self.recorder is not None:
            await self._loop.run_in_executor(self.executor, self.recorder.close)
        self.on_closed(self)
        self.closed.set()
