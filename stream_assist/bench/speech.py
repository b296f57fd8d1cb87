"""Spoken test utterances made on the spot with espeak-ng (and sox), for the voice tests and `bench voice`.

espeak-ng is a test tool here (GPL, Debian's package), never a dependency of the service.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import numpy as np

RATE = 16000


def espeak_available() -> bool:
    return shutil.which("espeak-ng") is not None and shutil.which("sox") is not None


def speak_to_wav(text: str, path: Path, voice: str = "en-us", speed: int = 150) -> Path:
    """Writes `text` spoken by espeak-ng as a 16 kHz mono s16 WAV (what the server's recogniser takes)."""
    raw = path.with_suffix(".espeak.wav")
    subprocess.run(["espeak-ng", "-v", voice, "-s", str(speed), "-w", str(raw), text], check=True,
                   capture_output=True)
    subprocess.run(["sox", "-R", str(raw), "-r", str(RATE), "-c", "1", "-b", "16", str(path)], check=True,
                   capture_output=True)
    raw.unlink()
    return path


def pcm(path: Path) -> np.ndarray:
    """A 16 kHz mono s16 WAV's samples."""
    import wave

    with wave.open(str(path)) as w:
        return np.frombuffer(w.readframes(w.getnframes()), np.int16)


def with_noise(samples: np.ndarray, snr_db: float | None, seed: int = 0) -> np.ndarray:
    """The samples with white noise at the given speech-to-noise ratio (None: unchanged)."""
    if snr_db is None:
        return samples
    speech = samples.astype(np.float64)
    power = np.mean(speech[np.abs(speech) > 100] ** 2)
    noise = np.random.default_rng(seed).normal(0, np.sqrt(power / 10 ** (snr_db / 10)), len(speech))
    return np.clip(speech + noise, -32768, 32767).astype(np.int16)


def padded(samples: np.ndarray, before_s: float = 0.5, after_s: float = 0.6) -> np.ndarray:
    """Silence around a clip, as a microphone hears it between utterances."""
    return np.concatenate([np.zeros(int(before_s * RATE), np.int16), samples, np.zeros(int(after_s * RATE), np.int16)])
