"""The real page in headless Chromium hears a spoken command through its fake microphone (a WAV file that
Chromium loops), shows it, and stops its own speech when the person starts speaking."""

from __future__ import annotations

import wave
from pathlib import Path

import numpy as np
import pytest

from stream_assist.bench.speech import with_noise

from .test_browser import chromium_path, open_page  # noqa: F401 - the fixture is used by name
from .voice_clips import clip

pytestmark = pytest.mark.asyncio(loop_scope="session")

# Keeps speechSynthesis calls in order, in place of a speech engine (utterances never end by themselves).
SPEECH_LOG = """
window.__speech = [];
window.speechSynthesis.speak = (u) => { window.__speech.push(['speak', u.text]); };
window.speechSynthesis.cancel = () => { window.__speech.push(['cancel']); };
"""


def microphone_file(directory: Path, text: str) -> Path:
    """What Chromium plays as the microphone: `text` then 1.5 s of quiet, over and over."""
    return microphone_playing(directory, np.concatenate([clip(directory, text), np.zeros(24000, np.int16)]))


def microphone_playing(directory: Path, samples: np.ndarray) -> Path:
    """A WAV of 16 kHz samples for Chromium's fake microphone, which loops it."""
    path = directory / "microphone.wav"
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(16000)
        w.writeframes(samples.tobytes())
    return path


async def test_page_hears_pause_and_the_person_cuts_its_speech_short(server, chromium_path: str,  # noqa: F811
                                                                     tmp_path: Path) -> None:
    base, _ = server
    mic = microphone_file(tmp_path, "pause")
    async with open_page(base, chromium_path, (f"--use-file-for-fake-audio-capture={mic}",)) as page:
        await page.add_init_script(SPEECH_LOG)
        await page.reload()
        await page.click("#start")
        await page.wait_for_function("document.getElementById('state').textContent === 'paused'", timeout=60_000)
        assert await page.text_content("#heard") in ("heard: pause", "hearing you…")
        assert any(e["type"] == "heard" and e["command"] == "pause"
                   for e in await page.evaluate("voice.probe.events"))
        # the assistant starts talking; the looped "pause" comes round again and must stop it
        guidance = '{"type": "guidance", "frame_id": 1, "text": "Loosen the axle nut with the spanner."}'
        await page.evaluate("m => window.streamAssist.handle({data: m})", guidance)
        await page.wait_for_function(
            "(() => { const s = window.__speech; const i = s.findLastIndex(e => e[0] === 'speak');"
            " return i >= 0 && s.slice(i + 1).some(e => e[0] === 'cancel'); })()", timeout=30_000)
        events = await page.evaluate("voice.probe.events.map(e => e.state || e.type)")
        assert "speech_start" in events and await page.evaluate("voice.probe.speaking") == 0


async def test_page_hears_pause_said_in_steady_noise(server, chromium_path: str, tmp_path: Path) -> None:  # noqa: F811
    """White noise 10 dB below the speech goes on before, during and after "pause" (a fan, a compressor), and the
    page asks for no noise suppression: the VAD must still end the utterance (it used to run on with the noise until
    the length limit dropped it, command and all)."""
    base, _ = server
    quiet = np.zeros(2 * 16000, np.int16)
    said = (clip(tmp_path, "pause") * 1.5).astype(np.int16)  # peaks near -5 dBFS, a close microphone
    mic = microphone_playing(tmp_path, with_noise(np.concatenate([quiet, said, quiet]), 10.0, 3))
    async with open_page(base, chromium_path, (f"--use-file-for-fake-audio-capture={mic}",)) as page:
        await page.click("#start")
        await page.wait_for_function("document.getElementById('state').textContent === 'paused'", timeout=60_000)
        settings = await page.evaluate("voice.probe.microphone")
        assert settings["noiseSuppression"] is False and settings["echoCancellation"] is True
        heard = [e for e in await page.evaluate("voice.probe.events") if e["type"] == "heard"]
        assert any(e["command"] == "pause" for e in heard)
        assert not any(e["accepted"] and e["command"] != "pause" for e in heard)
