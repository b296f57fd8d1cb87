// The latency dashboard: where every millisecond between the camera and the guidance went.
// Fed by app.js with each guidance (its server timeline and the page's glass-to-guidance figures),
// plus the browser's WebRTC stats and the server's /stats. Charts by uPlot (web/vendor/uplot, MIT).
"use strict";

const dashboard = (() => {
  const WINDOW = 100;  // guidance messages kept for the percentiles and the chart
  // Segments of one frame's life, in order; each is [label, colour, ms from a guidance + its latency record].
  const SEGMENTS = [
    ["camera→server", "#8d99ae", (m, l) => l.capture_ms !== null && l.clock_offset !== null
      ? m.timeline.decoded - l.clock_offset - l.capture_ms : null],
    ["sample", "#90be6d", (m) => m.stages_ms.sampled ?? 0],
    ["enhance", "#43aa8b", (m) => m.stages_ms.enhanced ?? 0],
    ["slot wait", "#f9c74f", (m) => (m.stages_ms.queued ?? 0) + (m.stages_ms.taken ?? 0) + (m.stages_ms.inference_start ?? 0)],
    ["prefill", "#f8961e", (m) => m.stages_ms.first_token ?? 0],
    ["generate", "#f3722c", (m) => m.stages_ms.done ?? 0],
    ["send+show", "#577590", (m, l) => l.clock_offset !== null ? l.shown_at + l.clock_offset - m.timeline.done : null],
  ];
  const rows = [];
  let chart = null;
  let last = null;
  let peer = null;
  let timer = null;

  const el = (id) => document.getElementById(id);
  const fmt = (v) => (v === null || v === undefined || Number.isNaN(v) ? "–" : Math.round(v).toString());

  function percentile(values, p) {
    const v = values.filter((x) => x !== null && !Number.isNaN(x)).sort((a, b) => a - b);
    if (!v.length) return null;
    return v[Math.min(v.length - 1, Math.floor((p / 100) * v.length))];
  }

  function makeChart() {
    const box = el("stage-chart");
    // Stacked areas: each series is the running total up to its segment, drawn from the top one down.
    const series = [{ label: "guidance" }];
    [...SEGMENTS].reverse().forEach(([label, colour]) =>
      series.push({ label, stroke: colour, fill: colour + "cc", points: { show: false } }));
    chart = new uPlot({
      width: Math.max(280, box.clientWidth), height: 220, series,
      scales: { x: { time: false } },
      axes: [{ label: "guidance #" }, { label: "ms (stacked)", size: 60 }],
      legend: { live: false },
    }, [[], ...SEGMENTS.map(() => [])], box);
    window.addEventListener("resize", () => chart.setSize({ width: Math.max(280, box.clientWidth), height: 220 }));
  }

  function redraw() {
    if (!chart) makeChart();
    const xs = rows.map((r) => r.n);
    const stacked = [];
    let below = rows.map(() => 0);
    SEGMENTS.forEach((_, i) => {
      const line = rows.map((r, j) => below[j] + (r.segments[i] ?? 0));
      stacked.push(line);
      below = line;
    });
    chart.setData([xs, ...stacked.reverse()]);
  }

  function table() {
    const figures = [
      ["camera → screen", rows.map((r) => r.lat.screen_ms)],
      ["camera → speech", rows.map((r) => r.lat.speech_ms)],
      ["frame age at inference", rows.map((r) => r.lat.age_at_inference_ms)],
      ...SEGMENTS.map(([label], i) => [label, rows.map((r) => r.segments[i])]),
    ];
    const unc = last && last.lat.clock_uncertainty_ms !== null ? ` (clock ± ${Math.ceil(last.lat.clock_uncertainty_ms)} ms)` : "";
    el("pct").innerHTML = `<tr><th>ms${unc}</th><th>p50</th><th>p95</th><th>p99</th></tr>` + figures.map(([name, v]) =>
      `<tr><td>${name}</td><td>${fmt(percentile(v, 50))}</td><td>${fmt(percentile(v, 95))}</td><td>${fmt(percentile(v, 99))}</td></tr>`).join("");
  }

  function rates(msg) {
    const c = msg.counters;
    const now = performance.now();
    if (last) {
      const dt = (now - last.at) / 1000;
      const rate = (k) => ((c[k] - last.counters[k]) / dt).toFixed(1);
      const tok = msg.tokens || {}, ms = msg.model_ms || {};
      const prefillTokens = (tok.prompt ?? 0) - (tok.reused ?? 0);
      const prefillMs = (ms.text_prefill ?? 0) + (ms.image_prefill ?? 0);
      el("rates").textContent = `per second: received ${rate("received")} · sampled ${rate("sampled")} · ` +
        `unchanged ${rate("unchanged")} · dropped ${rate("dropped")} · processed ${rate("processed")} frames · ` +
        `prompt ${prefillMs ? Math.round(prefillTokens / prefillMs * 1000) : "–"} tok/s · ` +
        `generation ${ms.per_token ? Math.round(1000 / ms.per_token) : "–"} tok/s · ` +
        (msg.engine ? `remote ${msg.engine}: request → first token ${fmt(ms.request_to_first_token)} ms`
                    : `image encode ${fmt(ms.encode)} ms ×${tok.image_encodes ?? "?"}`);
    }
    return { at: now, counters: c };
  }

  async function poll() {
    try {
      const s = await (await fetch("/stats", { headers: window.streamAssist.authHeaders })).json();
      const gpu = s.gpu ? ` · GPU ${s.gpu.utilization_percent}% · ${s.gpu.memory_used_mib} MiB` : " · no GPU";
      const eps = s.endpoints || [];
      const remote = eps.length
        ? ` · endpoints ${eps.filter((e) => e.healthy).length}/${eps.length} up, ` +
          `${eps.reduce((n, e) => n + e.in_flight, 0)} requests in flight`
        : "";
      const src = s.source ? ` · camera ${s.source.state}, ${s.source.reconnects} reconnects` +
        (s.source.state !== "live" && s.source.error ? ` (${s.source.error})` : "") : "";
      el("server").textContent = `server: CPU ${s.cpu_percent.toFixed(0)}% of ${s.cpu_cores} cores${gpu} · ` +
        `sessions ${s.sessions} · worker ${s.worker_busy ? `busy (${s.worker_in_progress})` : "idle"}${remote}${src}`;
    } catch { /* the server may be going away */ }
    if (!peer) return;
    const stats = await peer.getStats();
    const out = {}, remote = {}, codecs = {};
    stats.forEach((r) => {
      if (r.type === "outbound-rtp" && r.kind === "video") Object.assign(out, r);
      if (r.type === "remote-inbound-rtp" && r.kind === "video") Object.assign(remote, r);
      if (r.type === "codec") codecs[r.id] = r.mimeType;
    });
    const rtt = remote.roundTripTime !== undefined ? `${(remote.roundTripTime * 1000).toFixed(1)} ms` : "–";
    const jitter = remote.jitter !== undefined ? `${(remote.jitter * 1000).toFixed(1)} ms` : "–";
    el("webrtc").textContent = `WebRTC: ${codecs[out.codecId] || "?"} ${out.frameWidth ?? "?"}×${out.frameHeight ?? "?"} ` +
      `@ ${out.framesPerSecond ?? "?"} fps · encoded ${out.framesEncoded ?? "?"} · sent ${out.framesSent ?? "?"} · ` +
      `round trip ${rtt} · jitter ${jitter} · limited by ${out.qualityLimitationReason ?? "?"}`;
  }

  return {
    start(pc) {
      peer = pc;
      clearInterval(timer);
      timer = setInterval(poll, 2000);
      poll();
    },
    stop() { peer = null; clearInterval(timer); },
    onGuidance(msg, lat) {
      if (!msg.timeline || !msg.stages_ms) return;
      const row = { n: rows.length ? rows[rows.length - 1].n + 1 : 1, lat, segments: SEGMENTS.map(([, , f]) => f(msg, lat)) };
      rows.push(row);
      if (rows.length > WINDOW) rows.shift();
      last = { ...rates(msg), lat };
      table();
      if (typeof uPlot !== "undefined" && el("dashboard").open) redraw();
    },
    redraw() { if (rows.length && el("dashboard").open) redraw(); },
    refresh() { if (rows.length) table(); },  // a figure of a guidance already shown came in later (speech)
    rows,
  };
})();
window.dashboard = dashboard;
