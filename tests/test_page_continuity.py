"""The real page in headless Chromium: it comes back on its own after a cut, to the server's state, and keeps the
screen awake while live."""

from __future__ import annotations

import asyncio
import contextlib
import time

import pytest

from stream_assist.bench.server_process import free_port

from . import test_browser
from .conftest import running_server, small_config
from .test_browser import SCREENSHOTS, open_page
from .test_resume import until

chromium_path = test_browser.chromium_path  # the same fixture: Chromium, or a clear failure where it is missing

pytestmark = pytest.mark.asyncio(loop_scope="session")

PHONE = {"viewport": {"width": 390, "height": 844}}  # a phone propped up on a stand
TASK = "true a bicycle wheel"
NEW_TASK = "true the rear wheel"
# Record wake lock requests on the way to the real API (headless Chromium may refuse them: the page must cope).
WAKE_SPY = """
window.__wakeLocks = [];
if (navigator.wakeLock) {
  const real = navigator.wakeLock.request.bind(navigator.wakeLock);
  navigator.wakeLock.request = (type) => { window.__wakeLocks.push(type); return real(type); };
}
"""


async def live_session(page, state):  # noqa: ANN001, ANN201 - playwright Page, ServerState → Session
    await page.wait_for_function("document.getElementById('state').textContent === 'live'", timeout=60_000)
    return state.sessions[await page.evaluate("window.streamAssist.session")]


async def back_after(page, state, cut: float, what: str):  # noqa: ANN001, ANN201 - playwright Page, ServerState
    """Waits for the page's first reconnect after a cut made at `cut` (time.monotonic()), prints how long it took, and
    returns the new session and the page's record of the reconnect."""
    await page.wait_for_function("window.streamAssist.reconnects.length === 1", timeout=60_000)
    back_s = time.monotonic() - cut
    again = await live_session(page, state)
    reconnect = (await page.evaluate("window.streamAssist.reconnects"))[0]
    print(f"\nreconnect after {what}: {back_s * 1000:.0f} ms from the cut to status ready "
          f"({reconnect['ms']:.0f} ms from the page noticing, {reconnect['attempts']} attempt)")
    return again, reconnect


async def test_a_cut_connection_comes_back_without_a_tap_to_the_same_settings(server, chromium_path: str) -> None:
    base, state = server
    errors: list[str] = []
    async with open_page(base, chromium_path, **PHONE) as page:
        page.on("pageerror", lambda e: errors.append(str(e)))
        await page.click("#start")
        session = await live_session(page, state)
        await page.select_option("#preset", "next_step")
        await page.fill("#task", TASK)
        await page.fill("#interval", "1")
        await page.click("#apply")
        await until(lambda: session.state.prompt.task == TASK)
        kept = session.state
        await page.wait_for_function("window.streamAssist.firstGuidanceAt !== null", timeout=120_000)

        cut = time.monotonic()
        await session.pc.close()  # the network drops: the page is not told, it sees its connection end
        again, reconnect = await back_after(page, state, cut, "a cut")
        assert again.id != session.id and again.resumed and again.state is kept
        assert reconnect["resumed"] is True
        assert (await page.input_value("#preset"), await page.input_value("#task")) == ("next_step", TASK)
        await page.screenshot(path=str(SCREENSHOTS / "phone-stand.png"))
        last = await page.evaluate("window.streamAssist.last.frame_id")
        await page.wait_for_function("n => window.streamAssist.last.frame_id !== n", arg=last, timeout=60_000)

        # What the person sets while the page is reconnecting is applied once the session is back, after its state.
        held = asyncio.get_running_loop().create_future()
        await page.route("**/offer", lambda route: held.set_result(route))  # the network is slow to come back
        await again.pc.close()
        route = await asyncio.wait_for(held, 60)
        await page.fill("#task", NEW_TASK)
        await page.click("#apply")
        await route.continue_()
        await page.unroute("**/offer")
        await page.wait_for_function("window.streamAssist.reconnects.length === 2", timeout=60_000)
        await until(lambda: kept.prompt.task == NEW_TASK)
        await page.wait_for_function("t => document.getElementById('task').value === t", arg=NEW_TASK)

        # A reload forgets everything the page knew; Start brings the settings back from the server, by token.
        await page.reload()
        assert await page.input_value("#task") == ""
        await page.click("#start")
        third = await live_session(page, state)
        assert third.state is kept and await page.input_value("#task") == NEW_TASK
        assert await page.input_value("#preset") == "next_step"
        await page.click("#start")  # Stop: nothing reconnects after it
        await asyncio.wait_for(third.closed.wait(), 60)
        assert await page.text_content("#state") == "idle"
        assert await page.evaluate("window.streamAssist.reconnects.length") == 0  # a fresh page: none happened
    assert errors == []



async def test_a_silent_drop_is_noticed_by_the_heartbeat_and_the_page_comes_back(server, chromium_path: str) -> None:
    """A Wi-Fi handover: packets stop, nobody says goodbye (ICE alone notices after ~6 s in Chromium)."""
    base, state = server
    async with open_page(base, chromium_path) as page:
        await page.click("#start")
        session = await live_session(page, state)
        await page.wait_for_function("window.streamAssist.clock.samples.length >= 3", timeout=60_000)
        cut = time.monotonic()
        ice = session.pc.getTransceivers()[0].receiver.transport.transport
        for protocol in ice._connection._protocols:  # the server's UDP sockets go away without a word
            protocol.transport.close()
        again, reconnect = await back_after(page, state, cut, "a silent drop")
        assert again.id != session.id and again.state is session.state and reconnect["resumed"] is True
        assert session.closed.is_set()  # the dead session was replaced, not left to time out
        await page.click("#start")
        await asyncio.wait_for(again.closed.wait(), 60)

