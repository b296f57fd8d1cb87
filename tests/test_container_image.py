"""The container image as a person runs it: podman, the model in the /data volume, the default `--host 0.0.0.0`
with its printed token, /health and the image's HEALTHCHECK, a real aiortc offer and one guidance (on the host's
network and through a published port), TLS with the certificate kept in the volume.

Skipped unless STREAM_ASSIST_IMAGE names a built image (README, "Container image"); not part of the default run
because building the image takes a llama.cpp build.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import ssl
import subprocess
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import pytest

from stream_assist.bench.random_model import write_pair
from stream_assist.bench.server_process import free_port
from stream_assist.bench.synthetic_client import connect

IMAGE = os.environ.get("STREAM_ASSIST_IMAGE", "")
pytestmark = [
    pytest.mark.skipif(not IMAGE or shutil.which("podman") is None,
                       reason="set STREAM_ASSIST_IMAGE to a built image (and have podman) to test the image"),
    pytest.mark.asyncio(loop_scope="session"),
]


@dataclass
class Running:
    name: str
    base: str  # the printed loopback URL without its token
    token: str
    begun: float  # time.monotonic() at `podman run`
    printed_s: float  # podman run → the server printing its URLs


@pytest.fixture
def data(tmp_path: Path) -> Path:
    """A /data volume holding the tiny random model, as a person's would hold a downloaded one."""
    volume = tmp_path / "data"
    write_pair(volume, "tiny")
    return volume


@contextlib.asynccontextmanager
async def run_image(data: Path, log: Path, *extra: str, network: str = "host") -> AsyncIterator[Running]:
    """`podman run` of the image's default command line plus the local model and extra flags, on the host's
    network or (network="publish") its own with the port published; stops it after."""
    text = next(data.glob("random-tiny-text-*.gguf")).name
    mmproj = next(data.glob("random-tiny-mmproj-*.gguf")).name
    port = free_port()
    name = f"stream-assist-test-{os.getpid()}-{port}"
    begun, drain = time.monotonic(), None
    with log.open("wb") as stderr:
        proc = await asyncio.create_subprocess_exec(
            "podman", "run", "--rm", "--name", name, "-e", f"HEALTH_PORT={port}",
            *(["--network", "host"] if network == "host" else ["-p", f"{port}:{port}"]),
            "-v", f"{data}:/data:U", IMAGE,
            "stream-assist", "serve", "--host", "0.0.0.0", "--port", str(port),
            "--model", f"/data/{text}", "--mmproj", f"/data/{mmproj}", *extra,
            stdout=asyncio.subprocess.PIPE, stderr=stderr)
    try:
        line = await asyncio.wait_for(proc.stdout.readline(), 300)
        assert line.startswith(b"stream-assist: open "), f"{line!r}\n{log.read_text()[-3000:]}"
        printed = time.monotonic() - begun
        drain = asyncio.ensure_future(proc.stdout.read())  # the other URLs and the QR code
        base, token = line.decode().split("open ", 1)[1].strip().split("/?token=")
        yield Running(name, base, token, begun, printed)
    finally:
        subprocess.run(["podman", "stop", "--time", "20", name], capture_output=True)
        rc = await asyncio.wait_for(proc.wait(), 60)
        if drain is not None:
            await drain
    assert rc == 0, log.read_text()[-3000:]


def healthcheck(name: str) -> subprocess.CompletedProcess:
    """Runs the image's own HEALTHCHECK now (podman runs it on a timer only where systemd is)."""
    return subprocess.run(["podman", "healthcheck", "run", name], capture_output=True, text=True)


@pytest.mark.parametrize("network", ["host", "publish"])
async def test_image_serves_health_and_guidance_over_aiortc(data: Path, tmp_path: Path, network: str) -> None:
    async with run_image(data, tmp_path / "container.log", network=network) as running:
        async with aiohttp.ClientSession() as http:
            async with http.get(running.base + "/health") as res:  # no token needed
                body = await res.json()
                health_s = time.monotonic() - running.begun
                assert res.status == 200 and body["status"] == "ok" and body["model"].startswith("random-tiny")
            async with http.get(running.base + "/metrics") as res:  # bound beyond loopback: the token is in force
                assert res.status == 401
        checked = healthcheck(running.name)
        assert checked.returncode == 0, checked.stdout + checked.stderr
        client = await connect(running.base, token=running.token)
        guidance = await client.next_message("guidance")
        assert guidance["frame_id"] >= 0 and isinstance(guidance["text"], str)
        size = subprocess.run(["podman", "image", "inspect", "--format", "{{.Size}}", IMAGE],
                              capture_output=True, text=True).stdout.strip()
        print(f"\nimage {IMAGE} ({network} network): {int(size) / 1e9:.2f} GB; podman run → URLs printed "
              f"{running.printed_s:.1f} s, → /health ok {health_s:.1f} s (load average {os.getloadavg()[0]:.1f})")
    # leaving the block stopped the container (podman stop: SIGTERM) with the session still open: the server closed it
    # (whether its "closing" status outruns the peer connection's close is not certain, so the log is the evidence)
    await client.close()
    assert "closed 1 sessions, stopped the worker, freed the model" in (tmp_path / "container.log").read_text()


async def test_image_self_signed_certificate_lives_in_the_volume(data: Path, tmp_path: Path) -> None:
    cert = data / ".cache" / "stream-assist" / "tls" / "cert.pem"
    async with run_image(data, tmp_path / "first.log", "--self-signed") as running:
        assert running.base.startswith("https://127.0.0.1:")
        context = ssl.create_default_context(cafile=str(cert))  # the volume's certificate is the one served
        async with aiohttp.ClientSession() as http:
            async with http.get(running.base + "/health", ssl=context) as res:
                assert res.status == 200 and (await res.json())["status"] == "ok"
        checked = healthcheck(running.name)
        assert checked.returncode == 0, checked.stdout + checked.stderr  # the server speaks HTTPS only
    first = cert.read_bytes()
    async with run_image(data, tmp_path / "second.log", "--self-signed") as running:
        async with aiohttp.ClientSession() as http:  # a restart serves the certificate the phone's browser accepted
            async with http.get(running.base + "/health", ssl=context) as res:
                assert res.status == 200
        assert cert.read_bytes() == first


async def test_any_command_stops_on_podman_stop() -> None:
    """tini passes SIGTERM on: a command that does not handle it still dies of it (143), not of the SIGKILL
    podman sends after its grace period (137), which is what a bare PID 1 would wait for."""
    name = f"stream-assist-test-{os.getpid()}-stop"
    proc = subprocess.Popen(["podman", "run", "--rm", "--name", name, IMAGE, "python", "-c",
                             "import time; print('up', flush=True); time.sleep(600)"],
                            stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "up"
        subprocess.run(["podman", "stop", "--time", "120", name], capture_output=True)
        assert proc.wait(timeout=180) == 128 + 15
    finally:
        if proc.poll() is None:
            proc.kill()
            subprocess.run(["podman", "rm", "-f", name], capture_output=True)
