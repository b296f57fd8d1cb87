"""Recordings: what the model was shown and what was said, written so that a kill or a cut loses only the end,
and replayed through the real pipeline and model."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
from pathlib import Path

import av
import numpy as np
import pytest

from stream_assist.bench.synthetic_client import connect
from stream_assist.cli import main as cli_main
from stream_assist.config import RecordConfig
from stream_assist.inference.worker import Job
from stream_assist.latency.timeline import Timeline
from stream_assist.record.reading import open_recording
from stream_assist.record.recorder import Recorder

from .conftest import small_config
from .test_source import make_clip, source_server

ASYNC = pytest.mark.asyncio(loop_scope="session")
W, H = 256, 192


def picture(i: int) -> np.ndarray:
    """A smooth frame with a square that moves: easy to compress, different every time."""
    y, x = np.mgrid[0:H, 0:W]
    rgb = np.stack([(x + 3 * i) % 256, (y + 5 * i) % 256, np.full_like(x, (40 * i) % 256)], -1).astype(np.uint8)
    rgb[40:90, 10 + 8 * i:60 + 8 * i] = 255
    return rgb


def job(i: int, t0: float = 1_000_000.0) -> Job:
    timeline = Timeline()
    for k, stage in enumerate(("decoded", "sampled", "enhanced", "queued", "taken", "inference_start",
                               "first_token", "done", "sent")):
        timeline.mark(stage, t0 + i * 0.1 + k * 0.004)
    return Job(100 + i, picture(i), f"prompt {i}", timeline)


def write(directory: Path, frames: int, settings: RecordConfig | None = None) -> Recorder:
    recorder = Recorder(directory, "session", settings or RecordConfig(), source="test")
    for i in range(frames):
        recorder.frame(job(i), f"answer {i}")
        recorder.message("heard", {"text": "pause", "command": "pause", "accepted": True})
        recorder.message("partial", {"text": "not recorded"})
    recorder.close()
    return recorder


def test_a_recording_plays_back_the_same_frames_and_timelines(tmp_path: Path) -> None:
    recorder = write(tmp_path, 20)
    recording = open_recording(recorder.video_path)
    frames = list(recording.frames())
    assert [f.frame_id for f in frames] == [100 + i for i in range(20)]
    assert [f.timeline for f in frames] == [job(i).timeline.as_ms() for i in range(20)]
    assert [f.pts_ms for f in frames] == [i * 100 for i in range(20)]  # at the times they were decoded
    assert [(f.prompt, f.text) for f in frames] == [(f"prompt {i}", f"answer {i}") for i in range(20)]
    for i, f in enumerate(frames):  # H.264 is lossy: the same pictures to within a few levels
        assert np.abs(f.rgb.astype(int) - picture(i)).mean() < 4
    kinds = [line["kind"] for line in recording.lines if line["event"] == "message"]
    assert kinds == ["heard"] * 20  # per-token partials are left out
    with av.open(str(recorder.video_path)) as container:  # what a player shows: the answers as subtitles
        subtitles = [bytes(p).decode() for p in container.demux(subtitles=0) if p.size]
    assert subtitles == [f"answer {i}" for i in range(20)]


def test_a_recording_cut_at_a_random_byte_replays_up_to_the_cut(tmp_path: Path) -> None:
    recorder = write(tmp_path, 30)
    rng = random.Random(20)
    for path in (recorder.video_path, recorder.side_path):
        data = path.read_bytes()
        path.write_bytes(data[:rng.randrange(len(data) // 3, len(data) * 9 // 10)])
    recording = open_recording(recorder.video_path)
    frames = list(recording.frames())
    assert 0 < len(frames) < 30
    described = len(recording.frame_lines)
    for i, f in enumerate(frames):
        assert np.abs(f.rgb.astype(int) - picture(i)).mean() < 4
        assert f.timeline == (job(i).timeline.as_ms() if i < described else {})


KILLED_WRITER = """
import sys
from pathlib import Path
sys.path[:0] = [sys.argv[2], sys.argv[3]]
from stream_assist.config import RecordConfig
from stream_assist.record.recorder import Recorder
from tests.test_record import job
recorder = Recorder(Path(sys.argv[1]), "killed", RecordConfig())
for i in range(25):
    recorder.frame(job(i), f"answer {i}")
