"""The real page in headless Chromium with a fake camera, streaming into the real server."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from stream_assist.bench.page import CHROMIUM_ARGS, silent_wav

pytestmark = pytest.mark.asyncio(loop_scope="session")

CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
SCREENSHOTS = Path(tempfile.gettempdir()) / "stream-assist-screens"
SCREENSHOTS.mkdir(exist_ok=True)
# Observe speech without a speech engine: record what the page asks to say.
SPEECH_SPY = """
window.__spoken = [];
if (window.speechSynthesis) {
  window.speechSynthesis.speak = (u) => { window.__spoken.push(u.text); };
  window.speechSynthesis.cancel = () => {};
}
"""


def silent_microphone() -> str:
    """A WAV of silence for Chromium's fake microphone: its default is a beep that the listener may take for a
    command (a beep heard as "back" once moved a task a step back mid-test). Voice tests give their own speech."""
    return str(silent_wav())


def norm(text: str) -> str:
    return " ".join(text.split()).lower()


@pytest.fixture(scope="module")
def chromium_path() -> str:
    if not shutil.which(CHROMIUM):
        pytest.fail(f"Chromium not found at {CHROMIUM}; .ci/run installs Debian's chromium")
    return CHROMIUM


@contextlib.asynccontextmanager
async def open_page(base: str, chromium: str, extra_args: tuple[str, ...] = (), **page_options) -> AsyncIterator:  # noqa: ANN003
    """The stream-assist page in a fresh headless Chromium, with speech recorded instead of spoken."""
    from playwright.async_api import async_playwright

    async with async_playwright() as p:
        if not any(a.startswith("--use-file-for-fake-audio-capture") for a in extra_args):
            extra_args = (*extra_args, f"--use-file-for-fake-audio-capture={silent_microphone()}")
        browser = await p.chromium.launch(executable_path=chromium, args=[*CHROMIUM_ARGS, *extra_args], headless=True)
        try:
            page = await browser.new_page(**page_options)
            page.set_default_timeout(60_000)  # a loaded 2-core CI machine; a wait that names its own keeps it
            await page.add_init_script(SPEECH_SPY)
            await page.goto(base + "/")
            yield page
        finally:
            await browser.close()


async def test_page_streams_camera_and_shows_and_speaks_guidance(server, chromium_path: str) -> None:
    base, state = server
    errors: list[str] = []
    async with open_page(base, chromium_path) as page:
        page.on("pageerror", lambda e: errors.append(str(e)))
        await page.click("#start")
        await page.wait_for_function("window.streamAssist.firstGuidanceAt !== null", timeout=120_000)
        await page.wait_for_function("window.__spoken.length >= 1", timeout=30_000)
        first = await page.evaluate("window.streamAssist.firstText")
        spoken = await page.evaluate("window.__spoken")
        assert first and norm(first).startswith(norm(spoken[0]))  # said whole, or its first sentence first
        assert await page.text_content("#state") == "live"
        # both clocks are this machine's, so the true offset is 0: the estimate must bracket it
        await page.wait_for_function("window.streamAssist.clock.samples.length >= 3", timeout=30_000)
        clock = await page.evaluate("window.streamAssist.clock")
        assert abs(clock["offset"]) <= clock["uncertainty"] + 5  # 5 ms: browser timeOrigin coarsening
        assert "processed" in await page.text_content("#stats")
        assert errors == []
        # the page sends no more pixels than the server uses (the fake camera is 640x480, max_edge 256)
        session = state.sessions[await page.evaluate("window.streamAssist.session")]
        edge = state.config.pipeline.max_edge
        await page.wait_for_function(
            "edge => { const m = document.getElementById('webrtc').textContent.match(/(\\d+)×(\\d+)/);"
            " return m && Math.max(+m[1], +m[2]) <= edge; }", arg=edge, timeout=60_000)
        now = await page.evaluate("window.streamAssist.last.frame_id")
        await page.wait_for_function("n => window.streamAssist.last.frame_id > n + 30", arg=now, timeout=60_000)
        assert 0 < max(session.sampler.counters.width, session.sampler.counters.height) <= edge
        # Stop closes the peer connection, and the server frees the session
        await page.click("#start")
        assert await page.text_content("#state") == "idle"
        await asyncio.wait_for(session.closed.wait(), 60)
    assert session.id not in state.sessions


async def test_speech_says_first_sentence_early_and_never_repeats(server, chromium_path: str) -> None:
    """The page's speech rules, driven with protocol messages in real Chromium."""
    base, _ = server
    messages = [
        {"type": "partial", "frame_id": 5, "text": "Turn the"},
        {"type": "partial", "frame_id": 5, "text": "Turn the knob left."},
        {"type": "partial", "frame_id": 5, "text": "Turn the knob left. Then lift"},
        {"type": "guidance", "frame_id": 5, "text": "Turn the knob left. Then lift the lid.", "speak": True},
        {"type": "partial", "frame_id": 9, "text": "Turn the knob left."},  # same advice again: silent
        {"type": "guidance", "frame_id": 9, "text": "Turn the knob left. Then lift the lid.", "speak": False},
        {"type": "guidance", "frame_id": 12, "text": "Now unplug the cable.", "speak": True},
    ]
    async with open_page(base, chromium_path) as page:
        spoken_after = []
        for msg in messages:
            await page.evaluate("m => window.streamAssist.handle({data: JSON.stringify(m)})", msg)
            spoken_after.append(len(await page.evaluate("window.__spoken")))
        spoken = await page.evaluate("window.__spoken")
        history = await page.eval_on_selector_all("#history li", "els => els.map(e => e.textContent)")
        shown = await page.text_content("#guidance")
    assert spoken == ["Turn the knob left.", "Then lift the lid.", "Now unplug the cable."]
    assert spoken_after == [0, 1, 1, 2, 2, 2, 3]  # the first sentence went out before the answer was complete
    assert shown == "Now unplug the cable."
    assert history == ["Turn the knob left. Then lift the lid.", "Turn the knob left. Then lift the lid."]


