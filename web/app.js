// stream-assist page: camera → WebRTC → server; guidance ← data channel, shown and spoken.
// Protocol: docs/protocol.md.
"use strict";

const $ = (id) => document.getElementById(id);
const ui = {
  start: $("start"), pause: $("pause"), camera: $("camera"), speak: $("speak"), preset: $("preset"),
  task: $("task"), custom: $("custom"), customWrap: $("custom-wrap"), interval: $("interval"), apply: $("apply"),
  preview: $("preview"), guidance: $("guidance"), error: $("error"), history: $("history"),
  stats: $("stats"), state: $("state"),
};
const HISTORY_LENGTH = 8;
// From another machine the server wants the access token it printed; it comes in this page's URL.
const TOKEN = new URLSearchParams(location.search).get("token");
const authHeaders = TOKEN ? { Authorization: `Bearer ${TOKEN}` } : {};
// The server's name for this person's session state; sent with every offer so a reload, a reconnect or a
// server restart comes back to the same settings, task and step.
const RESUME_KEY = "stream-assist-resume";
const resumeToken = () => localStorage.getItem(RESUME_KEY);

let pc = null;
let channel = null;
let clockTimer = null;
let stream = null;
let paused = false;
// Between Start and Stop the page stays live on its own: a dropped connection is made again with back-off.
let live = false;
// Read by tests and `stream-assist bench page`: when Start was pressed, the first and latest guidance.
// `handle` takes a data-channel event, so tests can drive the page's protocol handling directly.
window.streamAssist = {
  startedAt: null, firstGuidanceAt: null, firstText: null, last: null, handle: null, latency: [], authHeaders,
};

function setState(text) {
  ui.state.textContent = text;
  ui.state.dataset.state = text.split(/\W/)[0];  // the style's colour for live / paused / reconnecting / …
}

function showError(text) {
  ui.error.textContent = text;
  ui.error.hidden = !text;
}

// Speech: say each new guidance once. The first complete sentence is said while the rest is still
// being generated; the rest follows when the guidance is complete. Repeats of the last guidance are silent.
const speech = { frame: null, said: "", last: "", startedAt: {} };

function norm(text) { return text.trim().replace(/\s+/g, " ").toLowerCase(); }

function say(text, frame) {
  if (voice.probe.serverVoice) return;  // the server speaks on the audio track
  if (!ui.speak.checked || !("speechSynthesis" in window) || !text.trim()) return;
  if (voice.probe.quiet) return;  // the person said "quiet": show only
  speech.startedAt[frame] = speech.startedAt[frame] || nowMs();
  const u = new SpeechSynthesisUtterance(text.trim());
  voice.utterance(u);
  speechSynthesis.speak(u);
}

function firstSentence(text) {
  const m = text.match(/^\s*[^.!?]*[.!?]+(?=\s|$)/);
  return m ? m[0] : null;
}

function speakPartial(frame, text) {
  if (speech.frame === frame) return;  // this answer's first sentence is already out
  const sentence = firstSentence(text);
  if (!sentence || speech.last.startsWith(norm(sentence))) return;  // not yet complete, or the same as before
  if ("speechSynthesis" in window) speechSynthesis.cancel();  // fresh guidance replaces stale speech
  speech.frame = frame;
  speech.said = sentence;
  say(sentence, frame);
}

function speakFinal(frame, text) {
  if (norm(text) === speech.last) return;  // say only what is new
  if (speech.frame === frame) {
    say(text.slice(speech.said.length), frame);  // the first sentence is already being said
  } else {
    if ("speechSynthesis" in window) speechSynthesis.cancel();
    say(text, frame);
  }
  speech.frame = frame;
  speech.last = norm(text);
}

function sayNow(text) {
  if ("speechSynthesis" in window) speechSynthesis.cancel();
  say(text, "asked");
  speech.frame = null;
  speech.last = norm(text);
}

function showPartial(msg) {
  if (taskPanel.active()) return;  // with a task the raw answer is a verdict; the server's decision follows
  ui.guidance.textContent = msg.text;
  ui.guidance.classList.add("partial");
  speakPartial(msg.frame_id, msg.text);
}

