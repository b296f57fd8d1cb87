"""One session's ears: PCM from the track → VAD → recogniser → what was heard, posted back to the event loop.

The loop only appends PCM to a bounded buffer; segmentation and recognition run on the voice thread, one batch
at a time, so a session's speech never waits on, nor delays, video, enhancement or inference.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections import deque
from collections.abc import Callable
from concurrent.futures import Executor
from dataclasses import dataclass

import numpy as np

from ..threads import one_thread
from .commands import TASK_PREFIX, Heard, Rules, Word, interpret
from .echo import EchoCanceller, EchoGuard
from .foreground import foreground
from .recognisers import Recogniser
from .vad import FRAME_MS, RATE, Segmenter, SpeechPaused, SpeechStarted, Utterance

log = logging.getLogger(__name__)

MAX_BUFFERED = 100  # pieces of PCM waiting for the voice thread (2 s of 20 ms frames); older ones are dropped


def voice_executor() -> Executor:
    """The process's one voice thread, apart from the enhancement pool and the inference worker."""
    return one_thread("voice")


@dataclass(frozen=True)
class ListenerSettings:
    aggressiveness: int = 3
    end_silence_ms: int = 120
    max_utterance_s: float = 6.0
    barge_in_ms: int = 150
    echo_window_s: float = 3.0
    rules: Rules = Rules()
    echo_tail_s: float = 0.3  # after the assistant stops, its voice may still be heard this long


def heard_in(utterance: Utterance, recognise: Callable[[bytes], list[Word]], confirming: bool,
             rules: Rules) -> tuple[Utterance, list[Word], Heard]:
    """What an utterance says: taken whole, or else its loud stretch alone (a command said over a quieter
    talker or noise, which the VAD wraps in), with the utterance that was heard."""
    words = recognise(utterance.pcm)
    heard = interpret(words, utterance.speech_s, confirming, rules)
    loud = None if heard.accepted else foreground(utterance)
    if loud is not None:
        loud_words = recognise(loud.pcm)
        loud_heard = interpret(loud_words, loud.speech_s, confirming, rules)
        if loud_heard.accepted:
            return loud, loud_words, loud_heard
    return utterance, words, heard