async def test_the_screen_is_kept_awake_while_live_and_asked_again_when_visible(server, chromium_path: str) -> None:
    base, state = server
    async with open_page(base, chromium_path) as page:
        await page.add_init_script(WAKE_SPY)
        await page.reload()
        await page.click("#start")
        session = await live_session(page, state)
        assert await page.evaluate("window.__wakeLocks") == ["screen"]
        # Hiding the page releases the lock (the browser does that); becoming visible again asks for it anew.
        await page.evaluate("""async () => {
            if (window.streamAssist.wakeLock) await window.streamAssist.wakeLock.release();
            document.dispatchEvent(new Event('visibilitychange'));
        }""")
        await page.wait_for_function("window.__wakeLocks.length === 2")
        await page.click("#start")  # Stop releases it and nothing asks again
        await asyncio.wait_for(session.closed.wait(), 60)
        await page.evaluate("document.dispatchEvent(new Event('visibilitychange'))")
        assert await page.evaluate("window.__wakeLocks.length") == 2
        held = await page.evaluate("window.streamAssist.wakeLock ? !window.streamAssist.wakeLock.released : null")
        print(f"\nwake lock: {'granted, then released on Stop' if held is False else 'refused by headless Chromium'}")
        assert held in (False, None)  # released, or refused by this headless browser in the first place


async def test_the_page_rides_out_a_server_restart_and_gives_the_new_server_its_settings(vision_model,
                                                                                       chromium_path: str) -> None:
    """Kept state dies with the server process: the page's offers fail while it is down, and once a new server
    listens on the same port the page connects by itself and offers the settings it last had from the old one."""
    port = free_port()
    async with contextlib.AsyncExitStack() as stack:
        first = contextlib.AsyncExitStack()
        stack.push_async_callback(first.aclose)  # closed below; here too if the test fails before
        _, state = await first.enter_async_context(running_server(vision_model, small_config(), port))
        page = await stack.enter_async_context(open_page(f"http://127.0.0.1:{port}", chromium_path))
        await page.click("#start")
        session = await live_session(page, state)
        await page.select_option("#preset", "next_step")
        await page.fill("#task", TASK)
        await page.click("#apply")
        await until(lambda: session.state.prompt.task == TASK)

        await first.aclose()  # the server goes away
        await page.wait_for_function("window.streamAssist.reconnect.attempt >= 2", timeout=60_000)  # one failed
        async with running_server(vision_model, small_config(), port) as (_, restarted):
            listening = time.monotonic()
            again = await live_session(page, restarted)
            await until(lambda: again.state.prompt.task == TASK)
            back_s = time.monotonic() - listening
            reconnect = (await page.evaluate("window.streamAssist.reconnects"))[0]
            print(f"\nreconnect after a server restart: {back_s * 1000:.0f} ms from listening again to the settings "
                  f"restored ({reconnect['attempts']} attempts, {reconnect['ms']:.0f} ms from the page noticing)")
            assert reconnect["resumed"] is False and again.state.prompt.preset == "next_step"
            await page.click("#start")
            await asyncio.wait_for(again.closed.wait(), 60)


async def test_a_second_page_with_the_same_token_takes_over_and_the_first_steps_back(server, chromium_path) -> None:
    """Two tabs (or devices) with one token: the newer connection wins and the older does not fight back."""
    base, state = server
    async with open_page(base, chromium_path) as first:
        await first.click("#start")
        session = await live_session(first, state)
        await first.fill("#task", TASK)
        await first.click("#apply")
        await until(lambda: session.state.prompt.task == TASK)
        token = await first.evaluate("localStorage.getItem('stream-assist-resume')")
        second = await first.context.browser.new_page()  # another tab or device that has the same token
        await second.goto(base + "/")
        await second.evaluate("t => localStorage.setItem('stream-assist-resume', t)", token)
        await second.click("#start")
        taken = await live_session(second, state)
        assert taken.state is session.state and await second.input_value("#task") == TASK
        await first.wait_for_function("document.getElementById('state').textContent === 'continued elsewhere'")
        assert await first.text_content("#start") == "Start"  # stepped back: no reconnect pending
        assert await first.evaluate("window.streamAssist.reconnect.timer") is None
        assert [s.id for s in state.sessions.values() if s.resume_token == taken.resume_token] == [taken.id]


async def test_stop_ends_reconnecting_while_the_server_is_away(vision_model, chromium_path: str) -> None:
    port = free_port()
    async with contextlib.AsyncExitStack() as stack:
        server = contextlib.AsyncExitStack()
        stack.push_async_callback(server.aclose)
        _, state = await server.enter_async_context(running_server(vision_model, small_config(), port))
        page = await stack.enter_async_context(open_page(f"http://127.0.0.1:{port}", chromium_path, **PHONE))
        await page.click("#start")
        await live_session(page, state)
        await server.aclose()
        await page.wait_for_function("window.streamAssist.reconnect.attempt >= 2", timeout=60_000)
        assert await page.text_content("#state") == "reconnecting…" and await page.text_content("#start") == "Stop"
        await page.screenshot(path=str(SCREENSHOTS / "phone-reconnecting.png"))
        await page.click("#start")
        assert await page.text_content("#state") == "idle"
        assert await page.evaluate("[window.streamAssist.reconnect.timer, window.streamAssist.reconnect.attempt]") \
            == [None, 0]
