"""Spoken clips for the voice tests, made once per test run with espeak-ng (skips when it is missing)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from stream_assist.bench.speech import espeak_available, padded, pcm, speak_to_wav

# espeak voices and speeds the tests speak with
VOICES = [("en-us+f2", 160), ("en-us+f5", 130), ("en-us", 150)]
SENTENCES = ["the wheel is off the bike now", "I think this screw is too tight", "can you see the red cable",
             "where did I put the spanner", "let me check the manual first"]


def need_espeak() -> None:
    if not espeak_available():
        pytest.skip("espeak-ng and sox are needed to make speech (.ci/run installs them)")


def clip(directory: Path, text: str, voice: str = "en-us+f2", speed: int = 160) -> np.ndarray:
    """16 kHz samples of `text`, with the silence a microphone hears around an utterance."""
    need_espeak()
    name = f"{voice}-{speed}-{text}".replace(" ", "_").replace("+", "_")
    path = directory / f"{name}.wav"
    return padded(pcm(path if path.exists() else speak_to_wav(text, path, voice, speed)))


def to_48k(samples: np.ndarray) -> np.ndarray:
    """16 kHz → the synthetic microphone's 48 kHz (linear interpolation is plenty for a recogniser at 16 kHz)."""
    t = np.arange(len(samples) * 3) / 3
    return np.interp(t, np.arange(len(samples)), samples.astype(np.float64)).astype(np.int16)
