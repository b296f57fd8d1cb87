"""Speech out: the server's voice (Piper) on the session's WebRTC audio track, and the echo reference it keeps."""

from __future__ import annotations

import logging

from ..config import SpeechConfig
from .synth import Synthesiser
from .voices import choose

log = logging.getLogger(__name__)


def load_voice(config: SpeechConfig) -> Synthesiser | None:
    """The voice `speech.tts` asks for, loaded and tried on a word (VoiceError if it cannot be); None: the page's
    own speechSynthesis speaks. Said in the log either way."""
    files = choose(config.tts)
    if files is None:
        log.info("speech: the page speaks (speechSynthesis)%s", "" if config.tts == "browser" else
                 "; pip install 'stream-assist[speech]' for the server voice on the audio track")
        return None
    voice = Synthesiser(files, config.length_scale)
    log.info("speech: server voice %s (Piper, %d Hz) on each session's WebRTC audio track", voice.name, voice.rate)
    return voice
