// stream-assist page: camera → WebRTC → server; guidance ← data channel, shown and spoken.
// Protocol: docs/protocol.md.
"use strict";

const $ = (id) => document.getElementById(id);
const ui = {
  start: $("start"), pause: $("pause"), camera: $("camera"), speak: $("speak"), preset: $("preset"),
  task: $("task"), custom: $("custom"), customWrap: $("custom-wrap"), apply: $("apply"),
  preview: $("preview"), guidance: $("guidance"), error: $("error"), history: $("history"),
  stats: $("stats"), state: $("state"),
};
const HISTORY_LENGTH = 8;

let pc = null;
let channel = null;
let clockTimer = null;
let stream = null;
let paused = false;
// Read by tests and `stream-assist bench page`: when Start was pressed, the first and latest guidance.
// `handle` takes a data-channel event, so tests can drive the page's protocol handling directly.
window.streamAssist = { startedAt: null, firstGuidanceAt: null, firstText: null, last: null, handle: null };

function setState(text) { ui.state.textContent = text; }

function showError(text) {
  ui.error.textContent = text;
  ui.error.hidden = !text;
}

// Speech: say each new guidance once. The first complete sentence is said while the rest is still
// being generated; the rest follows when the guidance is complete. Repeats of the last guidance are silent.
const speech = { frame: null, said: "", last: "" };

function norm(text) { return text.trim().replace(/\s+/g, " ").toLowerCase(); }

function say(text) {
  if (!ui.speak.checked || !("speechSynthesis" in window) || !text.trim()) return;
  speechSynthesis.speak(new SpeechSynthesisUtterance(text.trim()));
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
  say(sentence);
}

function speakFinal(frame, text) {
  if (norm(text) === speech.last) return;  // say only what is new
  if (speech.frame === frame) {
    say(text.slice(speech.said.length));  // the first sentence is already being said
  } else {
    if ("speechSynthesis" in window) speechSynthesis.cancel();
    say(text);
  }
  speech.frame = frame;
  speech.last = norm(text);
}

function showPartial(msg) {
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
  speakFinal(msg.frame_id, text);
  const c = msg.counters || {};
  const t = msg.timeline || {};
  const model = t.done && t.inference_start ? Math.round(t.done - t.inference_start) : "?";
  const age = t.sent && t.decoded ? Math.round(t.sent - t.decoded) : "?";
  const shownAt = nowMs();
  const clockKnown = clock.offset !== null && t.decoded;
  const onScreen = clockKnown ? `decoded→on screen ${Math.round(shownAt + clock.offset - t.decoded)}` +
    ` ± ${Math.ceil(clock.uncertainty)} ms · ` : "";
  ui.stats.textContent = `frame ${msg.frame_id} · model ${model} ms · decoded→sent ${age} ms · ${onScreen}` +
    `received ${c.received} · unchanged ${c.unchanged} · dropped ${c.dropped} · processed ${c.processed}`;
}

function onMessage(event) {
  let msg;
  try { msg = JSON.parse(event.data); } catch { return; }
  if (msg.type === "guidance") {
    window.streamAssist.last = msg;
    showError("");
    showGuidance(msg);
  }
  else if (msg.type === "partial") showPartial(msg);
  else if (msg.type === "error") showError(msg.message || msg.code);
  else if (msg.type === "status") {
    if (msg.state === "closing") setState("server closing");
    else setState(msg.paused ? "paused" : "live");
  }
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
  const rtt = (t3 - m.t0) - (m.t2 - m.t1);
  clock.samples.push({ rtt, offset: ((m.t1 - m.t0) + (m.t2 - t3)) / 2 });
  clock.samples.sort((a, b) => a.rtt - b.rtt);
  clock.samples.length = Math.min(clock.samples.length, 8);
  clock.offset = clock.samples[0].offset;
  clock.uncertainty = clock.samples[0].rtt / 2;  // the offset is exact to within half the round trip
}

function startClock(peer) {
  const ch = peer.createDataChannel("clock", { ordered: false, maxRetransmits: 0 });
  ch.onmessage = onClockMessage;
  let sent = 0;
  const ping = () => {
    if (ch.readyState === "open") { ch.send(JSON.stringify({ type: "ping", t0: nowMs() })); sent += 1; }
    clockTimer = setTimeout(ping, sent < 10 ? 200 : 2000);  // a quick first estimate, then keep it fresh
  };
  ch.onopen = ping;
}

function send(obj) {
  if (channel && channel.readyState === "open") channel.send(JSON.stringify(obj));
}

function settingsMessage() {
  const msg = { type: "settings", preset: ui.preset.value, task: ui.task.value };
  if (ui.preset.value === "custom") msg.prompt = ui.custom.value;
  return msg;
}

async function listCameras() {
  const devices = await navigator.mediaDevices.enumerateDevices();
  const current = ui.camera.value;
  ui.camera.length = 1;
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

async function start() {
  showError("");
  Object.assign(window.streamAssist, { startedAt: performance.now(), firstGuidanceAt: null, last: null });
  ui.start.disabled = true;
  setState("starting");
  try {
    const video = ui.camera.value
      ? { deviceId: { exact: ui.camera.value } }
      : { facingMode: { ideal: "environment" }, width: { ideal: 1280 }, height: { ideal: 720 } };
    stream = await navigator.mediaDevices.getUserMedia({ video, audio: false });
    ui.preview.srcObject = stream;
    listCameras().catch(() => {});

    pc = new RTCPeerConnection({ iceServers: [] });
    channel = pc.createDataChannel("guidance");
    channel.onmessage = onMessage;
    channel.onopen = () => { send(settingsMessage()); if (paused) send({ type: "pause" }); };
    startClock(pc);
    for (const track of stream.getVideoTracks()) pc.addTransceiver(track, { direction: "sendonly", streams: [stream] });
    pc.onconnectionstatechange = () => {
      if (pc && ["failed", "disconnected"].includes(pc.connectionState)) setState("connection " + pc.connectionState);
    };
    await pc.setLocalDescription(await pc.createOffer());
    await waitForIceGathering(pc);
    const res = await fetch("/offer", {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ sdp: pc.localDescription.sdp, type: pc.localDescription.type }),
    });
    const answer = await res.json();
    if (!res.ok) throw new Error(answer.error || `server answered ${res.status}`);
    await pc.setRemoteDescription(answer);
    setState("connecting");
    ui.start.textContent = "Stop";
    ui.pause.disabled = false;
  } catch (err) {
    showError(String(err.message || err));
    stop();
  } finally {
    ui.start.disabled = false;
  }
}

function stop() {
  clearTimeout(clockTimer);
  if (channel) channel.close();
  if (pc) pc.close();
  if (stream) stream.getTracks().forEach((t) => t.stop());
  pc = channel = stream = null;
  ui.preview.srcObject = null;
  ui.start.textContent = "Start";
  ui.pause.disabled = true;
  if ("speechSynthesis" in window) speechSynthesis.cancel();
  setState("idle");
}

ui.start.onclick = () => (pc ? stop() : start());
ui.pause.onclick = () => {
  paused = !paused;
  ui.pause.textContent = paused ? "Resume" : "Pause";
  send({ type: paused ? "pause" : "resume" });
};
ui.preset.onchange = () => { ui.customWrap.hidden = ui.preset.value !== "custom"; };
ui.apply.onclick = () => send(settingsMessage());
ui.camera.onchange = () => { if (pc) { stop(); start(); } };