function showGuidance(msg) {
  const text = msg.text || "";
  ui.guidance.classList.remove("partial");
  if (!text) return;
  const probe = window.streamAssist;
  if (probe.firstGuidanceAt === null) Object.assign(probe, { firstGuidanceAt: performance.now(), firstText: text });
  if (ui.history.dataset.current) {
    const li = document.createElement("li");
    li.textContent = ui.history.dataset.current;
    ui.history.prepend(li);
    while (ui.history.children.length > HISTORY_LENGTH) ui.history.lastChild.remove();
  }
  ui.history.dataset.current = text;
  ui.guidance.textContent = text;
  ui.guidance.dataset.frame = String(msg.frame_id);
  if (msg.speak === true && msg.frame_id == null) sayNow(text);  // the person asked (next, repeat…): say it now
  else if (msg.speak === true) speakFinal(msg.frame_id, text);  // the server's policy decides what is said
  if (!msg.timeline) return;  // an answer to a task command, not about a frame
  const c = msg.counters || {};
  const t = msg.timeline || {};
  const model = t.done && t.inference_start ? Math.round(t.done - t.inference_start) : "?";
  const age = t.sent && t.decoded ? Math.round(t.sent - t.decoded) : "?";
  const lat = glassToGuidance(msg, nowMs());
  dashboard.onGuidance(msg, lat);
  const glass = lat.screen_ms !== null ? `camera→screen ${Math.round(lat.screen_ms)} ms · ` : "";
  const frameAge = lat.age_at_inference_ms !== null
    ? `frame age at inference ${Math.round(lat.age_at_inference_ms)} ± ${Math.ceil(clock.uncertainty)} ms · ` : "";
  ui.stats.textContent = `frame ${msg.frame_id} · model ${model} ms · decoded→sent ${age} ms · ${glass}${frameAge}` +
    `received ${c.received} · unchanged ${c.unchanged} · dropped ${c.dropped} · processed ${c.processed}`;
}

// Glass-to-guidance for one guidance, in the browser's clock. The capture estimate comes from the
// server (RTP time + RTCP sender reports, already in this browser's wall clock); server stage times
// are moved into this clock with the estimated offset, so they carry its uncertainty.
function glassToGuidance(msg, shownAt) {
  const cap = (msg.capture || {}).estimate_ms ?? null;
  const truth = (msg.capture || {}).truth_ms ?? null;
  const t = msg.timeline || {};
  const spokenAt = speech.startedAt[msg.frame_id] ?? null;
  const lat = {
    frame: msg.frame_id, shown_at: shownAt, capture_ms: cap, truth_ms: truth,
    screen_ms: cap !== null ? shownAt - cap : null,
    speech_ms: cap !== null && spokenAt !== null ? spokenAt - cap : null,
    truth_screen_ms: truth !== null ? shownAt - truth : null,
    age_at_inference_ms: cap !== null && clock.offset !== null && t.inference_start
      ? t.inference_start - clock.offset - cap : null,
    model_ms: t.done && t.inference_start ? t.done - t.inference_start : null,
    clock_offset: clock.offset, clock_uncertainty_ms: clock.uncertainty,
  };
  const log = window.streamAssist.latency;
  log.push(lat);
  if (log.length > 500) log.shift();
  return lat;
}

// The server's voice started (or stopped) saying something: "speaking", and camera → speech for its frame, with
// the first sample's server time moved into this clock (so it carries the clock's uncertainty).
function onSpeech(msg) {
  voice.onSpeech(msg);
  if (msg.state !== "start" || msg.frame_id == null || clock.offset === null) return;
  const at = msg.at_ms - clock.offset;
  speech.startedAt[msg.frame_id] = at;  // read by glassToGuidance when the speech began before the guidance
  const lat = window.streamAssist.latency.find((l) => l.frame === msg.frame_id);
  if (lat && lat.capture_ms !== null) {
    lat.speech_ms = at - lat.capture_ms;
    dashboard.refresh();
  }
}

