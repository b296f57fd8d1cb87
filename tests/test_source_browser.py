"""Watch mode in the real page (headless Chromium): a server with its own camera source; the page sends no video,
shows the source's frames and state and the guidance, and its microphone's commands reach the source."""

from __future__ import annotations

from pathlib import Path

import pytest

from .conftest import small_config
from .test_browser import chromium_path, open_page  # noqa: F401 - the fixture is used by name
from .test_source import make_clip, source_server
from .test_voice_browser import microphone_file

pytestmark = pytest.mark.asyncio(loop_scope="session")


async def test_page_watches_the_server_camera_and_its_spoken_pause_reaches_it(vision_model, chromium_path: str,  # noqa: F811
                                                                              tmp_path: Path) -> None:
    config = small_config()
    config.source.url = str(make_clip(tmp_path / "clip.mp4", 2.0))
    config.source.loop = True
    mic = microphone_file(tmp_path, "pause")
    async with source_server(vision_model, config) as (base, state):
        async with open_page(base, chromium_path, (f"--use-file-for-fake-audio-capture={mic}",)) as page:
            await page.wait_for_function("document.getElementById('source-state').textContent === 'camera live'")
            await page.click("#start")
            await page.wait_for_function("window.streamAssist.firstGuidanceAt !== null", timeout=120_000)
            # the frames the model is shown, as MJPEG in an <img>; no video went up from the page
            await page.wait_for_function("document.getElementById('watch-view').naturalWidth > 0", timeout=60_000)
            assert await page.evaluate("document.getElementById('preview').hidden")
            viewer = next(iter(state.source.viewers))
            assert viewer.sampler is None and viewer.follows is state.source
            # "pause", said into this page's microphone, pauses the source, and every page shows it
            await page.wait_for_function("document.getElementById('state').textContent === 'paused'", timeout=60_000)
            assert state.source.state.paused
            await page.click("#dashboard summary")  # the dashboard says what the camera does
            await page.wait_for_function("document.getElementById('server').textContent.includes('camera live')",
                                         timeout=30_000)
            await page.screenshot(path=str(tmp_path / "watch.png"))
