"""Camera sources beside the browser: RTSP/HTTP/HLS streams, a local webcam, a file played as a camera."""
