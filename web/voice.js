// stream-assist voice: the microphone on the same peer connection, a level meter and mute, what the server
// heard, barge-in (the server's `voice` speech_start stops the page's speech at once), and the page's own
// speech reported with `speaking` so the server does not take it for the person. When the server has a voice
// (`status` speech_out: "server") it speaks on the same connection's audio track, which the page plays (the
// browser's echo canceller then removes it from the microphone) and shows "speaking". Protocol: docs/protocol.md.
"use strict";

const voice = (() => {
  const el = { level: document.getElementById("mic-level"), heard: document.getElementById("heard"),
               mute: document.getElementById("mute"), speaking: document.getElementById("speaking"),
               out: document.getElementById("voice-out") };
  // Read by tests: the voice messages received, in order, whether the page thinks it is speaking, whether the
  // server speaks (its audio track) and whether that voice is sounding now, and the microphone's processing.
  const probe = { events: [], speaking: 0, quiet: false, serverVoice: false, serverSpeaking: false, playing: false,
                  microphone: null };
  let mic = null;
  let audio = null;
  let meterTimer = null;
  let send = () => {};

  function show(text) { el.heard.textContent = text; }

  // Start's one tap asks for the microphone beside the camera; without one the page works as before. No noise
  // suppression: measured, its artefacts cost the recognisers more than the noise does (whisper clean 100 → 90 %).
  async function open(sendFn) {
    send = sendFn;
    try {
      mic = await navigator.mediaDevices.getUserMedia({
        audio: { echoCancellation: true, noiseSuppression: false, autoGainControl: true } });
    } catch (err) {
      show(`microphone off (${err.name || err}): use the buttons`);
      return;
    }
    probe.microphone = mic.getAudioTracks()[0].getSettings();
    meter(mic);
    el.mute.disabled = false;
    show("listening");
  }

  // Every peer connection (the first and each reconnect's) carries the same microphone on its own transceiver,
  // which also receives the server's voice; without a microphone the page still receives it.
  function attach(peer) {
    if (mic) for (const track of mic.getAudioTracks()) peer.addTransceiver(track, { direction: "sendrecv", streams: [mic] });
    else peer.addTransceiver("audio", { direction: "recvonly" });
    peer.addEventListener("track", (e) => { if (e.track.kind === "audio") play(e.track); });
  }

  // The server's voice: played as soon as it arrives (Start was the gesture autoplay needs).
  function play(track) {
    el.out.srcObject = new MediaStream([track]);
    el.out.play().then(() => { probe.playing = true; })
      .catch((err) => show(`sound blocked (${err.name || err}): guidance is shown only`));
  }

  function mute(muted) { el.out.muted = muted; }

  // The server's `speech` messages: its voice started or stopped (a barge-in, a pause, a newer guidance).
  function onSpeech(msg) {
    probe.events.push(msg);
    if (msg.state === "start") probe.serverSpeaking = true;
    else if (msg.state === "end") probe.serverSpeaking = false;
    el.speaking.hidden = !probe.serverSpeaking;
  }

  function meter(stream) {
    audio = new AudioContext();
    audio.resume().catch(() => {});  // Start was the gesture; some browsers still create it suspended
    const analyser = audio.createAnalyser();
    analyser.fftSize = 512;
    audio.createMediaStreamSource(stream).connect(analyser);
    const buf = new Float32Array(analyser.fftSize);
    meterTimer = setInterval(() => {
      analyser.getFloatTimeDomainData(buf);
      const rms = Math.sqrt(buf.reduce((s, v) => s + v * v, 0) / buf.length);
      el.level.value = Math.min(1, rms * 5);
    }, 100);
  }

  function stop() {
    clearInterval(meterTimer);
    if (audio) audio.close();
    if (mic) mic.getTracks().forEach((t) => t.stop());
    mic = audio = null;
    el.level.value = 0;
    el.mute.disabled = true;
    el.mute.textContent = "Mute";
    probe.speaking = 0;
    show("microphone off");
  }

  // Muted, the track sends silence: the server hears nothing, the connection stays as it is.
  function toggleMute() {
    if (!mic) return;
    const track = mic.getAudioTracks()[0];
    track.enabled = !track.enabled;
    el.mute.textContent = track.enabled ? "Mute" : "Unmute";
    show(track.enabled ? "listening" : "muted");
  }

  function speakingChanged(delta, text) {
    const was = probe.speaking > 0;
    probe.speaking = Math.max(0, probe.speaking + delta);
    if (was !== probe.speaking > 0) send({ type: "speaking", on: probe.speaking > 0, ...(text ? { text } : {}) });
  }

  // Every utterance the page says is reported (its text too, so the server can tell its echo).
  function utterance(u) {
    let ended = false;
    const end = () => { if (!ended) { ended = true; speakingChanged(-1); } };
    u.addEventListener("end", end);
    u.addEventListener("error", end);
    speakingChanged(+1, u.text);
  }

  function bargeIn() {
    if (!probe.serverVoice && "speechSynthesis" in window) speechSynthesis.cancel();
    if (probe.speaking) { probe.speaking = 0; send({ type: "speaking", on: false }); }
  }

  function sayNow(text) {
    if (probe.quiet || probe.serverVoice || !("speechSynthesis" in window)) return;
    const u = new SpeechSynthesisUtterance(text);
    utterance(u);
    speechSynthesis.speak(u);
  }

  // Returns true for messages that are voice's alone; status is also the page's, so it returns false.
  function handle(msg) {
    if (msg.type === "status") {
      if (msg.speech_out) probe.serverVoice = msg.speech_out === "server";
      probe.quiet = Boolean(msg.quiet);
      if (probe.quiet) bargeIn();
      return false;
    }
    if (!["heard", "voice", "help"].includes(msg.type)) return false;
    probe.events.push(msg);
    if (msg.type === "voice") {
      if (msg.state === "speech_start") { bargeIn(); show("hearing you…"); }
    } else if (msg.type === "help") {
      show(msg.text);
      sayNow(msg.text);
    } else if (msg.command === "task" && msg.accepted) {
      document.getElementById("task").value = msg.task;  // typing stays possible: correct it and press Apply
      show(`heard: my task is "${msg.task}" — say yes or no`);
      sayNow(`Your task: ${msg.task}. Say yes or no.`);
    } else {
      show(msg.accepted ? `heard: ${msg.text}` : `heard: ${msg.text || "…"} (${msg.reason})`);
    }
    return true;
  }

  el.mute.onclick = toggleMute;
  return { open, attach, stop, handle, utterance, onSpeech, mute, probe };
})();
