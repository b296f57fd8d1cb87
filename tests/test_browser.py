"""The real page in headless Chromium with a fake camera, streaming into the real server."""

from __future__ import annotations

import os
import shutil

import pytest

pytestmark = pytest.mark.asyncio(loop_scope="session")

CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
ARGS = [
    "--use-fake-device-for-media-stream",
    "--use-fake-ui-for-media-stream",
    "--no-sandbox",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-gpu",
]
# Observe speech without a speech engine: record what the page asks to say.
SPEECH_SPY = """
window.__spoken = [];
if (window.speechSynthesis) {
  window.speechSynthesis.speak = (u) => { window.__spoken.push(u.text); };
  window.speechSynthesis.cancel = () => {};
}
"""


@pytest.fixture(scope="module")
def chromium_path() -> str:
    if not shutil.which(CHROMIUM):
        pytest.fail(f"Chromium not found at {CHROMIUM}; .ci/run installs Debian's chromium")
    return CHROMIUM


async def test_page_streams_camera_and_shows_and_speaks_guidance(server, chromium_path: str) -> None:
    from playwright.async_api import async_playwright

    base, state = server
    async with async_playwright() as p:
        browser = await p.chromium.launch(executable_path=chromium_path, args=ARGS, headless=True)
        try:
            page = await browser.new_page()
            await page.add_init_script(SPEECH_SPY)
            errors: list[str] = []
            page.on("pageerror", lambda e: errors.append(str(e)))
            await page.goto(base + "/")
            await page.click("#start")
            await page.wait_for_function("document.getElementById('guidance').dataset.frame !== undefined",
                                         timeout=120_000)
            await page.wait_for_function("window.__spoken.length >= 1", timeout=30_000)
            shown = await page.text_content("#guidance")
            spoken = await page.evaluate("window.__spoken")
            assert shown and spoken[0] == shown
            assert await page.text_content("#state") == "live"
            assert "processed" in await page.text_content("#stats")
            assert errors == []
            # Stop closes the peer connection and the server frees the session
            session_ids = set(state.sessions)
            await page.click("#start")
            assert await page.text_content("#state") == "idle"
        finally:
            await browser.close()
    assert session_ids  # a session existed while the page streamed
