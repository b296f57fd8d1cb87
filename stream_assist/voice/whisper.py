"""whisper.cpp (via pywhispercpp) as a Recogniser: one transcript per utterance, judged by the command rules.

Far better dictation than pocketsphinx, at the cost of a model download (`--asr whisper:base.en`). Runs on the
voice thread like every recogniser; one model per process, calls serialised.
"""

from __future__ import annotations

import atexit
import logging
import threading
from pathlib import Path

import numpy as np

from .commands import Word
from .transcript import task_text, transcript_words
from .whisper_source import resolve_whisper

RATE = 16000
PAD_S = 0.25  # silence either side: whisper drops a word cut right at the edge of its input
PAD = bytes(int(PAD_S * RATE) * 2)
MAX_TOKENS = 64  # more than a 6 s utterance says; bounds the decoding of loud noise


class WhisperCpp:
    """Commands and dictation from one whisper.cpp transcript of each utterance."""

    def __init__(self, path: Path) -> None:
        from pywhispercpp.model import Model

        self._lock = threading.Lock()
        logging.getLogger("pywhispercpp").setLevel(logging.WARNING)  # it logs two INFO lines per utterance
        # English (the commands are); one segment and no carried context, as each utterance stands alone; no
        # retries at higher temperatures (they cost up to 6 decodes on noise, and a doubtful command is rejected)
        self._model = Model(str(path), redirect_whispercpp_logs_to=None, print_progress=False,
                            print_realtime=False, language="en", single_segment=True, no_context=True,
                            temperature_inc=0.0, max_tokens=MAX_TOKENS)
        self._last: tuple[bytes, str] = (b"", "")  # the last utterance and its transcript
        atexit.register(self._free)  # freed while pywhispercpp is still loaded, not in module teardown

    def _free(self) -> None:
        with self._lock:
            self._model = None

    def _transcribe(self, pcm: bytes) -> list[tuple[float, float, str]]:
        samples = np.frombuffer(PAD + pcm + PAD, dtype=np.int16).astype(np.float32) / 32768.0
        length_s = len(pcm) / 2 / RATE

        def within(centiseconds: int) -> float:  # whisper's times are in its 30 s window: kept within the speech
            return min(max(centiseconds / 100 - PAD_S, 0.0), length_s)

        segments = [(within(s.t0), within(s.t1), s.text) for s in self._model.transcribe(samples)]
        self._last = (pcm, " ".join(text for _, _, text in segments))
        return segments

    def commands(self, pcm: bytes, confirming: bool) -> list[Word]:
        """The transcript's words; whether they are a command is decided by commands.interpret."""
        with self._lock:
            return transcript_words(self._transcribe(pcm))

    def dictate(self, pcm: bytes) -> str:
        """The task after 'my task is'. The listener passes the tail of the utterance just heard: its transcript
        is reused rather than running whisper twice on the same speech."""
        with self._lock:
            last_pcm, transcript = self._last
            if not (pcm and last_pcm.endswith(pcm)):
                self._transcribe(pcm)
                transcript = self._last[1]
            return task_text(transcript)


def load_whisper(asr: str) -> WhisperCpp:
    """The recogniser for a `whisper:<name-or-path>` setting (a named model is fetched if not yet cached)."""
    return WhisperCpp(resolve_whisper(asr))
