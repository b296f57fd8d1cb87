"""`stream-assist bench page`: the real page in headless Chromium (fake camera) against a real server.

Prints the time from pressing Start to the first guidance on screen, and the session's frame counters
(received, sampled, dropped by the slot, processed) over a run of fixed length, and camera → screen with and
without the model's own time. With `--camera pattern` the page's test-pattern camera writes each frame's
capture time into its pixels, and the page's capture estimate is compared with that truth. Needs the test
extra (playwright) and Debian's chromium.
"""

from __future__ import annotations

import asyncio
import json
import tempfile
import wave
from pathlib import Path

import numpy as np

from ..config import Config
from ..inference.model_source import ModelFiles
from ..inference.vision_model import VisionModel
from ..inference.worker import InferenceWorker
from ..server.app import ServerState, make_app, start_site
from ..speech_out import load_voice

CHROMIUM_ARGS = [
    "--use-fake-device-for-media-stream", "--use-fake-ui-for-media-stream", "--no-sandbox",
    "--disable-background-networking", "--disable-component-update", "--disable-sync", "--no-first-run",
    "--disable-gpu",
]


def _latency_figures(latency: list[dict]) -> dict:
    """Camera → screen (and without the model's own time) and the capture estimate's error vs pixel truth."""
    def pct(values: list[float]) -> dict:
        if not values:
            return {}
        p50, p95 = np.percentile(values, [50, 95])
        return {"p50": round(float(p50), 1), "p95": round(float(p95), 1), "n": len(values)}

    known = [lat for lat in latency if lat["screen_ms"] is not None]
    truth = [lat for lat in known if lat["truth_ms"] is not None]
    errors = [lat["capture_ms"] - lat["truth_ms"] for lat in truth]
    return {
        "camera_to_screen_ms": pct([lat["screen_ms"] for lat in known]),
        "camera_to_screen_without_model_ms": pct([lat["screen_ms"] - lat["model_ms"] for lat in known
                                                  if lat["model_ms"] is not None]),
        # the first sample of its spoken guidance leaving the server (server voice) or speechSynthesis called
        "camera_to_speech_start_ms": pct([lat["speech_ms"] for lat in latency if lat.get("speech_ms") is not None]),
        "estimate_minus_truth_ms": {"max_abs": round(max(map(abs, errors)), 1),
                                    "mean": round(float(np.mean(errors)), 1), "n": len(errors)} if errors else {},
    }


async def measure(files: ModelFiles, config: Config, seconds: float, chromium: str, camera: str) -> dict:
    """Runs one page session for `seconds` from pressing Start; returns the figures."""
    from playwright.async_api import async_playwright

    model = VisionModel(files, config.model)
    worker = InferenceWorker(model)
    worker.start()
    voice = load_voice(config.speech)
    app = make_app(ServerState(config, worker, files.text.name, voice))
    runner, port = await start_site(app, "127.0.0.1", 0)
    try:
        async with async_playwright() as p:
            quiet = f"--use-file-for-fake-audio-capture={silent_wav()}"  # Chromium's default fake microphone beeps
            browser = await p.chromium.launch(executable_path=chromium, args=[*CHROMIUM_ARGS, quiet], headless=True)
            page = await browser.new_page()
            await page.goto(f"http://127.0.0.1:{port}/")
            if camera == "pattern":
                await page.select_option("#camera", "pattern")
            await page.click("#start")
            await page.wait_for_function("window.streamAssist.firstGuidanceAt !== null", timeout=600_000)
            first_ms = await page.evaluate("window.streamAssist.firstGuidanceAt - window.streamAssist.startedAt")
            await page.wait_for_function(f"performance.now() - window.streamAssist.startedAt >= {seconds * 1000}",
                                         polling=100, timeout=(seconds + 60) * 1000)
            last = await page.evaluate("window.streamAssist.last")
            latency = await page.evaluate("window.streamAssist.latency")
            said = await page.evaluate("voice.probe.events.filter(e => e.type === 'speech').map(e => e.state)")
            await browser.close()
    finally:
        await runner.cleanup()
    timeline = last["timeline"]
    return {
        "model": files.text.name,
        "start_to_first_guidance_ms": round(first_ms, 1),
        "run_seconds": seconds,
        "camera": camera,
        "speech": voice.name if voice else "page (speechSynthesis)",
        "speech_events": {state: said.count(state) for state in sorted(set(said))},
        **_latency_figures(latency[1:]),  # the first guidance includes the connection's start
        "counters": last["counters"],
        "last_frame": {"stages_ms": last["stages_ms"],
                       "decoded_to_sent_ms": round(timeline["sent"] - timeline["decoded"], 1)},
    }


def main(files: ModelFiles, config: Config, seconds: float, chromium: str, camera: str, as_json: bool) -> int:
    result = asyncio.run(measure(files, config, seconds, chromium, camera))
    if as_json:
        print(json.dumps(result, indent=2))
        return 0
    c = result["counters"]
    print(f"model                      {result['model']}")
    print(f"Start → first guidance     {result['start_to_first_guidance_ms']:.0f} ms")
    print(f"first {seconds:.0f} s after Start   received {c['received']}, sampled {c['sampled']}, "
          f"dropped by slot {c['dropped']}, processed {c['processed']}, guidance {c['guidance']}")
    print(f"last frame decoded → sent  {result['last_frame']['decoded_to_sent_ms']:.0f} ms")
    print(f"speech                     {result['speech']} {result['speech_events']}")
    for key in ("camera_to_screen_ms", "camera_to_screen_without_model_ms", "camera_to_speech_start_ms",
                "estimate_minus_truth_ms"):
        if result[key]:
            print(f"{key:34} {result[key]}")
    return 0


def silent_wav() -> Path:
    """A second of silence for Chromium's fake microphone: its default beep is speech enough to barge in (the
    assistant would hold every utterance for the person)."""
    path = Path(tempfile.gettempdir()) / "stream-assist-bench-silence.wav"
    if not path.exists():
        with wave.open(str(path), "wb") as w:
            w.setnchannels(1)
            w.setsampwidth(2)
            w.setframerate(16000)
            w.writeframes(b"\0\0" * 16000)
    return path


def default_chromium() -> str:
    return "/usr/bin/chromium" if Path("/usr/bin/chromium").exists() else "chromium"
