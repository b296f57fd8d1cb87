"""Camera sources beside the browser: a real RTSP camera (GStreamer's RTSP server), a file played as a camera,
and the bad input a user can give `--source`."""

from __future__ import annotations

import contextlib
import http.server
import socket
import subprocess
import threading
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import aiohttp
import av
import cv2
import numpy as np
import pytest

from stream_assist.bench.rtsp_camera_process import RtspCamera
from stream_assist.bench.synthetic_client import connect
from stream_assist.cli import main as cli_main
from stream_assist.config import Config
from stream_assist.server.app import ServerState
from stream_assist.server.watch import stop_source
from stream_assist.source.feed import backoff
from stream_assist.source.player import SourceError, probe
from stream_assist.source.spec import parse_source, redact

from .conftest import running_server, small_config

ASYNC = pytest.mark.asyncio(loop_scope="session")



def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def make_clip(path: Path, seconds: float = 2.0, still_from: float | None = None, size: str = "320x240") -> Path:
    """An H.264 clip made by ffmpeg: a moving test pattern, then (from still_from) one still grey frame repeated."""
    moving = f"testsrc2=size={size}:rate=15:duration={still_from if still_from is not None else seconds}"
    graph = moving if still_from is None else (
        f"{moving}[a];color=c=gray:size={size}:rate=15:duration={seconds - still_from}[b];[a][b]concat=n=2:v=1")
    subprocess.run(["ffmpeg", "-hide_banner", "-loglevel", "error", "-y", "-f", "lavfi", "-i", graph,
                    "-c:v", "libx264", "-pix_fmt", "yuv420p", "-g", "15", str(path)], check=True)
    return path


@contextlib.contextmanager
def rtsp_camera(port: int) -> Iterator[RtspCamera]:
    camera = RtspCamera(port).start()
    try:
        yield camera
    finally:
        camera.kill()


@contextlib.asynccontextmanager
async def source_server(vision_model, config: Config) -> AsyncIterator[tuple[str, ServerState]]:  # noqa: ANN001
    async with running_server(vision_model, config) as (base, state):
        try:
            yield base, state
        finally:
            await stop_source(state)


async def wait_state(client, wanted: str) -> dict:  # noqa: ANN001 - synthetic Client
    while True:
        msg = await client.next_message("source", timeout=60)
        if msg["state"] == wanted:
            return msg


def test_parse_source_names_each_kind(tmp_path: Path) -> None:
    assert parse_source("rtsp://user:pw@cam.local:554/stream").kind == "rtsp"
    assert parse_source("rtsp://user:pw@cam.local:554/stream").options["rtsp_transport"] == "tcp"
    assert parse_source("https://cam.local/live/index.m3u8").kind == "hls"
    assert parse_source("http://cam.local/video.mjpg").kind == "http"
    clip = tmp_path / "a.mp4"
    clip.write_bytes(b"x")
    assert parse_source(str(clip), loop=True).loop
    assert redact("rtsp://user:secret@cam.local:554/s") == "rtsp://cam.local:554/s"


