/* dnaagent dashboard: pages drawn from the agent's JSON API, polled every 5 s.
 *
 * Safety: every value from the agent is inserted with textContent (el()),
 * never parsed as HTML. Optional parts (predictions, traced topology) are looked
 * up in the route list of GET /api/v1 before they are asked for, so that an
 * agent without them shows "not available" and the browser logs no error.
 */
"use strict";

(function () {
  const API = "/api/v1";
  const POLL_MS = 5000;
  const C = window.DnaCharts;
  const PAGES = ["overview", "peers", "tests", "notifications", "predictions", "topology"];

  // Optional components: their page is drawn only when the agent serves
  // their routes (GET /api/v1/dashboard lists routes and running components).
  const OPTIONAL = {
    predictions: { title: "Predictions (XBAC)", component: "xbac", match: /^\/api\/v1\/(xbac|predict)/, what: "RTT prediction (XBAC)" },
    topology: { title: "Traced topology (DTS)", component: "dts", match: /^\/api\/v1\/(dts|trace|topology)/, what: "Decentralized tracing (DTS)" },
  };

  const state = {
    page: null,
    timer: null,
    routes: [],
    components: {},
    status: null,
    prediction: null,
    campaign: null,
    selectedTest: null,
    overlaySamples: [],
    query: {},
    busy: false,
    again: false,
  };

  /* ------------------------------------------------------------ helpers */

  function el(tag, attrs, ...children) {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === undefined || v === null || v === false) continue;
      if (k === "class") e.className = String(v);
      else if (k.startsWith("on") && typeof v === "function") e.addEventListener(k.slice(2), v);
      else e.setAttribute(k, String(v));
    }
    for (const c of children.flat()) {
      if (c === undefined || c === null || c === false) continue;
      e.appendChild(c instanceof Node ? c : document.createTextNode(String(c)));
    }
    return e;
  }

  function clear(node) {
    while (node.firstChild) node.removeChild(node.firstChild);
  }

  class HttpError extends Error {
    constructor(status, message) {
      super(message);
      this.status = status;
    }
  }

  async function getJSON(path, payload) {
    const init = { headers: { Accept: "application/json" }, cache: "no-store" };
    if (payload !== undefined) {
      init.method = "POST";
      init.headers["Content-Type"] = "application/json";
      init.body = JSON.stringify(payload);
    }
    const r = await fetch(path, init);
    let body = null;
    try {
      body = await r.json();
    } catch (e) {
      body = null;
    }
    if (!r.ok) throw new HttpError(r.status, (body && body.error) || `HTTP ${r.status}`);
    return body;
  }

  function fmtDuration(s) {
    if (typeof s !== "number" || !Number.isFinite(s)) return "";
    s = Math.max(0, Math.floor(s));
    const d = Math.floor(s / 86400), h = Math.floor((s % 86400) / 3600), m = Math.floor((s % 3600) / 60);
    if (d) return `${d} d ${h} h`;
    if (h) return `${h} h ${m} min`;
    if (m) return `${m} min ${s % 60} s`;
    return `${s} s`;
  }

  function fmtTime(t) {
    if (typeof t !== "number" || !Number.isFinite(t)) return "";
    return new Date(t * 1000).toLocaleString();
  }

  function fmtMs(seconds) {
    if (typeof seconds !== "number" || !Number.isFinite(seconds)) return "";
    return (seconds * 1000).toFixed(seconds < 0.01 ? 2 : 1) + " ms";
  }

  function badge(status) {
    return el("span", { class: "badge " + String(status).replace(/[^a-z]/g, "") }, status);
  }

  function card(label, value, small) {
    return el("div", { class: "card" }, el("div", { class: "label" }, label), el("div", { class: "value" + (small ? " small" : "") }, value));
  }

  function table(columns, rows, opts) {
    const o = opts || {};
    const head = el("tr", {}, columns.map((c) => el("th", { class: c.num ? "num" : "" }, c.label)));
    const body = rows.map((row) => {
      const tr = el("tr", { class: o.rowClass ? o.rowClass(row) : "" },
        columns.map((c) => {
          const v = c.value(row);
          return el("td", { class: (c.num ? "num " : "") + (c.mono ? "mono" : "") }, v instanceof Node ? v : v === undefined || v === null ? "" : String(v));
        }));
      if (o.onClick) tr.addEventListener("click", () => o.onClick(row));
      return tr;
    });
    if (rows.length === 0) {
      body.push(el("tr", {}, el("td", { colspan: columns.length, class: "note" }, o.empty || "nothing yet")));
    }
    return el("table", {}, el("thead", {}, head), el("tbody", {}, body));
  }

  function unavailable(what) {
    return el("div", { class: "unavailable" }, `${what} is not available on this agent.`);
  }

  function setBanner(text) {
    const b = document.getElementById("banner");
    if (text) {
      b.textContent = text;
      b.hidden = false;
    } else {
      b.textContent = "";
      b.hidden = true;
    }
  }

  function setLive(ok, text) {
    const live = document.getElementById("live");
    live.className = "live " + (ok ? "ok" : "down");
    document.getElementById("live-text").textContent = text;
  }

  /* Flattens any JSON value into rows of [path, value] for a generic view. */
  function flatten(value, prefix, out, depth) {
    out = out || [];
    depth = depth || 0;
    if (value !== null && typeof value === "object" && depth < 4) {
      const entries = Array.isArray(value) ? value.slice(0, 50).map((v, i) => [String(i), v]) : Object.entries(value);
      for (const [k, v] of entries) flatten(v, prefix ? prefix + "." + k : k, out, depth + 1);
    } else {
      out.push([prefix || "(value)", typeof value === "object" ? JSON.stringify(value) : value]);
    }
    return out;
  }

  function firstObjectList(value, depth) {
    depth = depth || 0;
    if (Array.isArray(value) && value.length && value.every((v) => v && typeof v === "object" && !Array.isArray(v))) return value;
    if (value && typeof value === "object" && depth < 3) {
      for (const v of Object.values(value)) {
        const found = firstObjectList(v, depth + 1);
        if (found) return found;
      }
    }
    return null;
  }

  function genericView(data) {
    const list = firstObjectList(data);
    const parts = [];
    if (list) {
      const keys = [];
      for (const row of list.slice(0, 200)) for (const k of Object.keys(row)) if (!keys.includes(k) && keys.length < 9) keys.push(k);
      parts.push(el("div", { class: "panel" }, table(keys.map((k) => ({
        label: k,
        num: typeof list[0][k] === "number",
        value: (r) => (r[k] !== null && typeof r[k] === "object" ? JSON.stringify(r[k]) : r[k]),
      })), list.slice(0, 200))));
    }
    const flat = flatten(data).filter(([, v]) => typeof v !== "object" || v === null).slice(0, 60);
    parts.push(el("div", { class: "panel" }, table([
      { label: "field", value: (r) => r[0], mono: true },
      { label: "value", value: (r) => r[1] },
    ], flat)));
    return parts;
  }

  function optionalRoutes(kind) {
    const o = OPTIONAL[kind];
    if (state.components[o.component] === false) return [];
    const re = o.match;
    return (state.routes || []).filter((p) => re.test(p));
  }

  /* ------------------------------------------------------------- pages */

  async function pageOverview(root) {
    const s = state.status;
    const overlay = s.overlay || {};
    root.appendChild(el("h1", {}, "Overview"));
    root.appendChild(el("div", { class: "cards" },
      card("agent", `${s.agent} ${s.version}`),
      card("status", "running"),
      card("uptime", fmtDuration(s.uptime)),
      card("started", fmtTime(s.started)),
      card("pid", s.pid),
      card("node ID", overlay.enabled ? overlay.node_id : "overlay off", true),
      card("overlay peers", overlay.enabled ? overlay.peers : "-"),
      card("runs completed", s.runs_completed),
      card("results stored", s.results_stored),
      card("events fired", s.events_fired),
      card("schedule", s.schedule && s.schedule.enabled ? `every ${s.schedule.interval} s` : "off"),
      card("state directory", s.state_dir, true),
    ));
    const latest = s.latest || {};
    root.appendChild(el("div", { class: "grid2" },
      el("div", {},
        el("h2", {}, "Latest result of every test"),
        el("div", { class: "chart-box" }, C.bars(["ok", "warning", "error", "skipped"].map((k) => ({ label: k, value: latest[k] || 0, cls: k })), { label: "latest results by status", labelWidth: 90 })),
      ),
      el("div", {},
        el("h2", {}, "Failing tests"),
        el("div", { class: "panel" }, (s.failing || []).length ? el("ul", {}, s.failing.map((f) => el("li", {}, f))) : el("span", { class: "note" }, "none")),
        el("h2", {}, "Modules"),
        el("div", { class: "panel" }, (s.modules || []).join(", ") || "none"),
        el("h2", {}, "Running now"),
        el("div", { class: "panel" }, (s.active_runs || []).length
          ? el("ul", {}, s.active_runs.map((a) => el("li", {}, `${a.module}: ${(a.tests || []).join(", ")}`)))
          : el("span", { class: "note" }, "nothing")),
      ),
    ));
  }

  async function pagePeers(root) {
    root.appendChild(el("h1", {}, "Overlay peers"));
    if (!(state.status.overlay || {}).enabled) {
      root.appendChild(unavailable("The overlay"));
      return;
    }
    let overview, peers;
    try {
      [overview, peers] = await Promise.all([getJSON(API + "/overlay"), getJSON(API + "/peers")]);
    } catch (e) {
      if (e.status === 503 || e.status === 404) {
        root.appendChild(unavailable("The overlay"));
        return;
      }
      throw e;
    }
    const c = overview.counters || {};
    const now = Date.now() / 1000;
    const samples = state.overlaySamples;
    samples.push({ t: now, in: c.messages_in || 0, out: c.messages_out || 0 });
    while (samples.length > 120) samples.shift();
    const rate = (key) => {
      const pts = [];
      for (let i = 1; i < samples.length; i++) {
        const dt = samples[i].t - samples[i - 1].t;
        if (dt > 0) pts.push({ t: samples[i].t, v: Math.max(0, samples[i][key] - samples[i - 1][key]) / dt });
      }
      return pts;
    };
    root.appendChild(el("div", { class: "cards" },
      card("node ID", overview.node_id, true),
      card("role", overview.role),
      card("UDP port", overview.port),
      card("peers", (peers.peers || []).length),
      card("messages in / out", `${c.messages_in || 0} / ${c.messages_out || 0}`),
      card("bytes in / out", `${C.fmtNumber(c.bytes_in || 0)} / ${C.fmtNumber(c.bytes_out || 0)}`),
      card("dropped", c.dropped || 0),
      card("banned now", c.banned_peers || 0),
    ));
    root.appendChild(el("div", { class: "grid2" },
      el("div", {}, el("h2", {}, "Messages per second (this page's samples)"),
        el("div", { class: "chart-box" }, C.timeSeries([{ name: "in", points: rate("in") }, { name: "out", points: rate("out") }], { label: "overlay message rate", unit: "/s", emptyText: "collecting samples\u2026" }))),
      el("div", {}, el("h2", {}, "Peer round-trip time"),
        el("div", { class: "chart-box" }, C.bars((peers.peers || []).slice(0, 20).map((p) => ({ label: `${p.host}:${p.port}`, value: p.rtt_ms, title: `${p.node_id}: ${p.rtt_ms} ms` })), { label: "peer RTT", unit: " ms", emptyText: "no peer with a measured RTT" }))),
    ));
    root.appendChild(el("h2", {}, "Routing table (closest first)"));
    root.appendChild(el("div", { class: "panel" }, table([
      { label: "node ID", value: (p) => p.node_id, mono: true },
      { label: "address", value: (p) => `${p.host}:${p.port}`, mono: true },
      { label: "RTT", value: (p) => (typeof p.rtt_ms === "number" ? p.rtt_ms.toFixed(2) + " ms" : ""), num: true },
      { label: "last seen", value: (p) => (typeof p.last_seen_s === "number" ? fmtDuration(p.last_seen_s) + " ago" : ""), num: true },
      { label: "failures", value: (p) => p.failures, num: true },
      { label: "bucket", value: (p) => p.bucket, num: true },
    ], peers.peers || [], { empty: "no peer known yet" })));
    const counterRows = Object.entries(c).sort((a, b) => a[0].localeCompare(b[0]));
    root.appendChild(el("h2", {}, "Counters"));
    root.appendChild(el("div", { class: "panel" }, table([
      { label: "counter", value: (r) => r[0], mono: true },
      { label: "value", value: (r) => r[1], num: true },
    ], counterRows)));
  }

  async function pageTests(root) {
    root.appendChild(el("h1", {}, "Tests and result history"));
    const [latest, history] = await Promise.all([
      getJSON(API + "/results/latest"),
      getJSON(API + "/results?limit=2000"),
    ]);
    const byTest = new Map();
    for (const r of history.results || []) {
      const key = `${r.module}.${r.test}`;
      if (!byTest.has(key)) byTest.set(key, []);
      byTest.get(key).push(r);
    }
    root.appendChild(el("h2", {}, "Latest results"));
    root.appendChild(el("div", { class: "panel" }, table([
      { label: "test", value: (r) => `${r.module}.${r.test}`, mono: true },
      { label: "status", value: (r) => badge(r.status) },
      { label: "message", value: (r) => r.message },
      { label: "duration", value: (r) => fmtMs(r.duration), num: true },
      { label: "started", value: (r) => fmtTime(r.started) },
      { label: "origin", value: (r) => r.origin },
      { label: "runs kept", value: (r) => (byTest.get(`${r.module}.${r.test}`) || []).length, num: true },
    ], latest.results || [], {
      empty: "no test has run yet (try: dnactl run local)",
      rowClass: (r) => "selectable" + (state.selectedTest === `${r.module}.${r.test}` ? " selected" : ""),
      onClick: (r) => {
        state.selectedTest = `${r.module}.${r.test}`;
        refresh();
      },
    })));
    root.appendChild(el("h2", {}, "Duration and status over time, per test"));
    const charts = [];
    for (const [key, results] of [...byTest.entries()].sort((a, b) => a[0].localeCompare(b[0]))) {
      const points = results.map((r) => ({ t: r.started, v: r.duration * 1000, status: r.status, title: `${fmtTime(r.started)}: ${r.status}, ${fmtMs(r.duration)}: ${r.message || ""}` }));
      const counts = {};
      for (const r of results) counts[r.status] = (counts[r.status] || 0) + 1;
      charts.push(el("div", { class: "chart-box", "data-test": key },
        el("div", { class: "title" }, key),
        el("div", { class: "sub" }, `${results.length} results: ` + Object.entries(counts).map(([k, v]) => `${v} ${k}`).join(", ")),
        C.timeSeries([{ name: key, points }], { label: `${key} duration`, unit: " ms", height: 160 }),
      ));
    }
    root.appendChild(charts.length ? el("div", { class: "small-multiples" }, charts) : el("div", { class: "unavailable" }, "No history yet."));
    const selected = state.selectedTest;
    const rows = (selected ? byTest.get(selected) || [] : history.results || []).slice(-50).reverse();
    root.appendChild(el("h2", {}, selected ? `History of ${selected} (newest 50)` : "History (newest 50; click a test above to filter)"));
    root.appendChild(el("div", { class: "panel" }, table([
      { label: "started", value: (r) => fmtTime(r.started) },
      { label: "test", value: (r) => `${r.module}.${r.test}`, mono: true },
      { label: "status", value: (r) => badge(r.status) },
      { label: "duration", value: (r) => fmtMs(r.duration), num: true },
      { label: "message", value: (r) => r.message },
    ], rows)));
  }

  async function pageNotifications(root) {
    root.appendChild(el("h1", {}, "Notifications"));
    if (state.components.notifications === false) {
      root.appendChild(unavailable("The notification service"));
      return;
    }
    let data;
    try {
      data = await getJSON(API + "/notifications?limit=50");
    } catch (e) {
      if (e.status === 404 || e.status === 503) {
        root.appendChild(unavailable("The notification queue"));
        return;
      }
      throw e;
    }
    const total = { queued: 0, sent: 0, acked: 0, retried: 0, dropped: 0 };
    for (const t of data.targets || []) for (const k of Object.keys(total)) total[k] += t[k] || 0;
    root.appendChild(el("div", { class: "cards" },
      card("pending", data.pending),
      card("queued", total.queued),
      card("sent (traps)", total.sent),
      card("acknowledged (informs)", total.acked),
      card("retried", total.retried),
      card("dropped", total.dropped),
      card("events seen / ignored", `${data.events_seen} / ${data.events_ignored}`),
      card("next attempt", data.next_attempt ? fmtTime(data.next_attempt) : "none due"),
    ));
    root.appendChild(el("h2", {}, "Targets"));
    root.appendChild(el("div", { class: "panel", id: "notify-targets" }, table([
      { label: "target", value: (t) => t.key, mono: true },
      { label: "mode", value: (t) => t.mode },
      { label: "version", value: (t) => t.version },
      { label: "pending", value: (t) => t.pending || 0, num: true },
      { label: "queued", value: (t) => t.queued || 0, num: true },
      { label: "sent", value: (t) => t.sent || 0, num: true },
      { label: "acked", value: (t) => t.acked || 0, num: true },
      { label: "retried", value: (t) => t.retried || 0, num: true },
      { label: "dropped", value: (t) => t.dropped || 0, num: true },
    ], data.targets || [], { empty: "no trap sink or inform target is configured ([notifications] trap_sinks, inform_targets)" })));
    root.appendChild(el("h2", {}, "Newest notifications"));
    root.appendChild(el("div", { class: "panel", id: "notify-recent" }, table([
      { label: "#", value: (d) => d.id, num: true },
      { label: "created", value: (d) => fmtTime(d.created) },
      { label: "kind", value: (d) => d.kind },
      { label: "test", value: (d) => d.test, mono: true },
      { label: "target", value: (d) => d.target, mono: true },
      { label: "state", value: (d) => badge(d.state) },
      { label: "attempts", value: (d) => d.attempts, num: true },
      { label: "message", value: (d) => d.message },
    ], data.recent || [], { empty: "no notification yet" })));
  }

  async function optionalPage(kind, root, draw) {
    const o = OPTIONAL[kind];
    root.appendChild(el("h1", {}, o.title));
    const routes = optionalRoutes(kind);
    if (routes.length === 0) {
      root.appendChild(unavailable(o.what));
      return;
    }
    let shown = 0;
    for (const path of routes) {
      const q = state.query[path];
      let data;
      try {
        data = await getJSON(path + (q ? "?" + q : ""));
      } catch (e) {
        if (e.status === 404) continue;
        root.appendChild(el("h2", {}, path));
        root.appendChild(el("div", { class: "unavailable" }, `${path}: ${e.message}`));
        shown++;
        continue;
      }
      shown++;
      root.appendChild(el("h2", {}, path));
      draw(root, data, path);
    }
    if (!shown) root.appendChild(unavailable(o.what));
  }

  function predictionBars(data) {
    const list = firstObjectList(data) || [];
    const items = [];
    for (const r of list.slice(0, 30)) {
      const label = r.target || r.host || r.address || r.name || r.key || "";
      const key = Object.keys(r).find((k) => /(rtt|predict).*ms|_ms$/.test(k) && typeof r[k] === "number");
      if (label && key) items.push({ label, value: r[key], title: `${label}: ${r[key]} ms (${key})` });
    }
    return items;
  }

  function predictionForm() {
    const input = el("input", { type: "text", name: "host", placeholder: "IPv4 or IPv6 address", "aria-label": "host to predict", maxlength: 64 });
    const out = el("div", { class: "note", id: "prediction-answer" });
    const showAnswer = () => {
      clear(out);
      const a = state.prediction;
      if (!a) return;
      if (a.error) out.appendChild(el("span", {}, a.error));
      else if (a.predicted) out.appendChild(el("span", {}, `${a.target}: ${a.rtt_ms} ms (${a.low_ms} to ${a.high_ms} ms), from ${(a.basis && a.basis.source) || "?"}`));
      else out.appendChild(el("span", {}, a.reason || `no prediction for ${a.target}`));
    };
    const form = el("form", { class: "inline" }, el("label", {}, "Predict the RTT to "), input, el("button", { type: "submit" }, "predict"));
    form.addEventListener("submit", async (ev) => {
      ev.preventDefault();
      const host = input.value.trim();
      if (!host) return;
      try {
        state.prediction = await getJSON(API + "/xbac/predict/rtt", { host });
      } catch (e) {
        state.prediction = { error: e.message };
      }
      input.blur();
      refresh();
    });
    showAnswer();
    return [form, out];
  }

  async function xbacView(root) {
    const [st, recent] = await Promise.all([getJSON(API + "/xbac"), getJSON(API + "/xbac/recent")]);
    root.appendChild(el("div", { class: "cards" },
      card("mode", st.mode),
      card("role", st.role),
      card("group", st.group || "-", true),
      card("members / clusters", `${st.members} / ${st.clusters}`),
      card("measurements", st.measurements),
      card("rejected", st.measurements_rejected),
      card("predictions answered", st.predictions_answered),
      card("unanswered", st.predictions_unanswered),
    ));
    for (const part of predictionForm()) root.appendChild(part);
    const list = (recent.predictions || []).slice().reverse();
    root.appendChild(el("h2", {}, "Recent predictions"));
    const items = list.filter((p) => p.predicted).slice(0, 20).map((p) => ({ label: p.target, value: p.rtt_ms, title: `${p.target}: ${p.rtt_ms} ms (${p.low_ms} to ${p.high_ms} ms)` }));
    root.appendChild(el("div", { class: "chart-box" }, C.bars(items, { label: "predicted RTT", unit: " ms", emptyText: "no prediction answered yet" })));
    root.appendChild(el("div", { class: "panel" }, table([
      { label: "time", value: (p) => fmtTime(p.time) },
      { label: "target", value: (p) => p.target, mono: true },
      { label: "RTT", value: (p) => (p.predicted ? p.rtt_ms + " ms" : "none"), num: true },
      { label: "interval", value: (p) => (p.predicted ? `${p.low_ms} to ${p.high_ms} ms` : "") },
      { label: "basis", value: (p) => (p.predicted && p.basis ? `${p.basis.source}, ${p.basis.measurements} measurements` : p.reason) },
      { label: "answered in", value: (p) => p.elapsed_ms + " ms", num: true },
    ], list.slice(0, 50), { empty: "no prediction asked yet (dnactl predict rtt HOST, or the form above)" })));
    root.appendChild(el("h2", {}, "Service status"));
    for (const p of genericView(st)) root.appendChild(p);
  }

  async function pagePredictions(root) {
    const draw = (parent, data) => {
      const items = predictionBars(data);
      if (items.length) parent.appendChild(el("div", { class: "chart-box" }, C.bars(items, { label: "predicted RTT", unit: " ms" })));
      for (const p of genericView(data)) parent.appendChild(p);
    };
    const routes = optionalRoutes("predictions");
    if (routes.includes(API + "/xbac") && routes.includes(API + "/xbac/recent")) {
      root.appendChild(el("h1", {}, OPTIONAL.predictions.title));
      await xbacView(root);
      return;
    }
    await optionalPage("predictions", root, draw);
  }

  /* Nodes and edges from a DTS answer: explicit links/edges, or hop lists. */
  function extractGraph(data) {
    const nodes = new Map();
    const edges = [];
    const seen = new Set();
    const add = (id, kind) => {
      if (id === undefined || id === null || id === "") return null;
      id = String(id);
      if (!nodes.has(id)) nodes.set(id, { id, label: id, kind: kind || "" });
      else if (kind && !nodes.get(id).kind) nodes.get(id).kind = kind;
      return id;
    };
    const link = (a, b) => {
      if (!a || !b || a === b) return;
      const k = a < b ? a + "|" + b : b + "|" + a;
      if (seen.has(k)) return;
      seen.add(k);
      edges.push({ a, b });
    };
    const ends = (e) => {
      for (const [x, y] of [["src", "dst"], ["from", "to"], ["source", "target"], ["a", "b"], ["near", "far"]]) {
        if (e && e[x] !== undefined && e[y] !== undefined) return [e[x], e[y]];
      }
      return Array.isArray(e) && e.length === 2 ? e : null;
    };
    const hopId = (h, i, key) => {
      if (h === null || h === undefined) return `* ${key} ${i}`;
      if (typeof h !== "object") return String(h);
      const id = h.address || h.addr || h.ip || h.from || h.host;
      return id ? String(id) : `* ${key} ${i}`;
    };
    const walk = (v, depth) => {
      if (!v || typeof v !== "object" || depth > 4) return;
      for (const name of ["links", "edges"]) {
        if (Array.isArray(v[name])) for (const e of v[name]) {
          const ab = ends(e);
          if (ab) link(add(ab[0]), add(ab[1]));
        }
      }
      const traces = Array.isArray(v.traces) ? v.traces : Array.isArray(v) ? v : null;
      if (traces) {
        traces.forEach((t, n) => {
          if (!t || !Array.isArray(t.hops)) return;
          const key = t.target || t.destination || t.dst || n;
          let prev = add(t.source || t.monitor || t.src || "this agent", "self");
          t.hops.forEach((h, i) => {
            const id = add(hopId(h, i, key), String(hopId(h, i, key)).startsWith("*") ? "anonymous" : "");
            link(prev, id);
            prev = id;
          });
          const dst = t.target || t.destination || t.dst;
          if (dst !== undefined) link(prev, add(dst, "target"));
        });
      }
      if (!Array.isArray(v)) for (const [k, sub] of Object.entries(v)) if (k !== "links" && k !== "edges" && k !== "traces") walk(sub, depth + 1);
    };
    walk(data, 0);
    return { nodes: [...nodes.values()].slice(0, 400), edges };
  }

  /* Nodes and edges from RIPE Atlas traceroute results (the DTS export). */
  function atlasGraph(results) {
    const nodes = new Map();
    const edges = [];
    const seen = new Set();
    const add = (id, kind) => {
      id = String(id);
      const known = nodes.get(id);
      if (!known) nodes.set(id, { id, label: id, kind: kind || "" });
      else if (kind === "self" || (kind && !known.kind)) known.kind = kind;
      return id;
    };
    const link = (a, b) => {
      if (a === b) return;
      const k = a < b ? a + "|" + b : b + "|" + a;
      if (!seen.has(k)) {
        seen.add(k);
        edges.push({ a, b });
      }
    };
    // Only hops one TTL apart are linked: Doubletree leaves out the hops it
    // knew from its stop sets, and a gap is not a link.
    for (const r of results || []) {
      if (!r || typeof r !== "object" || !Array.isArray(r.result)) continue;
      const dst = r.dst_addr ? String(r.dst_addr) : null;
      let prev = add(r.src_addr || r.from || "this agent", "self");
      let prevTtl = 0;
      const hops = r.result.filter((h) => h && Number.isInteger(h.hop)).sort((a, b) => a.hop - b.hop);
      for (const h of hops) {
        const answers = Array.isArray(h.result) ? h.result : [];
        const found = answers.find((a) => a && typeof a.from === "string" && a.from);
        let id;
        if (found) {
          id = add(found.from, found.from === dst ? "target" : "");
        } else {
          id = add(`* ${dst} ${h.hop}`, "anonymous");
          nodes.get(id).label = "*";
        }
        if (h.hop === prevTtl + 1) link(prev, id);
        prev = id;
        prevTtl = h.hop;
      }
      if (dst) add(dst, "target");
    }
    return { nodes: [...nodes.values()].slice(0, 400), edges };
  }

  function campaignForm(current) {
    const input = el("input", { type: "text", name: "campaign", placeholder: "campaign name", "aria-label": "campaign", maxlength: 64, value: current || "" });
    const form = el("form", { class: "inline" }, el("label", {}, "Campaign "), input, el("button", { type: "submit" }, "show"));
    form.addEventListener("submit", (ev) => {
      ev.preventDefault();
      state.campaign = input.value.trim() || null;
      input.blur();
      refresh();
    });
    return form;
  }

  async function dtsView(root) {
    const local = await getJSON(API + "/trace/campaigns");
    const joined = local.campaigns || [];
    root.appendChild(el("div", { class: "cards" },
      card("monitor", local.monitor, true),
      card("campaigns joined", joined.length),
      card("probes sent", local.probes_sent),
      card("probes refused", local.probes_refused),
    ));
    root.appendChild(el("h2", {}, "Campaigns of this agent"));
    root.appendChild(el("div", { class: "panel" }, table([
      { label: "campaign", value: (c) => c.campaign, mono: true },
      { label: "state", value: (c) => c.state },
      { label: "chunks done", value: (c) => c.chunks_done, num: true },
      { label: "chunks lost", value: (c) => c.chunks_lost, num: true },
      { label: "records", value: (c) => c.records, num: true },
      { label: "probes", value: (c) => c.probes_sent, num: true },
      { label: "errors", value: (c) => c.errors, num: true },
      { label: "last error", value: (c) => c.last_error },
    ], joined, {
      empty: "no campaign joined here (dnactl trace ...)",
      rowClass: (c) => "selectable" + (state.campaign === c.campaign ? " selected" : ""),
      onClick: (c) => {
        state.campaign = c.campaign;
        refresh();
      },
    })));
    if (!state.campaign && joined.length) state.campaign = joined[0].campaign;
    root.appendChild(campaignForm(state.campaign));
    if (!state.campaign) {
      root.appendChild(el("div", { class: "unavailable" }, "Choose a campaign to draw the topology it traced."));
      return;
    }
    const c = encodeURIComponent(state.campaign);
    let exported;
    try {
      exported = await getJSON(`${API}/trace/campaign/export?campaign=${c}&format=atlas`);
    } catch (e) {
      root.appendChild(el("div", { class: "unavailable" }, `Campaign ${state.campaign}: ${e.message}`));
      return;
    }
    const g = atlasGraph(exported.data);
    root.appendChild(el("h2", {}, `Topology traced by campaign ${state.campaign}`));
    root.appendChild(el("div", { class: "chart-box" },
      el("div", { class: "sub" }, `${exported.records} traceroutes from ${Object.keys(exported.monitors || {}).length} monitors: ${g.nodes.length} interfaces, ${g.edges.length} links`),
      C.graph(g.nodes, g.edges, { label: "traced topology", emptyText: "no traceroute recorded yet" })));
  }

  async function pageTopology(root) {
    const routes = optionalRoutes("topology");
    if (routes.includes(API + "/trace/campaigns") && routes.includes(API + "/trace/campaign/export")) {
      root.appendChild(el("h1", {}, OPTIONAL.topology.title));
      await dtsView(root);
      return;
    }
    await optionalPage("topology", root, (parent, data) => {
      const g = extractGraph(data);
      if (g.nodes.length) {
        parent.appendChild(el("div", { class: "chart-box" },
          el("div", { class: "sub" }, `${g.nodes.length} interfaces, ${g.edges.length} links`),
          C.graph(g.nodes, g.edges, { label: "traced topology" })));
      }
      for (const p of genericView(data)) parent.appendChild(p);
    });
  }

  const RENDER = {
    overview: pageOverview,
    peers: pagePeers,
    tests: pageTests,
    notifications: pageNotifications,
    predictions: pagePredictions,
    topology: pageTopology,
  };

  /* -------------------------------------------------------------- loop */

  function header() {
    const s = state.status;
    const overlay = s.overlay || {};
    const parts = [`${s.agent} ${s.version}`, `pid ${s.pid}`, `up ${fmtDuration(s.uptime)}`];
    if (overlay.enabled) parts.push(`node ${overlay.node_id}`);
    document.getElementById("agent-line").textContent = parts.join("  \u00b7  ");
  }

  async function refresh() {
    if (state.busy) {
      state.again = true; // e.g. another page was chosen: draw it when this one is done
      return;
    }
    state.busy = true;
    state.again = false;
    const page = state.page;
    try {
      const [status, index] = await Promise.all([getJSON(API + "/status"), getJSON(API + "/dashboard")]);
      state.status = status;
      state.routes = (index.routes || []).filter((r) => r.startsWith("GET ")).map((r) => r.slice(4));
      state.components = index.components || {};
      header();
      const active = document.activeElement;
      if (active && active.tagName === "INPUT" && document.getElementById("page").contains(active)) {
        setLive(true, "live (paused while you type)");
        return;
      }
      const fresh = el("div", {});
      await RENDER[page](fresh);
      const main = document.getElementById("page");
      if (state.page === page) {
        clear(main);
        main.dataset.page = page;
        main.appendChild(fresh);
        main.dataset.loaded = "1";
      }
      setBanner("");
      setLive(true, "live, updated " + new Date().toLocaleTimeString());
    } catch (e) {
      setBanner(`Cannot read the agent: ${e.message}`);
      setLive(false, "agent unreachable");
    } finally {
      state.busy = false;
    }
    if (state.again) refresh();
  }

  function show(page) {
    if (!PAGES.includes(page)) page = "overview";
    state.page = page;
    for (const a of document.querySelectorAll("nav a")) a.classList.toggle("active", a.dataset.page === page);
    const main = document.getElementById("page");
    main.dataset.loaded = "";
    refresh();
  }

  function start() {
    window.addEventListener("hashchange", () => show(location.hash.slice(1)));
    show(location.hash.slice(1));
    state.timer = setInterval(refresh, POLL_MS);
  }

  // For the browser tests: the graph made from a DTS export.
  window.DnaDashboard = { atlasGraph };

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", start);
  else start();
})();