// The server looks at frames no larger than frame_max_edge: sending more only costs encoding here,
// uplink, and decoding on the server. The preview keeps the camera's full size.
function fitVideoToServer(maxEdge) {
  const sender = pc && pc.getSenders().find((s) => s.track && s.track.kind === "video");
  if (!sender || !maxEdge) return;
  const { width, height } = sender.track.getSettings();
  const scale = Math.max(1, Math.max(width || 0, height || 0) / maxEdge);
  const params = sender.getParameters();
  if (!params.encodings || !params.encodings.length || params.encodings[0].scaleResolutionDownBy === scale) return;
  params.encodings[0].scaleResolutionDownBy = scale;
  sender.setParameters(params).catch((err) => console.warn("could not scale the video:", err));
}

function onMessage(event) {
  let msg;
  try { msg = JSON.parse(event.data); } catch { return; }
  if (voice.handle(msg) || watch.handle(msg)) return;
  taskPanel.onMessage(msg, send);
  if (msg.type === "guidance") {
    window.streamAssist.last = msg;
    showError("");
    showGuidance(msg);
  }
  else if (msg.type === "partial") showPartial(msg);
  else if (msg.type === "speech") onSpeech(msg);
  else if (msg.type === "error") {
    showError((msg.message || msg.code) + (msg.retrying ? " (trying again)" : ""));
    if (msg.code === "replaced") replaced();
  }
  else if (msg.type === "status") {
    window.streamAssist.session = msg.session;
    fitVideoToServer(msg.frame_max_edge);
    if (msg.state === "ready") connected(msg);
    showSettings(msg);
    if (msg.state === "closing") setState("server closing");
    else setState(msg.paused ? "paused" : msg.quiet ? "live, quiet" : "live");
  }
}

// The controls show the server's settings, whoever changed them (this page, a spoken command, a resumed session).
function showSettings(msg) {
  const set = (el, value) => { if (value !== undefined && document.activeElement !== el) el.value = value; };
  set(ui.preset, msg.preset);
  set(ui.task, msg.task);
  set(ui.interval, msg.interval_s);
  ui.customWrap.hidden = ui.preset.value !== "custom";
  if (msg.recording !== undefined) document.getElementById("record").checked = msg.recording !== null;
  if (typeof msg.paused === "boolean") {
    paused = msg.paused;
    ui.pause.textContent = paused ? "Resume" : "Pause";
  }
}

// A reloaded page shows the guidance its resumed session last gave, without saying it again.
function showRecent(recent) {
  if (ui.history.dataset.current || !recent || !recent.length) return;
  for (const text of recent.slice(0, -1)) {
    const li = document.createElement("li");
    li.textContent = text;
    ui.history.prepend(li);
  }
  ui.history.dataset.current = ui.guidance.textContent = recent[recent.length - 1];
  speech.last = norm(recent[recent.length - 1]);
}

window.streamAssist.handle = onMessage;

// Browser and server clocks differ: estimate the offset NTP-style over an unordered, no-retransmit
// channel, trusting the samples with the lowest round trip. offset = server clock − browser clock.
const clock = { samples: [], offset: null, uncertainty: null };
window.streamAssist.clock = clock;
const nowMs = () => performance.timeOrigin + performance.now();

function onClockMessage(event) {
  const t3 = nowMs();
  let m;
  try { m = JSON.parse(event.data); } catch { return; }
  if (m.type !== "pong") return;
  unansweredSince = null;
  const rtt = (t3 - m.t0) - (m.t2 - m.t1);
  clock.samples.push({ rtt, offset: ((m.t1 - m.t0) + (m.t2 - t3)) / 2 });
  clock.samples.sort((a, b) => a.rtt - b.rtt);
  clock.samples.length = Math.min(clock.samples.length, 8);
  clock.offset = clock.samples[0].offset;
  clock.uncertainty = clock.samples[0].rtt / 2;  // the offset is exact to within half the round trip
}

// The pings double as a heartbeat: a silent drop (a Wi-Fi handover) reaches ICE's connection state only after
// about 6 s, pings unanswered for LIVENESS_MS tell sooner. Measured from the oldest unanswered ping, so timers
// slowed in a hidden tab cannot pass for silence.
const LIVENESS_MS = 1500;
let unansweredSince = null;

