"""`stream-assist bench soak`: many connect / stream / disconnect cycles against a real server process.

Each cycle opens an aiortc session, waits for one guidance, and closes it. Afterwards the server's
resident memory, threads and file descriptors are compared with their levels after the first 10 cycles
(by then the lazily made pools and caches exist); a leak shows as growth in any of them.
"""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path

from ..inference.model_source import ModelFiles
from .server_process import start_server_process
from .synthetic_client import connect

WARM_CYCLES = 10


def process_figures(pid: int) -> dict[str, int]:
    """Resident memory (KiB), threads and open file descriptors of a process, from /proc."""
    status = Path(f"/proc/{pid}/status").read_text()
    rss = next(int(line.split()[1]) for line in status.splitlines() if line.startswith("VmRSS:"))
    return {"rss_kib": rss, "threads": len(os.listdir(f"/proc/{pid}/task")), "fds": len(os.listdir(f"/proc/{pid}/fd"))}


async def _wait_idle(url: str) -> None:
    """Until the server reports no open session (a closed peer is noticed over DTLS, not at once)."""
    import aiohttp

    async with aiohttp.ClientSession() as http:
        for _ in range(600):
            async with http.get(url + "/health") as res:
                if (await res.json())["sessions"] == 0:
                    return
            await asyncio.sleep(0.05)  # polling the server's own count, bounded
    raise RuntimeError("sessions were not released")


async def measure(files: ModelFiles, cycles: int) -> dict:
    config = Path(os.environ.get("TMPDIR", "/tmp")) / f"soak-{os.getpid()}.toml"
    config.write_text("[pipeline]\nchange_threshold = 0.0\n")
    proc, url = await start_server_process(files, "--config", str(config))
    try:
        baseline = process_figures(proc.pid)
        warm = baseline
        for cycle in range(1, cycles + 1):
            client = await connect(url)
            await client.next_message("guidance", timeout=120)
            await client.close()
            await _wait_idle(url)
            if cycle == WARM_CYCLES:
                warm = process_figures(proc.pid)
        after = process_figures(proc.pid)
    finally:
        proc.terminate()
        await proc.wait()
        config.unlink(missing_ok=True)
    return {
        "cycles": cycles, "baseline": baseline, "after_warm_up": warm, "after": after,
        "rss_growth_since_warm_up": round(after["rss_kib"] / warm["rss_kib"] - 1, 4),
        "leaked_threads": after["threads"] - warm["threads"], "leaked_fds": after["fds"] - warm["fds"],
    }


def main(files: ModelFiles, cycles: int, as_json: bool) -> int:
    r = asyncio.run(measure(files, cycles))
    if as_json:
        print(json.dumps(r, indent=2))
        return 0
    print(f"{r['cycles']} connect/stream/disconnect cycles")
    for name in ("baseline", "after_warm_up", "after"):
        f = r[name]
        print(f"{name:14} RSS {f['rss_kib'] / 1024:8.1f} MiB  threads {f['threads']:3d}  fds {f['fds']:4d}")
    print(f"RSS growth since cycle {WARM_CYCLES}: {r['rss_growth_since_warm_up']:+.1%}; "
          f"threads {r['leaked_threads']:+d}, fds {r['leaked_fds']:+d}")
    return 0
