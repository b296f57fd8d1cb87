// Watch mode: the server has a camera of its own (an RTSP/IP camera, a webcam on the server, a file: `serve
// --source`). The page then sends no video: it shows the frames the model is shown (an MJPEG stream the server
// encodes only while someone watches), the camera's state, and the guidance; its microphone still gives commands.
"use strict";

const watch = {
  source: null,  // the server's camera source ({url, camera, state, error, ...}), or null: this page's own camera
  view: document.getElementById("watch-view"),
  badge: document.getElementById("source-state"),

  // Asks the server once, at load, whether it has a camera source; the page switches to watching if so.
  async probe(headers) {
    try {
      const res = await fetch("/source", { headers });
      this.source = res.ok ? (await res.json()).source : null;
    } catch {
      this.source = null;
    }
    if (this.source) this.show(this.source);
    return this.source !== null;
  },

  active() { return this.source !== null; },

  // Shows the source's frames in place of this device's camera preview (while live: Start … Stop).
  play(token) {
    this.view.src = "/source/video.mjpg" + (token ? `?token=${encodeURIComponent(token)}` : "");
    this.view.hidden = false;
  },

  stop() { this.view.removeAttribute("src"); },

  show(source) {
    this.source = source;
    document.getElementById("preview").hidden = true;
    document.getElementById("camera").disabled = true;
    this.badge.hidden = false;
    this.badge.dataset.state = source.state;
    this.badge.textContent = `camera ${source.state}` + (source.state !== "live" && source.error
      ? `: ${source.error}` + (source.retry_in_s ? `, again in ${source.retry_in_s} s` : "") : "");
    this.badge.title = source.url;
  },

  // `source` messages: the camera connected, dropped, is retrying, or its file ended.
  handle(msg) {
    if (msg.type !== "source") return false;
    this.show(msg);
    return true;
  },
};
window.watch = watch;