function startClock(peer) {
  const ch = peer.createDataChannel("clock", { ordered: false, maxRetransmits: 0 });
  ch.onmessage = onClockMessage;
  unansweredSince = null;
  let sent = 0;
  const ping = () => {
    if (unansweredSince !== null && performance.now() - unansweredSince > LIVENESS_MS) return lost();
    if (ch.readyState === "open") {
      ch.send(JSON.stringify({ type: "ping", t0: nowMs() }));
      sent += 1;
      if (unansweredSince === null) unansweredSince = performance.now();
    }
    clockTimer = setTimeout(ping, sent < 10 ? 200 : 500);  // a quick first estimate, then fresh and a heartbeat
  };
  ch.onopen = ping;
}

// What the person asks for while the page is reconnecting is sent once the session is back (after its state).
const pending = [];

function send(obj) {
  if (channel && channel.readyState === "open") channel.send(JSON.stringify(obj));
  else if (live && pending.push(obj) > 10) pending.shift();
}

function settingsMessage() {
  const interval = Math.min(600, Math.max(0, Number(ui.interval.value) || 0));
  const msg = { type: "settings", preset: ui.preset.value, task: ui.task.value, interval_s: interval };
  if (ui.preset.value === "custom") msg.prompt = ui.custom.value;
  return msg;
}

async function listCameras() {
  const devices = await navigator.mediaDevices.enumerateDevices();
  const current = ui.camera.value;
  ui.camera.length = 2;  // keep the default and the test pattern
  for (const d of devices.filter((d) => d.kind === "videoinput")) {
    const opt = document.createElement("option");
    opt.value = d.deviceId;
    opt.textContent = d.label || `Camera ${ui.camera.length}`;
    ui.camera.append(opt);
  }
  ui.camera.value = current;
}

function waitForIceGathering(peer) {
  if (peer.iceGatheringState === "complete") return Promise.resolve();
  return new Promise((resolve) => {
    const done = () => { if (peer.iceGatheringState === "complete") resolve(); };
    peer.addEventListener("icegatheringstatechange", done);
    setTimeout(resolve, 3000);  // send what we have; host candidates come first
  });
}

// Start is the one gesture: it asks for the camera once; everything after it, reconnects included, needs no tap.
async function start() {
  showError("");
  Object.assign(window.streamAssist, { startedAt: performance.now(), firstGuidanceAt: null, last: null });
  ui.start.disabled = true;
  setState("starting");
  try {
    const video = ui.camera.value && ui.camera.value !== "pattern"
      ? { deviceId: { exact: ui.camera.value } }
      : { facingMode: { ideal: "environment" }, width: { ideal: 1280 }, height: { ideal: 720 } };
    stream = watch.active() ? new MediaStream()  // watching the server's own camera: no video from here
      : ui.camera.value === "pattern" ? patternStream()
      : await navigator.mediaDevices.getUserMedia({ video, audio: false });
    if (watch.active()) watch.play(TOKEN);
    else ui.preview.srcObject = stream;
    listCameras().catch(() => {});
    await voice.open(send);  // the microphone, asked once with the camera; each connection then carries it
  } catch (err) {
    showError(String(err.message || err));
    stop();
    return;
  } finally {
    ui.start.disabled = false;
  }
  live = true;
  keepAwake();
  ui.start.textContent = "Stop";
  ui.pause.disabled = false;
  await connect().catch(connectFailed);
}

// One peer connection for the stream the page already has, offered with the resume token.
async function connect() {
  const signal = AbortSignal.timeout(CONNECT_TIMEOUT_MS);  // a server that accepts but never answers is away too
  const ice = await (await fetch("/ice", { headers: authHeaders, signal })).json();
  if (ice.error) throw new ServerRefused(ice.error);
  if (!live) return;  // stopped while waiting
  const peer = pc = new RTCPeerConnection({ iceServers: ice.iceServers });
  reconnect.deadline = setTimeout(() => { if (peer === pc) lost(); }, CONNECT_TIMEOUT_MS);  // ICE may never connect
  const ch = channel = peer.createDataChannel("guidance");
  ch.onmessage = onMessage;
  ch.onclose = () => { if (ch === channel) lost(); };
  startClock(peer);
  dashboard.start(peer);
  for (const track of stream.getVideoTracks()) peer.addTransceiver(track, { direction: "sendonly", streams: [stream] });
  voice.attach(peer);
  peer.onconnectionstatechange = () => {
    if (peer === pc && ["failed", "disconnected"].includes(peer.connectionState)) lost();
  };
  await peer.setLocalDescription(await peer.createOffer());
  await waitForIceGathering(peer);
  const res = await fetch("/offer", {
    method: "POST",
    headers: { "Content-Type": "application/json", ...authHeaders },
    body: JSON.stringify({ sdp: peer.localDescription.sdp, type: peer.localDescription.type,
                           ...(resumeToken() ? { resume: resumeToken() } : {}) }),
    signal,
  });
  const answer = await res.json();
  // 503 (full) and 5xx may pass; any other refusal (a bad token, a bad offer) will not, so it ends the session
  if (!res.ok) throw (res.status >= 500 ? new Error(answer.error) : new ServerRefused(answer.error || res.status));
  if (peer !== pc) return;  // stopped, or replaced by a newer attempt, while waiting
  localStorage.setItem(RESUME_KEY, answer.resume_token);
  await peer.setRemoteDescription(answer);
  setState(reconnect.lostAt === null ? "connecting" : "reconnecting…");
}