async def test_glass_to_guidance_agrees_with_the_time_written_in_the_pixels(server, chromium_path: str) -> None:
    """Test-pattern camera: each frame carries its capture time in its pixels. The page's camera→screen
    figure (capture estimated from RTP time and RTCP sender reports) must match the pixel truth."""
    base, _ = server
    async with open_page(base, chromium_path) as page:
        await page.select_option("#camera", "pattern")
        await page.click("#start")
        await page.wait_for_function(
            "window.streamAssist.latency.filter(l => l.capture_ms !== null && l.truth_ms !== null).length >= 10",
            timeout=120_000)
        latency = await page.evaluate("window.streamAssist.latency")
    both = [lat for lat in latency if lat["capture_ms"] is not None and lat["truth_ms"] is not None]
    errors = [lat["capture_ms"] - lat["truth_ms"] for lat in both]
    print("capture estimate − pixel truth (ms):", [round(e, 1) for e in errors])
    print("camera→screen truth (ms):", [round(lat["truth_screen_ms"], 1) for lat in both])
    assert all(lat["truth_screen_ms"] > 0 for lat in both)  # shown after it was captured
    # Chrome stamps a canvas capture at a display frame (≤ 16.7 ms at 60 Hz from the moment drawn), so the
    # pixel truth is itself only that exact; the estimate is allowed that much plus 8 ms (docs/latency.md)
    assert max(abs(e) for e in errors) <= 25


async def test_dashboard_shows_stages_percentiles_rates_and_webrtc_stats(server, chromium_path: str) -> None:
    base, _ = server
    async with open_page(base, chromium_path, viewport={"width": 420, "height": 900}) as page:  # phone-sized
        await page.click("#dashboard summary")
        await page.select_option("#camera", "pattern")
        await page.click("#start")
        await page.wait_for_function("window.dashboard.rows.length >= 5", timeout=120_000)
        await page.wait_for_function("document.getElementById('webrtc').textContent.includes('VP8')"
                                     " || document.getElementById('webrtc').textContent.includes('H264')",
                                     timeout=30_000)
        await page.wait_for_function("document.getElementById('server').textContent.includes('CPU')",
                                     timeout=30_000)
        table = await page.eval_on_selector_all("#pct tr", "rows => rows.map(r => r.textContent)")
        await page.screenshot(path=str(SCREENSHOTS / "dashboard.png"), full_page=True)
        has_chart = await page.evaluate("document.querySelector('#stage-chart canvas') !== null")
        rates = await page.text_content("#rates")
    assert has_chart
    names = [row.split("ms")[0] if row.startswith("ms") else row for row in table]
    assert any(n.startswith("camera → screen") for n in names) and any(n.startswith("generate") for n in names)
    screen_row = next(r for r in table if r.startswith("camera → screen"))
    assert "–" not in screen_row  # the capture estimate is available, so the figure is there
    assert "processed" in rates and "tok/s" in rates


async def test_page_with_the_token_in_its_url_streams_from_a_protected_server(vision_model, chromium_path) -> None:
    from stream_assist.config import Config

    from .conftest import running_server

    config = Config()
    config.server.token = "page-token"
    async with running_server(vision_model, config) as (base, _):
        async with open_page(base, chromium_path) as page:
            await page.goto(base + "/?token=page-token")
            await page.click("#dashboard summary")
            await page.click("#start")
            await page.wait_for_function("window.streamAssist.firstGuidanceAt !== null", timeout=120_000)
            await page.wait_for_function("document.getElementById('server').textContent.includes('CPU')",
                                         timeout=30_000)
            await page.goto(base + "/")  # the same page without the token is refused
            await page.click("#start")
            await page.wait_for_function("!document.getElementById('error').hidden", timeout=30_000)
            assert "token" in await page.text_content("#error")
