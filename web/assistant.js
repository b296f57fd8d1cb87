// The task assistant's panel: the steps with the current one large, progress (3 / 7), back / next / repeat /
// what now (the same messages as the spoken commands), how sure the model is that the step is done, the last warning, a card picker, typed or drafted steps,
// speech per minute with its reasons, and past sessions. Protocol: docs/protocol.md ("Task assistant").
"use strict";

const taskPanel = (() => {
  const el = (id) => document.getElementById(id);
  const state = { title: "", steps: [], step: 0, confidence: 0, spokenAt: [], reasons: {}, send: null };
  const headers = () => window.streamAssist.authHeaders;

  const active = () => state.steps.length > 0 && state.step < state.steps.length;

  function render() {
    const n = state.steps.length;
    el("task-box").hidden = n === 0;
    el("task-title").textContent = state.title;
    el("task-progress").textContent = n ? `${Math.min(state.step + 1, n)} / ${n}` : "";
    const current = state.steps[state.step];
    el("task-current").textContent = current ? current.instruction : n ? "All steps done." : "";
    el("task-confidence-meter").value = state.confidence;
    el("task-confidence").textContent = active() ? `done? ${Math.round(state.confidence * 100)} %` : "";
    el("task-caution").textContent = current && current.caution ? `Careful: ${current.caution}` : "";
    el("task-steps").replaceChildren(...state.steps.map((s, i) => {
      const li = document.createElement("li");
      li.textContent = s.instruction;
      li.className = i < state.step ? "done" : i === state.step ? "current" : "";
      if (i === state.step) li.setAttribute("aria-current", "step");
      return li;
    }));
    window.streamAssist.task = { title: state.title, step: state.step, steps: n };
  }

  function countSpeech(msg) {
    const now = performance.now();
    state.reasons[msg.reason] = (state.reasons[msg.reason] || 0) + 1;
    if (msg.speak) state.spokenAt.push(now);
    state.spokenAt = state.spokenAt.filter((t) => now - t < 60_000);
    const reasons = Object.entries(state.reasons).sort((a, b) => b[1] - a[1]).map(([r, c]) => `${r} ${c}`);
    el("speech-rates").textContent = `speech ${state.spokenAt.length} / min · reasons: ${reasons.join(" · ")}`;
    if (msg.about === "warning") el("task-warning").textContent = msg.text;  // shown even when not said
  }

  function onMessage(msg, send) {
    state.send = send;
    if (msg.type === "task") {
      Object.assign(state, { title: msg.title, steps: msg.steps, step: msg.step });
      el("task-warning").textContent = "";
      render();
    } else if ((msg.type === "status" || msg.type === "guidance") && typeof msg.step === "number") {
      if (msg.steps === 0) state.steps = [];
      if (msg.step !== state.step) el("task-warning").textContent = "";
      state.step = msg.step;
      if (typeof msg.confidence === "number") state.confidence = msg.confidence;
      render();
    }
    if (msg.type === "guidance" && msg.reason) countSpeech(msg);
    if (msg.type === "steps_draft") {
      el("steps-text").value = msg.steps.join("\n");
      el("steps-title").value = msg.task;
      el("steps-note").textContent = msg.steps.length
        ? "Drafted by the model: check and edit the steps, then press Use these steps."
        : "The model gave no usable steps; type them instead.";
    }
  }

  async function loadCards() {
    try {
      const res = await fetch("/tasks", { headers: headers() });
      const cards = (await res.json()).cards || [];
      el("card").replaceChildren(...cards.map((c) => new Option(`${c.title} (${c.steps} steps)`, c.name)));
    } catch (err) {
      console.warn("could not list the task cards:", err);
    }
  }

  async function showHistory() {
    const res = await fetch("/history", { headers: headers() });
    const sessions = (await res.json()).sessions || [];
    el("past-list").replaceChildren(...sessions.map((s) => {
      const li = document.createElement("li");
      const when = new Date(s.started * 1000).toLocaleString();
      const perStep = s.times.map((t) => `${t.step + 1}: ${Math.round(t.seconds)} s`).join(", ");
      li.textContent = `${when} — ${s.title}: step ${Math.min(s.reached + 1, s.steps)} of ${s.steps}` +
        `${s.reached >= s.steps ? " (finished)" : ""}; ${perStep}`;
      return li;
    }));
    if (!sessions.length) el("past-list").textContent = "No past sessions.";
  }

  const send = (msg) => state.send && state.send(msg);
  for (const name of ["back", "next", "repeat", "what_now"]) {
    el(`task-${name}`).onclick = () => send({ type: name });
  }
  el("use-card").onclick = () => send({ type: "settings", card: el("card").value });
  el("use-steps").onclick = () => send({
    type: "settings", task: el("steps-title").value,
    steps: el("steps-text").value.split("\n").map((l) => l.trim()).filter(Boolean),
  });
  el("draft-steps").onclick = () => {
    el("steps-note").textContent = "Asking the model for steps from the next frame…";
    send({ type: "draft", task: el("steps-title").value });
  };
  el("past").addEventListener("toggle", () => { if (el("past").open) showHistory(); });
  el("task-setup").addEventListener("toggle", () => { if (el("task-setup").open) loadCards(); });
  return { active, onMessage };
})();
