"""`stream-assist bench source`: a camera source and recordings, measured against the issue's targets.

An RTSP camera (GStreamer's RTSP server, H.264) on loopback feeds a real `serve --source` process; a page-less
watcher reads its guidance. Printed: source frame (decoded) → model input (queued) latency, the server's CPU
while it decodes only (paused) and with the whole pipeline, FFmpeg's own decoder on the same stream beside it,
and how long after the camera comes back guidance resumes. Then, in this process: what recording costs (CPU
and MB a minute at 512 px, at 15 frames a second and at a model's 2) and replay --fast against the same model
called directly (it must run at the model's speed).
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from ..config import Config, RecordConfig
from ..inference.llama_log import route_llama_logs
from ..inference.model_source import ModelFiles
from ..inference.prompts import PromptSettings
from ..inference.vision_model import VisionModel
from ..inference.worker import InferenceWorker, Job
from ..latency.timeline import Timeline
from ..record.reading import open_recording
from ..record.recorder import Recorder
from ..record.replay import replay
from ..video.sampler import fit_size
from .load import _cpu_seconds, _percentiles
from .rtsp_camera_process import RtspCamera
from .server_process import free_port, start_server_process
from .synthetic_client import Client, connect


async def _state(client: Client, wanted: str) -> float:
    """Waits for a `source` message with this state; returns when it came (time.monotonic())."""
    while (await client.next_message("source", timeout=120))["state"] != wanted:
        pass
    return time.monotonic()


def _ffmpeg_decode_cpu(url: str, seconds: float) -> float:
    """Cores FFmpeg's own command-line decoder uses on the same stream (the baseline for our decoding)."""
    before = os.times()
    subprocess.run(["ffmpeg", "-hide_banner", "-loglevel", "error", "-rtsp_transport", "tcp", "-i", url, "-t",
                    str(seconds), "-f", "null", "-"], check=True)
    after = os.times()
    return (after.children_user - before.children_user + after.children_system - before.children_system) / seconds


async def measure_rtsp(files: ModelFiles, seconds: float, reconnects: int) -> dict:
    camera = RtspCamera(free_port()).start()
    with tempfile.TemporaryDirectory() as tmp:
        config = Path(tmp) / "source.toml"
        # every sampled frame goes to the model (the test pattern is mostly still: the gate would skip it)
        config.write_text("[pipeline]\nmax_edge = 512\nchange_threshold = 0.0\n[model]\nn_ctx = 4096\nn_threads = 1\n")
        proc, url = await start_server_process(files, "--config", str(config), "--source", camera.url)
        client = await connect(url, camera=False)
        try:
            await client.next_message("guidance", timeout=600)  # warmed up
            cpu0, t0 = _cpu_seconds(proc.pid), time.monotonic()
            got = await client.collect("guidance", seconds)
            full_cpu = (_cpu_seconds(proc.pid) - cpu0) / (time.monotonic() - t0)
            client.send({"type": "pause"})  # frames are still received and decoded, nothing more
            await client.next_message("status")
            cpu0, t0 = _cpu_seconds(proc.pid), time.monotonic()
            await asyncio.sleep(seconds)  # the measured window
            decode_cpu = (_cpu_seconds(proc.pid) - cpu0) / (time.monotonic() - t0)
            ffmpeg_cpu = await asyncio.get_running_loop().run_in_executor(None, _ffmpeg_decode_cpu, camera.url,
                                                                          seconds)
            client.send({"type": "resume"})
            back: list[dict] = []
            for _ in range(reconnects):
                last = (await client.next_message("guidance"))["frame_id"]
                camera.kill()
                await _state(client, "retrying")
                await asyncio.sleep(3.0)  # away long enough for the back-off to reach its cap
                returned = time.monotonic()
                camera.start()
                live = await _state(client, "live")
                while (await client.next_message("guidance"))["frame_id"] <= last:
                    pass
                back.append({"live_s": round(live - returned, 2), "guidance_s": round(time.monotonic() - returned, 2)})
        finally:
            await client.close()
            proc.terminate()
            await proc.wait()
            camera.kill()
    queued = [m["timeline"]["queued"] - m["timeline"]["decoded"] for m in got]
    age = [m["timeline"]["inference_start"] - m["timeline"]["decoded"] for m in got]
    return {"decoded_to_queued_ms": _percentiles(queued), "decoded_to_inference_ms": _percentiles(age),
            "server_cpu_paused_cores": round(decode_cpu, 3), "server_cpu_guiding_cores": round(full_cpu, 3),
            "ffmpeg_decode_cpu_cores": round(ffmpeg_cpu, 3), "reconnects": back}


def camera_frames(count: int, max_edge: int) -> list[np.ndarray]:
    """Camera-like frames (a moving pattern with sensor noise) at the model's size, made by FFmpeg."""
    width, height = fit_size(640, 480, max_edge)
    raw = subprocess.run(["ffmpeg", "-hide_banner", "-loglevel", "error", "-f", "lavfi", "-i",
                          f"testsrc2=size=640x480:rate=15,noise=alls=6:allf=t,scale={width}:{height}",
                          "-frames:v", str(count), "-pix_fmt", "rgb24", "-f", "rawvideo", "-"],
                         check=True, capture_output=True).stdout
    return list(np.frombuffer(raw, np.uint8).reshape(count, height, width, 3))