@pytest.mark.parametrize("text, message", [
    ("ftp://cam/x", "scheme 'ftp'"),
    ("rtsp:///nohost", "no host"),
    ("/no/such/clip.mp4", "does not exist"),
    ("/dev/video99", "no webcam"),
    ("", "empty"),
])
def test_bad_source_names_are_refused(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_source(text)


def test_loop_is_only_for_files() -> None:
    with pytest.raises(ValueError, match="--loop is for a file"):
        parse_source("rtsp://cam.local/s", loop=True)


def test_backoff_doubles_up_to_its_cap() -> None:
    assert [backoff(n, 1.0) for n in range(1, 6)] == [0.25, 0.5, 1.0, 1.0, 1.0]


def test_unreachable_rtsp_is_one_line_without_the_password() -> None:
    spec = parse_source(f"rtsp://admin:hunter2@127.0.0.1:{free_port()}/cam")
    with pytest.raises(SourceError) as e:
        probe(spec)
    assert "hunter2" not in str(e.value) and "\n" not in str(e.value)
    assert str(e.value).startswith("cannot open rtsp://127.0.0.1:")


def test_undecodable_video_is_refused_at_start(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """A file whose video packets are not what its codec says: an error naming the codec, exit 2."""
    path = tmp_path / "garbage.ts"
    with av.open(str(path), "w", format="mpegts") as out:
        stream = out.add_mux_stream("h264")
        stream.width, stream.height = 320, 240
        for i in range(30):
            noise = np.random.default_rng(i).integers(0, 255, 2000, np.uint8).tobytes()
            packet = av.Packet(b"\x00\x00\x00\x01\x65" + noise)  # an IDR slice start code, then noise
            packet.stream, packet.pts, packet.dts = stream, i, i
            out.mux(packet)
    assert cli_main(["serve", "--source", str(path), "--port", "0"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("stream-assist: error:") and "h264" in err and err.count("\n") == 1


def test_not_a_video_file_is_refused_at_start(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    path = tmp_path / "notes.mp4"
    path.write_text("not a video")
    assert cli_main(["serve", "--source", str(path), "--port", "0"]) == 2
    assert "cannot open" in capsys.readouterr().err


@ASYNC
async def test_a_looping_file_runs_the_change_gate_and_the_slot_as_a_camera_does(tmp_path: Path,
                                                                                  vision_model) -> None:  # noqa: ANN001
    """A 2 s clip, moving then still, played in a loop: the gate skips the still part, the slot takes the moving
    one, guidance keeps coming after the file starts again, and /metrics counts the source's frames."""
    config = small_config()
    config.source.url = str(make_clip(tmp_path / "clip.mp4", 2.0, still_from=1.0))
    config.source.loop = True
    config.pipeline.change_threshold = 3.0
    async with source_server(vision_model, config) as (base, state):
        client = await connect(base, camera=False)
        try:
            assert client.ready["watch"] is True and client.ready["session"] == state.source.id
            while state.feed.state.opened < 3:  # the file has ended twice and started again
                await client.next_message("guidance")
            await client.next_message("guidance")  # … and the model still answers
            counters = state.source.counters()
            assert counters["unchanged"] > 0 and counters["processed"] > 0 and counters["queued"] > 0
            assert counters["received"] > counters["queued"]
            async with aiohttp.ClientSession() as http:
                metrics = await (await http.get(f"{base}/metrics")).text()
                health = await (await http.get(f"{base}/health")).json()
            unchanged = next(line for line in metrics.splitlines()
                             if line.startswith('stream_assist_frames_total{event="unchanged"}'))
            assert float(unchanged.split()[-1]) > 0
            assert "stream_assist_source_up 1.0" in metrics
            assert health["source"]["camera"] == "file" and health["source"]["state"] == "live"
            # a second page that does send video watches too: its video is drained, never guided
            other = await connect(base)
            try:
                await other.next_message("guidance")
                assert state.source.viewers == set(state.sessions.values()) and len(state.sessions) == 2
                assert all(s.counters()["received"] == 0 for s in state.sessions.values())
            finally:
                await other.close()
        finally:
            await client.close()


@ASYNC
async def test_rtsp_camera_is_guided_and_comes_back_after_it_drops(vision_model) -> None:  # noqa: ANN001
    """A real RTSP camera: guidance from it; the camera killed → the page is told the source is retrying and the
    server stays up; the camera back on the same port → live again and guidance again, without a restart."""
    port = free_port()
    config = small_config()
    config.source.url = f"rtsp://127.0.0.1:{port}/cam"
    with rtsp_camera(port) as camera:
        async with source_server(vision_model, config) as (base, state):
            client = await connect(base, camera=False)
            try:
                first = await client.next_message("guidance")
                camera.kill()
                retrying = await wait_state(client, "retrying")
                assert retrying["error"] and retrying["retry_in_s"] <= config.source.max_backoff_s
                async with aiohttp.ClientSession() as http:
                    health = await (await http.get(f"{base}/health")).json()
                assert health["source"]["state"] in ("retrying", "connecting")
                camera.start()
                back = await wait_state(client, "live")
                assert back["reconnects"] == 1
                later = await client.next_message("guidance")
                assert later["frame_id"] > first["frame_id"]  # the frame counter goes on across the drop
            finally:
                await client.close()


class MjpegCamera(http.server.BaseHTTPRequestHandler):
    """An IP camera's MJPEG over HTTP: multipart/x-mixed-replace JPEGs of a moving pattern, 320x240, until closed."""

    def do_GET(self) -> None:  # noqa: N802 - http.server's name
        self.send_response(200)
        self.send_header("Content-Type", "multipart/x-mixed-replace; boundary=frame")
        self.end_headers()
        for i in range(150):
            picture = np.zeros((240, 320, 3), np.uint8)
            picture[:, (i * 4) % 320:] = (40, 160, 220)
            jpeg = cv2.imencode(".jpg", picture)[1].tobytes()
            try:
                self.wfile.write(b"--frame\r\nContent-Type: image/jpeg\r\nContent-Length: %d\r\n\r\n" % len(jpeg)
                                 + jpeg + b"\r\n")
            except (BrokenPipeError, ConnectionResetError):
                return

    def log_message(self, *args) -> None:  # noqa: ANN002
        pass


@contextlib.contextmanager
def http_server(handler) -> Iterator[int]:  # noqa: ANN001 - a request handler class or factory
    """A threaded HTTP server on a free loopback port (bound before this returns); yields the port."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()


def test_mjpeg_over_http_is_a_source() -> None:
    with http_server(MjpegCamera) as port:
        spec = parse_source(f"http://127.0.0.1:{port}/video.mjpg")
        assert spec.kind == "http" and probe(spec) == (320, 240, "mjpeg")


def test_hls_is_a_source(tmp_path: Path) -> None:
    """An HLS playlist and its segments over HTTP (a VOD playlist written by FFmpeg) are opened and decoded."""
    clip = make_clip(tmp_path / "clip.mp4", 2.0)
    subprocess.run(["ffmpeg", "-hide_banner", "-loglevel", "error", "-i", str(clip), "-c", "copy", "-f", "hls",
                    "-hls_time", "1", "-hls_playlist_type", "vod", str(tmp_path / "index.m3u8")], check=True)

    class Files(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *args, **kwargs) -> None:  # noqa: ANN002, ANN003
            super().__init__(*args, directory=str(tmp_path), **kwargs)

        def log_message(self, *args) -> None:  # noqa: ANN002
            pass

    with http_server(Files) as port:
        spec = parse_source(f"http://127.0.0.1:{port}/index.m3u8")
        assert spec.kind == "hls" and probe(spec) == (320, 240, "h264")


@ASYNC
async def test_a_cut_file_plays_up_to_the_cut_then_says_it_ended(tmp_path: Path, vision_model) -> None:  # noqa: ANN001
    """A clip cut at 60 % of its bytes, without --loop: guided up to the cut, then `ended`; the server stays up."""
    clip = make_clip(tmp_path / "clip.mp4", 2.0)
    cut = tmp_path / "cut.ts"  # MPEG-TS: a cut one still opens (an MP4's index is at its end)
    subprocess.run(["ffmpeg", "-hide_banner", "-loglevel", "error", "-i", str(clip), "-c", "copy", str(cut)],
                   check=True)
    data = cut.read_bytes()
    cut.write_bytes(data[:len(data) * 6 // 10])
    config = small_config()
    config.source.url = str(cut)
    async with source_server(vision_model, config) as (base, state):
        client = await connect(base, camera=False)
        try:
            if state.feed.state.state != "ended":  # (a short clip may have ended before this page connected)
                await wait_state(client, "ended")
            assert state.feed.state.error == "the file ended" and state.source.counters()["received"] > 0
            async with aiohttp.ClientSession() as http:
                health = await (await http.get(f"{base}/health")).json()
            assert health["source"]["state"] == "ended" and health["worker_alive"]
        finally:
            await client.close()


@ASYNC
async def test_the_camera_is_seen_only_with_the_access_token(tmp_path: Path, vision_model) -> None:  # noqa: ANN001
    """Beyond loopback the camera's frames are behind the token, like every data route: MJPEG for the <img>."""
    config = small_config()
    config.source.url = str(make_clip(tmp_path / "clip.mp4", 2.0))
    config.source.loop = True
    config.server.token = "camera-token"
    async with source_server(vision_model, config) as (base, _):
        async with aiohttp.ClientSession() as http:
            for path in ("/source", "/source/video.mjpg"):
                assert (await http.get(base + path)).status == 401
            async with http.get(base + "/source/video.mjpg?token=camera-token") as res:
                assert res.status == 200 and res.content_type == "multipart/x-mixed-replace"
                part = await res.content.readuntil(b"\r\n\r\n")  # the first frame's headers
                assert b"Content-Type: image/jpeg" in part
                assert (await res.content.readexactly(2)) == b"\xff\xd8"  # a JPEG starts here