class ServerRefused extends Error {}

// Reconnecting: aiortc has no ICE restart, so a dropped connection is replaced by a new offer on a new
// RTCPeerConnection, with the same camera stream and resume token; the server gives the session's state back.
const BACKOFF_S = [0.25, 0.5, 1, 2, 4];
const CONNECT_TIMEOUT_MS = 10000;  // offer to status: ready; longer means this connection will not come up
const reconnect = { timer: null, attempt: 0, lostAt: null, deadline: null };
// Read by tests and benchmarks: {ms, attempts, resumed} per reconnect, and the reconnect now under way.
Object.assign(window.streamAssist, { reconnects: [], reconnect });

function closePeer() {
  dashboard.stop();
  clearTimeout(clockTimer);
  clearTimeout(reconnect.deadline);
  const [peer, ch] = [pc, channel];
  pc = channel = null;  // first, so that the closing peer's events are ignored
  if (ch) ch.close();
  if (peer) peer.close();
}

function lost() {
  if (!live || reconnect.timer !== null) return;
  closePeer();
  if (reconnect.lostAt === null) reconnect.lostAt = performance.now();
  setState("reconnecting…");
  const delay = BACKOFF_S[Math.min(reconnect.attempt, BACKOFF_S.length - 1)];
  reconnect.attempt += 1;
  reconnect.timer = setTimeout(() => {
    reconnect.timer = null;
    connect().catch(connectFailed);
  }, delay * 1000);
}

function connectFailed(err) {
  if (!(err instanceof ServerRefused)) return lost();  // the server is restarting or out of reach: try again
  showError(String(err.message));
  stop();
}

// status: ready — the server's state wins when it kept one; after a server restart the page offers its own.
function connected(msg) {
  clearTimeout(reconnect.deadline);
  if (msg.resumed) showRecent(msg.recent);
  else { send(settingsMessage()); if (paused) send({ type: "pause" }); }
  for (const queued of pending.splice(0)) send(queued);
  if (reconnect.lostAt !== null) {
    window.streamAssist.reconnects.push({ ms: performance.now() - reconnect.lostAt, attempts: reconnect.attempt,
                                          resumed: msg.resumed });
  }
  Object.assign(reconnect, { attempt: 0, lostAt: null });
}

// The same person connected again elsewhere (another tab, another device): this page steps back instead of
// taking the session back, which would make the two fight.
function replaced() {
  stop();
  setState("continued elsewhere");
}

// Screen Wake Lock while live; the browser releases it whenever the page is hidden, so it is asked for again
// when the page is visible. Where unsupported or refused the page works as before, the screen may just sleep.
let wakeLock = null;

async function keepAwake() {
  if (!live || !("wakeLock" in navigator) || document.visibilityState !== "visible") return;
  if (wakeLock && !wakeLock.released) return;
  try {
    wakeLock = window.streamAssist.wakeLock = await navigator.wakeLock.request("screen");
  } catch (err) {
    console.warn("screen wake lock refused:", err);
  }
}

document.addEventListener("visibilitychange", keepAwake);

// The test-pattern camera: a canvas whose frames carry, in their pixels, the browser-clock time at which
// each was drawn and captured (stream_assist/latency/pixel_clock.py reads it), so the server knows every frame's
// true capture time and the page can check its own latency figures against it.
const PATTERN = { gridW: 32, gridH: 24, cols: 28, timeBits: 48, checkBits: 8 };
let patternTimer = null;

