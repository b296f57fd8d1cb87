"""The service's front: the aiohttp app, one WebRTC session per browser, the data-channel protocol, access and TLS,
and the Prometheus export. It wires the video, enhancement and inference stages together per session and hands
guidance back to the page."""
