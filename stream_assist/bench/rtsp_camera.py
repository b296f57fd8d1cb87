"""A real RTSP camera for the tests and `bench source`: GStreamer's RTSP server streaming moving colour bars as H.264.

Run with the system Python (python3-gi and gir1.2-gst-rtsp-server-1.0 from Debian), not the venv:
    /usr/bin/python3 stream_assist/bench/rtsp_camera.py PORT [WIDTHxHEIGHT] [FPS]
It serves rtsp://127.0.0.1:PORT/cam and prints "ready" once listening. (FFmpeg's `-rtsp_flags listen`
only receives a stream; it cannot serve one to a player.)
"""

import sys

import gi

gi.require_version("Gst", "1.0")
gi.require_version("GstRtspServer", "1.0")
from gi.repository import GLib, Gst, GstRtspServer  # noqa: E402

port = sys.argv[1]
width, height = (sys.argv[2] if len(sys.argv) > 2 else "640x480").split("x")
fps = sys.argv[3] if len(sys.argv) > 3 else "15"
Gst.init(None)
server = GstRtspServer.RTSPServer()
server.set_address("127.0.0.1")
server.set_service(port)
factory = GstRtspServer.RTSPMediaFactory()
# colour bars scrolling sideways: every pixel changes every frame, as in a real camera's picture (not a still one)
factory.set_launch(f"( videotestsrc is-live=true pattern=smpte horizontal-speed=4 "
                   f"! video/x-raw,width={width},height={height},framerate={fps}/1 "
                   f"! x264enc tune=zerolatency speed-preset=ultrafast key-int-max={fps} "
                   "! rtph264pay name=pay0 pt=96 config-interval=1 )")
factory.set_shared(True)  # one encoder for every client, as a camera has
server.get_mount_points().add_factory("/cam", factory)
if server.attach(None) == 0:
    sys.exit(f"cannot listen on port {port}")
print("ready", flush=True)
GLib.MainLoop().run()
