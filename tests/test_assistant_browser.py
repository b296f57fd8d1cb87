"""The task assistant end to end: the real page in headless Chromium, a real `serve` process with the tiny
model, its journal on disk; the server is killed with SIGKILL and restarted, and the page comes back at its step."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

import pytest

from stream_assist.assistant.journal import Journal
from stream_assist.bench.server_process import free_port, start_server_process

from .test_browser import chromium_path, open_page  # noqa: F401 - the fixture is used by name

pytestmark = pytest.mark.asyncio(loop_scope="session")

CARD = "flatpack-bookcase"
STEP_2 = "Push the wooden dowels into the holes"


@contextlib.asynccontextmanager
async def serve(files, port: int, config: Path):  # noqa: ANN001, ANN201
    proc, base = await start_server_process(files, "--port", str(port), "--config", str(config),
                                            env={**os.environ, "PYTHONPATH": str(Path(__file__).parents[1])})
    try:
        yield base, proc
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


async def started(page) -> None:  # noqa: ANN001
    await page.click("#start")
    await page.wait_for_function("window.streamAssist.session !== undefined", timeout=60_000)


async def test_card_next_kill_restart_and_the_page_comes_back_at_step_2(tiny_files, chromium_path,  # noqa: F811
                                                                        tmp_path: Path) -> None:
    data = tmp_path / "journals"
    config = tmp_path / "serve.toml"
    config.write_text(f'[assistant]\ndata_dir = "{data}"\ncards_dir = "{tmp_path / "cards"}"\n'
                      "[model]\nn_ctx = 1024\nmax_tokens = 12\nn_threads = 1\n[pipeline]\nmax_edge = 256\n"
                      '[speech]\ntts = "browser"\n')  # the page speaks: what it says is spied on
    port = free_port()
    async with serve(tiny_files, port, config) as (base, proc):
        async with open_page(base, chromium_path, viewport={"width": 400, "height": 860}) as page:
            await started(page)
            await page.click("#task-setup summary")
            await page.wait_for_function(f"document.querySelector('#card option[value=\"{CARD}\"]') !== null",
                                         timeout=60_000)
            await page.select_option("#card", CARD)
            await page.click("#use-card")
            await page.wait_for_function("document.getElementById('task-progress').textContent === '1 / 8'",
                                         timeout=60_000)
            await page.click("#task-next")
            await page.wait_for_function("document.getElementById('task-progress').textContent === '2 / 8'",
                                         timeout=60_000)
            assert (await page.text_content("#task-current")).startswith(STEP_2)
            await page.wait_for_function("window.__spoken.some(t => t.startsWith('Step 2 of 8'))",
                                         timeout=60_000)
            spoken = await page.evaluate("window.__spoken")
            task_speech = spoken[next(i for i, t in enumerate(spoken) if t.startswith("Step 1 of 8")):]
            assert len(task_speech) == 2 and task_speech[1].startswith(f"Step 2 of 8: {STEP_2}")
            # a steady scene: the tiny model answers (noise) about step 2 and nothing more is said
            await page.wait_for_function("window.streamAssist.last && window.streamAssist.last.frame_id > 0",
                                         timeout=120_000)
            first = await page.evaluate("window.streamAssist.last.frame_id")
            await page.wait_for_function("n => window.streamAssist.last.frame_id >= n + 5", arg=first,
                                         timeout=120_000)
            assert await page.evaluate("window.__spoken") == spoken
            [journal] = Journal(data).files()
            steps = [line for line in journal.read_text().splitlines() if '"event":"step"' in line]
            assert steps[-1].endswith('"step":1,"by":"next"}')
            await page.screenshot(path=str(Path(os.environ.get("TMPDIR", "/tmp")) / "stream-assist-task.png"),
                                  full_page=True)
            proc.kill()  # SIGKILL: no shutdown, no goodbye to the page
            await proc.wait()
            async with serve(tiny_files, port, config):  # the same port and data dir
                await page.reload()
                await started(page)
                await page.wait_for_function("document.getElementById('task-progress').textContent === '2 / 8'",
                                             timeout=60_000)
                assert (await page.text_content("#task-current")).startswith(STEP_2)
                assert await page.evaluate("window.streamAssist.task") == {
                    "title": "Assemble a flat-pack bookcase", "step": 1, "steps": 8}


async def test_the_page_says_only_what_the_server_decides_to_say(server, chromium_path) -> None:  # noqa: F811
    """Guidance is spoken only when its `speak` is true: a step reported done is announced exactly once."""
    base, _ = server
    observe = {"type": "guidance", "speak": False, "action": "show", "reason": "observation", "step": 0, "steps": 3}
    messages = [{**observe, "frame_id": i, "text": "Not yet. The kettle is cold."} for i in range(1, 6)]
    messages += [{**observe, "frame_id": 6, "text": "Done. The water boils."},
                 {**observe, "frame_id": 7, "text": "Step 2 of 3: Add the bag", "speak": True,
                  "reason": "step_change", "step": 1},
                 {**observe, "frame_id": 8, "text": "Not yet.", "step": 1, "confidence": 0.42},
                 {**observe, "frame_id": 9, "text": "Step 2 of 3: Add the bag", "reason": "already_said", "step": 1}]
    async with open_page(base, chromium_path) as page:
        await page.evaluate("m => window.streamAssist.handle({data: JSON.stringify(m)})",
                            {"type": "task", "name": "typed", "title": "Tea", "step": 0,
                             "steps": [{"instruction": s, "done_when": "", "caution": ""}
                                       for s in ("Boil water", "Add the bag", "Pour")]})
        for msg in messages:
            await page.evaluate("m => window.streamAssist.handle({data: JSON.stringify(m)})", msg)
        assert await page.evaluate("window.__spoken") == ["Step 2 of 3: Add the bag"]
        assert await page.text_content("#task-progress") == "2 / 3"
        assert await page.text_content("#task-confidence") == "done? 42 %"  # the evidence so far, as status says
        assert "step_change 1" in await page.text_content("#speech-rates")
        assert "speech 1 / min" in await page.text_content("#speech-rates")
