"""Starts and kills the GStreamer RTSP camera (rtsp_camera.py, run by the system Python that has its bindings)."""

from __future__ import annotations

import subprocess
from pathlib import Path

CAMERA = Path(__file__).with_name("rtsp_camera.py")
SYSTEM_PYTHON = "/usr/bin/python3"  # python3-gi and GStreamer's RTSP server bindings come from Debian


class RtspCamera:
    """GStreamer's RTSP server on loopback streaming a moving pattern (H.264), as an IP camera does."""

    def __init__(self, port: int, size: str = "640x480", fps: int = 15) -> None:
        self.url = f"rtsp://127.0.0.1:{port}/cam"
        self.args = [SYSTEM_PYTHON, str(CAMERA), str(port), size, str(fps)]
        self.proc: subprocess.Popen | None = None

    def start(self) -> RtspCamera:
        """Returns once the server listens."""
        self.proc = subprocess.Popen(self.args, stdout=subprocess.PIPE, text=True)
        if self.proc.stdout.readline().strip() != "ready":
            self.kill()
            raise RuntimeError(f"the RTSP camera did not start ({' '.join(self.args)}; needs "
                               "gir1.2-gst-rtsp-server-1.0 and gstreamer1.0-plugins-ugly)")
        return self

    def kill(self) -> None:
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait()
            self.proc.stdout.close()
            self.proc = None
