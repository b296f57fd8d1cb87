"""One session's voice: guidance text → pieces synthesised on the speech thread → the session's audio track.

A new utterance replaces the one playing (fresh guidance beats stale speech); barge_in() silences the track at
the next frame and drops what was still to be synthesised. An answer's first sentence may start while the model
writes the rest (say(..., more=True)), and the rest follows with extend(). Every start and end is reported, with
when its text was handed over, so the timeline can carry "speech out".
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from concurrent.futures import Executor

from .synth import Synthesiser, speech_executor
from .text import pieces, sayable
from .track import SpeechTrack, Utterance

log = logging.getLogger(__name__)

Report = Callable[[str, Utterance | None, dict], None]  # (state, utterance, fields): start, end, skipped, error


class Speaker:
    """Says texts on a session's SpeechTrack; all methods run on the event loop."""

    def __init__(self, synth: Synthesiser, track: SpeechTrack, report: Report, max_chars: int = 600,
                 executor: Executor | None = None) -> None:
        self.synth = synth
        self.track = track
        self.report = report
        self.max_chars = max_chars
        self.executor = executor or speech_executor()
        self.current: Utterance | None = None
        self.working: tuple[Utterance, object] | None = None  # the speech thread's piece now: whose, its run options
        self.last_text = ""  # what was last said in full (or begun), for "repeat"
        self._loop = asyncio.get_running_loop()
        self._closed = False

    def say(self, text: str, frame_id: int | None = None, more: bool = False) -> Utterance | None:
        """Starts saying text now, in place of anything playing; None (and a `skipped` report, the current speech
        left to go on) when the voice can say nothing of it. With more=True the utterance stays open for extend()."""
        spoken = sayable(text, self.synth.scripts, self.max_chars)
        if not spoken:  # and what is being said goes on
            self.report("skipped", None, {"frame_id": frame_id, "reason": "nothing the voice can say",
                                          "text": text[:200]})
            return None
        self.stop("replaced")
        utterance = Utterance(spoken, frame_id, time.time(), self._started, self._ended)
        self.current = utterance
        self.last_text = spoken
        self._synthesise(utterance, pieces(spoken), done=not more)
        return utterance

    def extend(self, utterance: Utterance, text: str) -> None:
        """The rest of an utterance begun with more=True (empty: it is complete as it is)."""
        rest = sayable(text, self.synth.scripts, max(0, self.max_chars - len(utterance.text)))
        if rest:
            utterance.text = f"{utterance.text} {rest}"
            self.last_text = utterance.text
        self._synthesise(utterance, pieces(rest, first_words=len(rest)), done=True)

    def stop(self, reason: str) -> None:
        """Silences the track from its next frame and drops the rest of the current utterance."""
        cut = self.track.stop()
        current, self.current = self.current, None
        for utterance in dict.fromkeys([*cut, *([current] if current else [])]):
            if not utterance.ended:
                utterance.ended = True
                self.report("end", utterance, {"how": "stopped", "reason": reason})
        working = self.working
        if working is not None and working[0].ended:
            working[1].terminate = True  # its piece is not waited for: that synthesis ends at once

    def close(self) -> None:
        self._closed = True
        self.stop("closed")

    def _synthesise(self, utterance: Utterance, texts: list[str], done: bool) -> None:
        self.executor.submit(self._work, utterance, texts, done)

    def _work(self, utterance: Utterance, texts: list[str], done: bool) -> None:
        """On the speech thread: one piece at a time, each handed to the loop as soon as it is made; stops early
        when the utterance was cut short meanwhile."""
        try:
            for text in texts:
                if utterance.ended or self._closed:
                    return
                options = self.synth.run_options()
                self.working = (utterance, options)
                audio = self.synth.synthesise(text, options)
                self._post(self.track.queue, utterance, audio.track, audio.reference)
        except Exception as e:  # one bad text costs that utterance, never the thread or the session
            if not utterance.ended:  # else it was stopped on purpose
                log.warning("speech: synthesis failed for %r: %s", utterance.text[:80], e)
                self._post(self.report, "error", utterance, {"message": f"speech failed: {e}"})
        finally:
            self.working = None
        if done:
            self._post(self.track.completed, utterance)

    def _post(self, fn: Callable, *args: object) -> None:  # noqa: ANN001
        if not self._closed:
            self._loop.call_soon_threadsafe(fn, *args)

    def _started(self, utterance: Utterance) -> None:
        self.report("start", utterance, {})

    def _ended(self, utterance: Utterance, how: str) -> None:
        if self.current is utterance:
            self.current = None
        self.report("end", utterance, {"how": how})