def _job(n: int, rgb: np.ndarray, at: float) -> Job:
    timeline = Timeline()
    timeline.mark("decoded", at)
    return Job(n, rgb, PromptSettings().text(), timeline)


def measure_recording(frames: list[np.ndarray], rate: float, directory: Path) -> dict:
    """Feeds the recorder `rate` frames a second, paced as they would come; its CPU and bytes per minute."""
    recorder = Recorder(directory, f"bench-{rate:g}", RecordConfig(max_mb=10_000))
    cpu0, t0 = time.process_time(), time.monotonic()
    for n, rgb in enumerate(frames):
        time.sleep(max(0.0, t0 + n / rate - time.monotonic()))  # the frames' pace, as the model answers
        recorder.frame(_job(n, rgb, time.time()), f"answer {n}")
    recorder.close()
    wall = time.monotonic() - t0
    size = recorder.video_path.stat().st_size + recorder.side_path.stat().st_size
    return {"fps": rate, "frames": len(frames), "cpu_percent_of_core": round(100 * (time.process_time() - cpu0) / wall,
                                                                             1),
            "mb_per_minute": round(size / 1e6 / (wall / 60), 2), "path": str(recorder.video_path)}


def measure_replay(files: ModelFiles, path: Path, frames: int, rounds: int = 3) -> dict:
    """replay --fast against the same model called directly on the same frames one after another, in alternating
    rounds (one llama.cpp thread: on a shared machine more threads make either side's time a lottery); the best
    round of each is compared."""
    config = Config()
    config.model.n_ctx, config.model.n_threads = 4096, 1
    model = VisionModel(files, config.model)
    recording = open_recording(path)
    pictures = [f.rgb for f in recording.frames()][:frames]
    direct: list[float] = []
    replayed: list[float] = []
    try:
        with ThreadPoolExecutor(1) as thread:  # called from a thread of its own, as the worker calls it

            def direct_run() -> float:
                t0 = time.monotonic()
                for rgb in pictures:
                    model.describe(rgb, PromptSettings().text())
                return time.monotonic() - t0

            thread.submit(model.describe, pictures[0], PromptSettings().text()).result()  # warm-up
            worker = InferenceWorker(model)
            worker.start()
            try:
                for _ in range(rounds):
                    direct.append(thread.submit(direct_run).result())
                    t0 = time.monotonic()
                    results = replay(recording, worker, config, fast=True, limit=len(pictures))
                    replayed.append(time.monotonic() - t0)
            finally:
                worker.stop()
    finally:
        model.close()
    recorded_s = results[-1].pts_ms / 1000 + 1 / 15
    return {"frames": len(results), "direct_s": [round(t, 2) for t in direct],
            "replay_fast_s": [round(t, 2) for t in replayed], "ratio": round(min(replayed) / min(direct), 3),
            "recorded_s": round(recorded_s, 2)}


def main(files: ModelFiles, seconds: float, reconnects: int, as_json: bool) -> int:
    route_llama_logs()
    load_before = os.getloadavg()
    rtsp = asyncio.run(measure_rtsp(files, seconds, reconnects))
    with tempfile.TemporaryDirectory() as tmp:
        frames = camera_frames(int(15 * seconds), 512)
        recording = [measure_recording(frames, rate, Path(tmp)) for rate in (15.0, 2.0)]
        replayed = measure_replay(files, Path(recording[0]["path"]), 30)
    result = {"model": files.text.name, "rtsp": rtsp, "recording": recording, "replay": replayed,
              "load_average": [load_before, os.getloadavg()], "cpu_cores": os.cpu_count()}
    if as_json:
        print(json.dumps(result, indent=2))
        return 0
    q, a = rtsp["decoded_to_queued_ms"], rtsp["decoded_to_inference_ms"]
    print(f"RTSP H.264 640x480 @ 15 on loopback (GStreamer camera), model {files.text.name}, max_edge 512")
    print(f"  source frame → model input (decoded → queued)  p50 {q['p50']} ms  p95 {q['p95']} ms  (n {q['n']})")
    print(f"  source frame → inference start                 p50 {a['p50']} ms  p95 {a['p95']} ms")
    print(f"  server CPU, paused (receive + decode only)     {100 * rtsp['server_cpu_paused_cores']:.1f} % of a core"
          f"   (ffmpeg -f null on the same stream: {100 * rtsp['ffmpeg_decode_cpu_cores']:.1f} %)")
    print(f"  server CPU, guiding (pipeline + model)         {100 * rtsp['server_cpu_guiding_cores']:.1f} % of a core")
    for i, r in enumerate(rtsp["reconnects"], 1):
        print(f"  reconnect {i}: camera back → source live {r['live_s']} s, → new guidance {r['guidance_s']} s")
    for r in recording:
        print(f"recording 512 px at {r['fps']:g} frames/s: {r['cpu_percent_of_core']} % of a core, "
              f"{r['mb_per_minute']} MB/min")
    print(f"replay --fast of {replayed['frames']} frames ({replayed['recorded_s']} s recorded): "
          f"{replayed['replay_fast_s']} s; the model alone on them: {replayed['direct_s']} s "
          f"(best against best: {replayed['ratio']})")
    print(f"load average before/after: {load_before[0]:.2f} / {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores "
          "(a shared machine)")
    return 0
