"""Speech recognisers behind one small protocol: pocketsphinx (offline, its model ships in the wheel) by default.

A grammar search for commands, and the wheel's full language model for dictating a task (poor: ~80 % word error
on synthetic speech, so a dictated task is only ever a proposal the person confirms).
"""

from __future__ import annotations

import re
import threading
from typing import Protocol

from .commands import Word, jsgf

RATE = 16000
PAD = bytes(RATE)  # 0.5 s of silence either side: grammar mode loses words at the very edges without it
FILLERS = ("<s>", "</s>", "<sil>", "[NOISE]", "++")
ALTERNATE = re.compile(r"\(\d+\)$")  # "repeat(2)": the dictionary's second pronunciation of "repeat"


class Recogniser(Protocol):
    def commands(self, pcm: bytes, confirming: bool) -> list[Word]:
        """The grammar's best words for 16 kHz s16 mono speech (times within pcm), or none."""

    def dictate(self, pcm: bytes) -> str:
        """Free text for 16 kHz s16 mono speech."""


class PocketSphinx:
    """One decoder with three searches, shared by every session; calls are serialised (the voice thread is one)."""

    def __init__(self, **decoder_options: object) -> None:
        from pocketsphinx import Decoder

        self._lock = threading.Lock()
        self._decoder = Decoder(loglevel="FATAL", **decoder_options)
        self._dictation = self._decoder.current_search()
        self._decoder.add_jsgf_string("commands", jsgf(False))
        self._decoder.add_jsgf_string("confirming", jsgf(True))

    def _decode(self, search: str, pcm: bytes):  # noqa: ANN202 - the decoder, after the utterance
        self._decoder.activate_search(search)
        self._decoder.start_utt()
        self._decoder.process_raw(PAD + pcm + PAD, full_utt=True)
        self._decoder.end_utt()
        return self._decoder

    def commands(self, pcm: bytes, confirming: bool) -> list[Word]:
        with self._lock:
            decoder = self._decode("confirming" if confirming else "commands", pcm)
            if decoder.hyp() is None:
                return []
            frame_s = 1.0 / decoder.config["frate"]
            return [Word(ALTERNATE.sub("", s.word), s.start_frame * frame_s - 0.5, (s.end_frame + 1) * frame_s - 0.5)
                    for s in decoder.seg() if not s.word.startswith(FILLERS)]

    def dictate(self, pcm: bytes) -> str:
        with self._lock:
            hyp = self._decode(self._dictation, pcm).hyp()
            return hyp.hypstr if hyp is not None else ""


_shared: dict[str, Recogniser] = {}
_shared_lock = threading.Lock()


def shared_recogniser(name: str = "pocketsphinx") -> Recogniser:
    """The process's one recogniser of that kind (start-up ~0.3 s, so made once, on first use)."""
    if name != "pocketsphinx" and not name.startswith("whisper:"):
        raise ValueError(f"unknown recogniser {name!r} (known: pocketsphinx, whisper:<model>)")
    with _shared_lock:
        if name not in _shared:
            _shared[name] = PocketSphinx() if name == "pocketsphinx" else _whisper(name)
        return _shared[name]


def _whisper(asr: str) -> Recogniser:
    from .whisper import load_whisper  # pywhispercpp is an optional extra: imported only when asked for

    return load_whisper(asr)
