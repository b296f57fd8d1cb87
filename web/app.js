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
let stream = null;
let paused = false;
let lastSpoken = "";
// Read by tests and `stream-assist bench page`: when Start was pressed, the first and latest guidance.
window.streamAssist = { startedAt: null, firstGuidanceAt: null, last: null };

function setState(text) { ui.state.textContent = text; }

function showError(text) {
  ui.error.textContent = text;
  ui.error.hidden = !text;
}

function speak(text) {
  if (!ui.speak.checked || !("speechSynthesis" in window)) return;
  const normalized = text.trim().toLowerCase();
  if (!normalized || normalized === lastSpoken) return;  // say only what is new
  lastSpoken = normalized;
  speechSynthesis.cancel();  // fresh guidance replaces stale speech
  speechSynthesis.speak(new SpeechSynthesisUtterance(text));
}

function showGuidance(msg) {
  const text = msg.text || "";
  if (!text) return;
  if (ui.guidance.textContent && ui.guidance.dataset.frame) {
    const li = document.createElement("li");
    li.textContent = ui.guidance.textContent;
    ui.history.prepend(li);
    while (ui.history.children.length > HISTORY_LENGTH) ui.history.lastChild.remove();
  }
  ui.guidance.textContent = text;
  ui.guidance.dataset.frame = String(msg.frame_id);
  speak(text);
  const c = msg.counters || {};
  const t = msg.timeline || {};
  const model = t.done && t.inference_start ? Math.round(t.done - t.inference_start) : "?";
  const age = t.sent && t.decoded ? Math.round(t.sent - t.decoded) : "?";
  ui.stats.textContent = `frame ${msg.frame_id} · model ${model} ms · decoded→sent ${age} ms · ` +
    `received ${c.received} · dropped ${c.dropped} · processed ${c.processed}`;
}

function onMessage(event) {
  let msg;
  try { msg = JSON.parse(event.data); } catch { return; }
  if (msg.type === "guidance") {
    const probe = window.streamAssist;
    if (probe.firstGuidanceAt === null) probe.firstGuidanceAt = performance.now();
    probe.last = msg;
    showError("");
    showGuidance(msg);
  }
  else if (msg.type === "error") showError(msg.message || msg.code);
  else if (msg.type === "status") {
    if (msg.state === "closing") setState("server closing");
    else setState(msg.paused ? "paused" : "live");
  }
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