function patternBits(ms) {
  let check = 0;
  for (let i = 0; i < PATTERN.timeBits / 8; i++) check += Math.floor(ms / 256 ** i) % 256;
  check %= 256;
  const bits = [];
  for (let i = PATTERN.timeBits - 1; i >= 0; i--) bits.push(Math.floor(ms / 2 ** i) % 2);
  for (let i = PATTERN.checkBits - 1; i >= 0; i--) bits.push((check >> i) & 1);
  return bits;
}

function drawPixelClock(ctx, width, height, ms) {
  const cw = width / PATTERN.gridW, ch = height / PATTERN.gridH;
  patternBits(ms).forEach((bit, i) => {
    const row = Math.floor(i / PATTERN.cols), col = i % PATTERN.cols;
    const x0 = Math.round((col + 1) * cw), y0 = Math.round((row + 1) * ch);
    ctx.fillStyle = bit ? "#fff" : "#000";
    ctx.fillRect(x0, y0, Math.round((col + 2) * cw) - x0, Math.round((row + 2) * ch) - y0);
  });
}

function patternStream() {
  const canvas = document.createElement("canvas");
  canvas.width = 640;
  canvas.height = 480;
  const ctx = canvas.getContext("2d");
  const stream = canvas.captureStream(0);  // frames only when requested: capture time = drawing time
  const track = stream.getVideoTracks()[0];
  let n = 0;
  patternTimer = setInterval(() => {
    n += 1;
    ctx.fillStyle = "#567";
    ctx.fillRect(0, 0, canvas.width, canvas.height);
    ctx.fillStyle = `hsl(${(n * 7) % 360} 70% 50%)`;  // moving content, so every frame is news
    ctx.fillRect((n * 9) % (canvas.width - 120), 200 + (n * 5) % 200, 120, 80);
    drawPixelClock(ctx, canvas.width, canvas.height, Math.round(nowMs()));
    track.requestFrame();
  }, 1000 / 30);
  return stream;
}

function stop() {
  live = false;
  pending.length = 0;
  clearTimeout(reconnect.timer);
  Object.assign(reconnect, { timer: null, attempt: 0, lostAt: null });
  if (wakeLock) wakeLock.release().catch(() => {});
  wakeLock = null;
  closePeer();
  voice.stop();
  clearInterval(patternTimer);
  if (stream) stream.getTracks().forEach((t) => t.stop());
  stream = null;
  ui.preview.srcObject = null;
  watch.stop();
  ui.start.textContent = "Start";
  ui.pause.disabled = true;
  if ("speechSynthesis" in window) speechSynthesis.cancel();
  setState("idle");
}

ui.start.onclick = () => (live ? stop() : start());
watch.probe(authHeaders);
ui.pause.onclick = () => {
  paused = !paused;
  ui.pause.textContent = paused ? "Resume" : "Pause";
  send({ type: paused ? "pause" : "resume" });
};
ui.preset.onchange = () => { ui.customWrap.hidden = ui.preset.value !== "custom"; };
ui.speak.onchange = () => voice.mute(!ui.speak.checked);  // the server's voice too: shown, not heard
ui.apply.onclick = () => send(settingsMessage());
document.getElementById("record").onchange = (event) => send({ type: "record", on: event.target.checked });

// "Show what the model sees": the newest enhanced frame, refreshed once a second beside the preview.
const enhancedView = document.getElementById("enhanced");
let enhancedTimer = null;
document.getElementById("show-enhanced").onchange = (event) => {
  clearInterval(enhancedTimer);
  enhancedView.hidden = !event.target.checked;
  if (!event.target.checked) return;
  const refresh = () => {
    const session = window.streamAssist.session;
    const token = TOKEN ? `&token=${encodeURIComponent(TOKEN)}` : "";
    if (pc && session) enhancedView.src = `/sessions/${session}/enhanced.jpg?t=${Date.now()}${token}`;
  };
  refresh();
  enhancedTimer = setInterval(refresh, 1000);
};
document.getElementById("dashboard").addEventListener("toggle", () => dashboard.redraw());
ui.camera.onchange = () => { if (live) { stop(); start(); } };