recorder._thread.submit(lambda: None).result()  # everything handed to the writer has been written
print("written", flush=True)
sys.stdin.read()
"""


def test_a_killed_recorder_leaves_a_file_players_open(tmp_path: Path) -> None:
    root = str(Path(__file__).resolve().parents[1])
    proc = subprocess.Popen([sys.executable, "-c", KILLED_WRITER, str(tmp_path), root, root],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "written"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    video = tmp_path / "killed.mkv"
    probe = subprocess.run(["ffprobe", "-v", "error", "-count_frames", "-select_streams", "v:0", "-show_entries",
                            "stream=nb_read_frames", "-of", "csv=p=0", str(video)], capture_output=True, text=True)
    assert probe.returncode == 0, probe.stderr
    frames = list(open_recording(video).frames())
    print(f"after SIGKILL: ffprobe reads {probe.stdout.strip()} frames, replay {len(frames)} of 25")
    assert int(probe.stdout.strip()) == len(frames) >= 20  # at most the open cluster (one second: 10 frames) lost


def test_a_recording_stops_at_its_size_limit_and_stays_playable(tmp_path: Path) -> None:
    settings = RecordConfig(max_mb=0.05, crf=0)  # lossless frames: a few of them fill 50 kB
    recorder = write(tmp_path, 20, settings)
    assert recorder.video_path.stat().st_size < 0.05e6 + 100_000  # the last frame's cluster over at most
    recording = open_recording(recorder.video_path)
    assert 0 < len(list(recording.frames())) < 20
    assert recording.lines[-1]["event"] == "end" and "size" in recording.lines[-1]["reason"]


def test_a_recording_of_another_version_is_refused_in_one_line(tmp_path: Path, capsys) -> None:  # noqa: ANN001
    recorder = write(tmp_path, 2)
    lines = recorder.side_path.read_text().splitlines()
    header = json.loads(lines[0])
    header["version"] = 99
    recorder.side_path.write_text("\n".join([json.dumps(header), *lines[1:]]) + "\n")
    assert cli_main(["replay", str(recorder.video_path), "--model", "x.gguf", "--mmproj", "y.gguf"]) == 2
    err = capsys.readouterr().err
    assert "format version 99" in err and err.count("\n") == 1


@ASYNC
async def test_a_served_source_is_recorded_and_replays_through_the_model(tmp_path: Path, vision_model,  # noqa: ANN001
                                                                         tiny_files, capsys) -> None:  # noqa: ANN001
    config = small_config()
    config.source.url = str(make_clip(tmp_path / "clip.mp4", 2.0))
    config.source.loop = True
    config.record.dir = str(tmp_path / "recordings")
    async with source_server(vision_model, config) as (base, state):
        client = await connect(base, camera=False)
        try:
            for _ in range(4):
                await client.next_message("guidance")
        finally:
            await client.close()
    videos = list((tmp_path / "recordings").glob("*.mkv"))
    assert len(videos) == 1 and videos[0].name.split("-")[-2] == "source"
    recording = open_recording(videos[0])
    recorded = list(recording.frames())
    assert len(recorded) >= 4 and all(f.timeline["sent"] >= f.timeline["decoded"] for f in recorded)
    assert recording.header["source"] == config.source.url
    out = tmp_path / "replayed.jsonl"
    assert cli_main(["replay", str(videos[0]), "--fast", "--model", str(tiny_files.text), "--mmproj",
                     str(tiny_files.mmproj), "--out", str(out)]) == 0
    replayed = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["n"] for r in replayed] == list(range(len(recorded)))
    assert all(r["now"] is not None and r["recorded"] == f.text for r, f in zip(replayed, recorded, strict=True))
    assert f"{len(recorded)} frames, {len(recorded)} answered" in capsys.readouterr().out


@ASYNC
async def test_each_browser_session_is_recorded_with_what_it_was_sent(tmp_path: Path, vision_model) -> None:  # noqa: ANN001
    from .conftest import running_server

    config = small_config()
    config.record.dir = str(tmp_path / "recordings")
    async with running_server(vision_model, config) as (base, state):
        client = await connect(base)
        try:
            for _ in range(3):
                await client.next_message("guidance")
            client.send({"type": "settings", "task": "fix the lamp"})
            await client.next_message("status")
            session = next(iter(state.sessions.values()))
        finally:
            await client.close()
        await session.closed.wait()  # its recording is finished when it has closed
    (video,) = (tmp_path / "recordings").glob(f"*-{session.id}.mkv")
    recording = open_recording(video)
    assert len(list(recording.frames())) >= 3
    sent = [line["kind"] for line in recording.lines if line["event"] == "message"]
    assert sent.count("guidance") >= 3 and "status" in sent
    assert any(line["fields"].get("task") == "fix the lamp" for line in recording.lines if line["event"] == "message")
    assert recording.lines[-1]["event"] == "end"


@ASYNC
async def test_the_page_record_switch_starts_and_stops_a_recording(vision_model) -> None:  # noqa: ANN001
    """Without record.dir, `record` on/off records the session into the data directory's recordings/."""
    from stream_assist.assistant.places import data_dir

    from .conftest import running_server

    config = small_config()
    async with running_server(vision_model, config) as (base, state):
        client = await connect(base)
        try:
            assert client.ready["recording"] is None
            client.send({"type": "record", "on": True})
            name = (await client.next_message("status"))["recording"]
            assert name.endswith(".mkv")
            for _ in range(2):
                await client.next_message("guidance")
            client.send({"type": "record", "on": False})
            assert (await client.next_message("status"))["recording"] is None  # sent once the file is finished
            client.send({"type": "record", "on": "yes"})
            assert (await client.next_message("error"))["code"] == "bad_field"
        finally:
            await client.close()
    recording = open_recording(data_dir(config.assistant) / "recordings" / name)
    assert len(list(recording.frames())) >= 2 and recording.lines[-1]["event"] == "end"


@ASYNC
async def test_a_benchmark_client_streams_a_recording_as_its_camera(tmp_path: Path) -> None:
    """`bench load/live --video`: the synthetic camera plays a recording's frames, at its own size, over and over."""
    from stream_assist.bench.synthetic_client import SyntheticCamera

    recorder = write(tmp_path, 3)
    camera = SyntheticCamera(128, 96, 1000.0, video=recorder.video_path)
    frames = [(await camera.recv()).to_ndarray(format="rgb24") for _ in range(4)]
    camera.stop()
    assert all(f.shape == (96, 128, 3) for f in frames)
    assert np.abs(frames[3].astype(int) - frames[0]).mean() < 2  # the fourth is the first again (3 recorded)
    assert np.abs(frames[1].astype(int) - frames[0]).mean() > 5
