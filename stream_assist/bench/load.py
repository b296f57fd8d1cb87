"""`stream-assist bench load`: N synthetic WebRTC clients streaming into a real server process.

The server runs as its own process (so its CPU use is its own) on a random-weight model of the chosen
shape; the clients are aiortc peers in this process. Prints per-stage latency percentiles, the frame
age when inference starts, pipeline time without the model, drop rate, guidance per session and the
server's CPU use. `--queue fifo` swaps the drop-stale slot for a plain FIFO, to show the difference;
`--endpoints N` runs the model in N llama-cpp-python inference servers instead (the `openai` backend).
"""

from __future__ import annotations

import asyncio
import json
import os
import tempfile
import time
from pathlib import Path

import numpy as np

from ..inference.model_source import ModelFiles
from ..latency.timeline import STAGES
from .server_process import LlamaCppServer, start_server_process
from .synthetic_client import Client, connect


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime


def _percentiles(values: list[float]) -> dict[str, float]:
    if not values:
        return {"p50": float("nan"), "p95": float("nan"), "p99": float("nan"), "n": 0}
    p50, p95, p99 = np.percentile(values, [50, 95, 99])
    return {"p50": round(float(p50), 1), "p95": round(float(p95), 1), "p99": round(float(p99), 1), "n": len(values)}


def _collect(client: Client, into: list[dict]) -> None:
    while not client.messages.empty():
        msg = client.messages.get_nowait()
        if msg.get("type") == "guidance":
            into.append(msg)


async def measure(files: ModelFiles, clients: int, size: tuple[int, int], fps: float, seconds: float,
                  queue: str, threads: int, endpoints: int = 0, video: Path | None = None) -> dict:
    inference = [LlamaCppServer(files, threads or 1) for _ in range(endpoints)]
    try:  # the inference servers go, whatever fails after any of them started
        await asyncio.gather(*(s.start() for s in inference))
        with tempfile.TemporaryDirectory() as tmp:
            config_path = Path(tmp) / "load.toml"
            config_path.write_text(
                f"[server]\nmax_sessions = {clients}\n[model]\nn_ctx = 4096\nn_threads = {threads}\n"
                f"[pipeline]\nqueue = \"{queue}\"\nsample_fps = {float(fps)}\nchange_threshold = 0.0\n")
            model = [a for s in inference for a in ("--endpoint", s.url)] or ["--model", str(files.text),
                                                                             "--mmproj", str(files.mmproj)]
            proc, url = await start_server_process(None, "--config", str(config_path), *model)
            peers: list[Client] = []
            try:
                peers = [await connect(url, size[0], size[1], fps, video_file=video) for _ in range(clients)]
                await asyncio.gather(*(p.next_message("guidance", timeout=600) for p in peers))  # all warmed up
                for p in peers:
                    _collect(p, [])
                cpu0, t0 = _cpu_seconds(proc.pid), time.monotonic()
                await asyncio.sleep(seconds)  # the measured window
                cpu1, t1 = _cpu_seconds(proc.pid), time.monotonic()
                per_client: list[list[dict]] = []
                for p in peers:
                    got: list[dict] = []
                    _collect(p, got)
                    per_client.append(got)
            finally:
                for p in peers:
                    await p.close()
                proc.terminate()
                await proc.wait()
    finally:
        for s in inference:
            await s.kill()
    cpu = (cpu1 - cpu0) / (t1 - t0)
    return _summarise(per_client, clients, size, fps, seconds, queue, cpu, files, endpoints)


def _summarise(per_client: list[list[dict]], clients: int, size: tuple[int, int], fps: float, seconds: float,
               queue: str, cpu_cores: float, files: ModelFiles, endpoints: int) -> dict:
    messages = [m for got in per_client for m in got]
    stages = {s: _percentiles([m["stages_ms"][s] for m in messages if s in m["stages_ms"]]) for s in STAGES[1:]}
    age = [m["timeline"]["inference_start"] - m["timeline"]["decoded"] for m in messages]
    overhead = [(m["timeline"]["sent"] - m["timeline"]["decoded"])
                - (m["timeline"]["done"] - m["timeline"]["inference_start"]) for m in messages]
    own = ("sampled", "enhanced", "queued", "inference_start", "sent")  # not waiting for, nor running, the model
    own_work = [sum(m["stages_ms"].get(s, 0.0) for s in own) for m in messages]
    last = [got[-1]["counters"] for got in per_client if got]
    queued = sum(c["queued"] for c in last)
    shares = [len(got) for got in per_client]
    return {
        "model": files.text.name, "endpoints": endpoints, "clients": clients,
        "size": f"{size[0]}x{size[1]}", "fps": fps,
        "seconds": seconds, "queue": queue,
        "stages_ms": stages,
        "frame_age_at_inference_ms": _percentiles(age),
        "decoded_to_sent_without_model_ms": _percentiles(overhead),
        "pipeline_own_work_ms": _percentiles(own_work),
        "drop_rate": round(sum(c["dropped"] for c in last) / queued, 3) if queued else 0.0,
        "guidance_per_session": shares,
        "share_spread": round((max(shares) - min(shares)) / max(shares), 3) if shares and max(shares) else 0.0,
        "server_cpu_cores": round(cpu_cores, 2),
    }


def print_table(r: dict) -> None:
    where = f"on {r['endpoints']} llama_cpp.server endpoints" if r["endpoints"] else "embedded"
    print(f"{r['clients']} clients, {r['size']} at {r['fps']:g} fps, {r['seconds']:g} s, queue {r['queue']}, "
          f"model {r['model']} {where}")
    print(f"{'':38}{'p50':>9}{'p95':>9}{'p99':>9}{'n':>6}")
    rows = [(f"stage {s}", v) for s, v in r["stages_ms"].items()] + [
        ("frame age when inference starts", r["frame_age_at_inference_ms"]),
        ("decoded → sent, model time excluded", r["decoded_to_sent_without_model_ms"]),
        ("  of which not waiting for the model", r["pipeline_own_work_ms"])]
    for name, v in rows:
        print(f"{name:38}{v['p50']:9.1f}{v['p95']:9.1f}{v['p99']:9.1f}{v['n']:6d}")
    print(f"drop rate {r['drop_rate']:.1%}, guidance per session {r['guidance_per_session']} "
          f"(spread {r['share_spread']:.0%}), server CPU {r['server_cpu_cores']:.2f} cores")


def main(files: ModelFiles, clients: int, size: tuple[int, int], fps: float, seconds: float, queue: str,
         threads: int, as_json: bool, endpoints: int = 0, video: Path | None = None) -> int:
    result = asyncio.run(measure(files, clients, size, fps, seconds, queue, threads, endpoints, video))
    if as_json:
        print(json.dumps(result, indent=2))
    else:
        print_table(result)
    return 0