class Listener:
    """Calls on_heard(heard, task) for every utterance and on_voice("speech_start" | "speech_end"), on the loop."""

    def __init__(self, settings: ListenerSettings, recogniser: Callable[[], Recogniser],
                 on_heard: Callable[[Heard, str | None], None], on_voice: Callable[[str], None],
                 executor: Executor | None = None, far_end: Callable[[int], np.ndarray] | None = None,
                 canceller: EchoCanceller | None = None) -> None:
        self.settings = settings
        self._make_recogniser = recogniser  # called on the voice thread: loading a model never blocks the loop
        self._recogniser: Recogniser | None = None
        self.on_heard, self.on_voice = on_heard, on_voice
        self.executor = executor or voice_executor()
        self.echo = EchoGuard(settings.echo_window_s, settings.echo_tail_s)
        # The server voice's samples sent meanwhile, taken on the loop as each piece of PCM arrives (so the two
        # stay in step), and the canceller that removes their echo on the voice thread.
        self.far_end, self.canceller = far_end, canceller
        self.segmenter = Segmenter(settings.aggressiveness, settings.end_silence_ms, settings.max_utterance_s)
        self.proposal: str | None = None  # a dictated task waiting for yes / no
        self.dropped = 0  # PCM pieces dropped because the voice thread fell 2 s behind
        self._early: tuple[bytes, bool, list[Word]] | None = None  # words recognised at a pause, for its end
        self._loop = asyncio.get_running_loop()
        self._buffer: deque[tuple[bytes, np.ndarray | None]] = deque()
        self._lock = threading.Lock()
        self._scheduled = False
        self._announced = False  # speech_start sent for the current speech
        self._over_voice = False  # the current speech began while the server's voice sounded (with a canceller)
        self._over_unlearnt = False  # the current speech began over the voice before its canceller learnt the room
        self._closed = False
        self.executor.submit(lambda: self.recogniser)  # loaded now (~0.3 s, once a process), not at the first command

    def feed(self, pcm: bytes) -> None:
        """On the loop: queue PCM (with the far end sent meanwhile) for the voice thread (bounded: the oldest goes
        first)."""
        far = self.far_end(len(pcm) // 2) if self.far_end is not None else None
        with self._lock:
            if len(self._buffer) >= MAX_BUFFERED:
                self._buffer.popleft()
                self.dropped += 1
            self._buffer.append((pcm, far))
            if self._scheduled or self._closed:
                return
            self._scheduled = True
        self.executor.submit(self._work)

    def close(self) -> None:
        with self._lock:
            self._closed = True
            self._buffer.clear()

    @property
    def recogniser(self) -> Recogniser:
        if self._recogniser is None:
            self._recogniser = self._make_recogniser()
        return self._recogniser

    def _post(self, fn: Callable, *args: object) -> None:  # noqa: ANN001
        if not self._closed:
            self._loop.call_soon_threadsafe(fn, *args)

    def _work(self) -> None:
        """On the voice thread: everything buffered, then stop until feed() schedules again. A failure costs this
        session what was buffered, never the thread or another session."""
        try:
            self._drain_buffer()
        except Exception:
            log.exception("voice: listening failed; the buffered audio is dropped")
            with self._lock:
                self._buffer.clear()
                self._scheduled = False

    def _drain_buffer(self) -> None:
        while True:
            with self._lock:
                if not self._buffer or self._closed:
                    self._scheduled = False
                    return
                pieces = list(self._buffer)
                self._buffer.clear()
            pcm = b"".join(p for p, _ in pieces)
            if self.canceller is not None:
                far = [f if f is not None else np.zeros(len(p) // 2, np.int16) for p, f in pieces]
                pcm = self.canceller.process(pcm, np.concatenate(far))
            for event in self.segmenter.feed(pcm):
                if isinstance(event, SpeechStarted):
                    self._over_voice = self.canceller is not None and self.echo.is_speaking()
                    self._over_unlearnt = self._over_voice and not self.canceller.converged
                    self._announce(0.0)
                elif isinstance(event, SpeechPaused):
                    if not self._over_voice:  # over the voice its words run on past this pause (_for_words)
                        self._recognise_early(self._for_words(event.utterance))
                else:
                    self._finish(self._for_words(event))
            if self.segmenter.state == "speech":
                self._announce(self.segmenter.speech_s)

    def _for_words(self, utterance: Utterance) -> Utterance:
        """The samples to recognise. Speech that began over the voice runs on to the end of the silence that ended
        it: AEC3's suppression lets the VAD hear only the loud middle of a word said over the voice ("pause" heard
        as "p"), while Speex's output, where the words come from, still holds the rest (measured in `bench speak`)."""
        if self.canceller is None:
            return utterance
        if not self._over_voice:
            return self.canceller.for_words(utterance)
        self.canceller.relearn()
        # until Speex has learnt the room, the words it gives over the voice may be the voice's own
        self._over_unlearnt = self._over_unlearnt or not self.canceller.words_heard(utterance)
        return self.canceller.for_words(utterance, utterance.end_s + self.segmenter.end_frames * FRAME_MS / 1000)

    def _barge_in_ms(self) -> float:
        """How much speech over the assistant's voice stops it: none once the echo canceller has learnt the room
        (what is left is the person), twice barge_in_ms while it has not (it leaks), barge_in_ms for the page's
        own speechSynthesis (nothing cancels it)."""
        if self.canceller is None:
            return self.settings.barge_in_ms
        return 0.0 if self.canceller.converged else 2.0 * self.settings.barge_in_ms

    def _announce(self, speech_s: float) -> None:
        """speech_start at once when the assistant is quiet; while it speaks, only after _barge_in_ms() of speech
        (a shorter sound is most likely its own voice)."""
        if self._announced or (self.echo.is_speaking() and speech_s * 1000 < self._barge_in_ms()):
            return
        self._announced = True
        self._post(self.on_voice, "speech_start")

    def _finish(self, utterance: Utterance) -> None:
        self._announce(utterance.speech_s)  # an utterance that began and ended within one batch
        announced, self._announced = self._announced, False
        if announced:
            self._post(self.on_voice, "speech_end")
        heard, task = self._hear(utterance, announced)
        if heard.accepted:
            self.segmenter.settle()
        self._post(self.on_heard, heard, task)

    def _recognise_early(self, utterance: Utterance) -> None:
        """Recognises a command-length utterance while the VAD waits for its end (end_silence_ms): then only the
        wait is left between the end of speech and the command (the decode, up to ~100 ms on a busy machine,
        overlaps it). Wasted, and dropped, when the person goes on speaking."""
        if self._announced and utterance.speech_s <= self.settings.rules.max_command_s:
            confirming = self.proposal is not None
            self._early = (utterance.pcm, confirming, self.recogniser.commands(utterance.pcm, confirming))

    def _words(self, pcm: bytes, confirming: bool) -> list[Word]:
        early, self._early = self._early, None
        if early is not None and early[0] == pcm and early[1] == confirming:
            return early[2]
        return self.recogniser.commands(pcm, confirming)

    def _hear(self, utterance: Utterance, announced: bool) -> tuple[Heard, str | None]:
        if utterance.cut:
            return Heard("", None, False, f"over {self.settings.max_utterance_s:g} s of sound: dropped"), None
        if not announced:
            return Heard("", None, False, "too short to be more than the assistant's own voice"), None
        confirming = self.proposal is not None
        utterance, words, heard = heard_in(utterance, lambda pcm: self._words(pcm, confirming), confirming,
                                           self.settings.rules)
        if heard.accepted and self.echo.is_echo(heard.text):
            return Heard(heard.text, None, False, "the assistant's own voice"), None
        if heard.accepted and self._over_unlearnt:
            return Heard(heard.text, None, False, "over the assistant before its echo was learnt: say it again"), None
        if heard.command == "task":
            return self._dictate(utterance, words[2].end_s if len(words) >= 3 else 0.0)
        if heard.command in ("yes", "no"):
            task, self.proposal = self.proposal, None
            return heard, task if heard.command == "yes" else None
        return heard, None

    def _dictate(self, utterance: Utterance, after_s: float) -> tuple[Heard, str | None]:
        """'my task is …': the rest, dictated, becomes a proposal the person confirms with yes (or types)."""
        start = int(max(0.0, after_s) * RATE) * 2
        text = self.recogniser.dictate(utterance.pcm[start:]).strip()
        if not text:
            return Heard(TASK_PREFIX, None, False, "no task heard after 'my task is'"), None
        self.proposal = text
        return Heard(f"{TASK_PREFIX} {text}", "task", True, "say yes to keep it, no to drop it, or type it"), text
