/* dnaagent dashboard charts: plain SVG built with DOM calls.
 *
 * Every text that comes from data is set with textContent; numbers are
 * checked to be finite before they become coordinates. Nothing here parses
 * data as HTML.
 */
"use strict";

(function () {
  const NS = "http://www.w3.org/2000/svg";
  const STATUS_CLASSES = ["ok", "warning", "error", "skipped"];

  function node(tag, attrs, text) {
    const e = document.createElementNS(NS, tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      e.setAttribute(k, String(v));
    }
    if (text !== undefined && text !== null) e.textContent = String(text);
    return e;
  }

  function titled(element, text) {
    element.appendChild(node("title", {}, text));
    return element;
  }

  function finite(x) {
    return typeof x === "number" && Number.isFinite(x);
  }

  function niceMax(v) {
    if (!(v > 0)) return 1;
    const p = Math.pow(10, Math.floor(Math.log10(v)));
    for (const m of [1, 2, 2.5, 5, 10]) {
      if (m * p >= v) return m * p;
    }
    return 10 * p;
  }

  function fmtNumber(v) {
    if (!finite(v)) return "";
    const a = Math.abs(v);
    if (a === 0) return "0";
    if (Number.isInteger(v) && a < 1e4) return String(v);
    if (a >= 1e9) return (v / 1e9).toFixed(1) + "G";
    if (a >= 1e6) return (v / 1e6).toFixed(1) + "M";
    if (a >= 1e4) return (v / 1e3).toFixed(1) + "k";
    if (a >= 100) return v.toFixed(0);
    if (a >= 1) return v.toFixed(a >= 10 ? 1 : 2);
    return v.toPrecision(2);
  }

  function fmtClock(t) {
    const d = new Date(t * 1000);
    const pad = (n) => String(n).padStart(2, "0");
    return pad(d.getHours()) + ":" + pad(d.getMinutes()) + ":" + pad(d.getSeconds());
  }

  function svgRoot(width, height, label) {
    const svg = node("svg", {
      viewBox: `0 0 ${width} ${height}`,
      width,
      class: "chart",
      role: "img",
      "aria-label": label || "chart",
    });
    return svg;
  }

  function empty(svg, width, height, text) {
    svg.appendChild(node("text", { x: width / 2, y: height / 2, "text-anchor": "middle", class: "empty" }, text));
    return svg;
  }

  /* A time series: series = [{name, points: [{t, v, status?, title?}]}].
   * Points with a status are drawn as dots coloured by it. */
  function timeSeries(series, opts) {
    const o = Object.assign({ width: 520, height: 200, unit: "", label: "time series" }, opts || {});
    const m = { l: 52, r: 10, t: 14, b: 24 };
    const svg = svgRoot(o.width, o.height, o.label);
    const all = [];
    for (const s of series) for (const p of s.points) if (finite(p.t) && finite(p.v)) all.push(p);
    if (all.length === 0) return empty(svg, o.width, o.height, o.emptyText || "no data yet");
    let t0 = Math.min(...all.map((p) => p.t));
    let t1 = Math.max(...all.map((p) => p.t));
    if (t1 - t0 < 1) { t0 -= 30; t1 += 30; }
    const vmax = niceMax(Math.max(...all.map((p) => p.v)));
    const W = o.width - m.l - m.r;
    const H = o.height - m.t - m.b;
    const x = (t) => m.l + ((t - t0) / (t1 - t0)) * W;
    const y = (v) => m.t + H - (Math.max(0, v) / vmax) * H;
    for (let i = 0; i <= 4; i++) {
      const v = (vmax * i) / 4;
      svg.appendChild(node("line", { x1: m.l, x2: m.l + W, y1: y(v), y2: y(v), class: "grid" }));
      svg.appendChild(node("text", { x: m.l - 4, y: y(v) + 3, "text-anchor": "end", class: "tick" }, fmtNumber(v) + (i === 4 ? o.unit : "")));
    }
    for (let i = 0; i <= 3; i++) {
      const t = t0 + ((t1 - t0) * i) / 3;
      svg.appendChild(node("text", { x: x(t), y: o.height - 6, "text-anchor": i === 0 ? "start" : i === 3 ? "end" : "middle", class: "tick" }, fmtClock(t)));
    }
    svg.appendChild(node("line", { x1: m.l, x2: m.l, y1: m.t, y2: m.t + H, class: "axis" }));
    svg.appendChild(node("line", { x1: m.l, x2: m.l + W, y1: m.t + H, y2: m.t + H, class: "axis" }));
    series.forEach((s, i) => {
      const pts = s.points.filter((p) => finite(p.t) && finite(p.v)).sort((a, b) => a.t - b.t);
      if (pts.length > 1) {
        const d = pts.map((p, j) => (j ? "L" : "M") + x(p.t).toFixed(1) + " " + y(p.v).toFixed(1)).join(" ");
        svg.appendChild(node("path", { d, class: "line s" + (i % 2) }));
      }
      for (const p of pts) {
        if (p.status === undefined && pts.length > 1) continue;
        const cls = STATUS_CLASSES.includes(p.status) ? p.status : "ok";
        const dot = node("circle", { cx: x(p.t).toFixed(1), cy: y(p.v).toFixed(1), r: 3.5, class: "point " + cls });
        titled(dot, p.title || `${fmtClock(p.t)}: ${fmtNumber(p.v)}${o.unit}${p.status ? " (" + p.status + ")" : ""}`);
        svg.appendChild(dot);
      }
    });
    if (series.length > 1) {
      series.forEach((s, i) => {
        const lx = m.l + 8 + i * 130;
        svg.appendChild(node("rect", { x: lx, y: m.t + 2, width: 10, height: 10, class: "swatch s" + (i % 2) }));
        svg.appendChild(node("text", { x: lx + 14, y: m.t + 11, class: "legend" }, s.name));
      });
    }
    return svg;
  }

  /* Horizontal bars: items = [{label, value, cls?, title?}]. */
  function bars(items, opts) {
    const o = Object.assign({ width: 520, barHeight: 18, unit: "", label: "bar chart", labelWidth: 150 }, opts || {});
    const rows = items.filter((it) => finite(it.value));
    const height = Math.max(40, rows.length * (o.barHeight + 6) + 10);
    const svg = svgRoot(o.width, height, o.label);
    if (rows.length === 0) return empty(svg, o.width, height, o.emptyText || "no data yet");
    const vmax = niceMax(Math.max(...rows.map((r) => r.value)));
    const W = o.width - o.labelWidth - 70;
    rows.forEach((r, i) => {
      const y0 = 6 + i * (o.barHeight + 6);
      const label = String(r.label);
      svg.appendChild(node("text", { x: o.labelWidth - 6, y: y0 + o.barHeight * 0.72, "text-anchor": "end", class: "bar-label" }, label.length > 24 ? label.slice(0, 23) + "\u2026" : label));
      const w = Math.max(1, (Math.max(0, r.value) / vmax) * W);
      const bar = node("rect", { x: o.labelWidth, y: y0, width: w.toFixed(1), height: o.barHeight, class: "bar " + (r.cls || "") });
      titled(bar, r.title || `${label}: ${fmtNumber(r.value)}${o.unit}`);
      svg.appendChild(bar);
      svg.appendChild(node("text", { x: o.labelWidth + w + 4, y: y0 + o.barHeight * 0.72, class: "bar-label" }, fmtNumber(r.value) + o.unit));
    });
    return svg;
  }

  /* A graph drawn with a small deterministic force layout.
   * nodes = [{id, label?, kind?}], edges = [{a, b}]. */
  function graph(nodes, edges, opts) {
    const o = Object.assign({ width: 900, height: 520, label: "graph", iterations: 300 }, opts || {});
    const svg = svgRoot(o.width, o.height, o.label);
    svg.setAttribute("class", "chart graph");
    if (nodes.length === 0) return empty(svg, o.width, o.height, o.emptyText || "no topology yet");
    const index = new Map(nodes.map((n, i) => [n.id, i]));
    const links = edges.filter((e) => index.has(e.a) && index.has(e.b) && e.a !== e.b).map((e) => [index.get(e.a), index.get(e.b)]);
    const n = nodes.length;
    const pos = nodes.map((_, i) => {
      const a = (2 * Math.PI * i) / n;
      return { x: Math.cos(a) * 0.4, y: Math.sin(a) * 0.4 };
    });
    const k = Math.sqrt(1 / n);
    let temp = 0.1;
    for (let it = 0; it < o.iterations; it++) {
      const disp = pos.map(() => ({ x: 0, y: 0 }));
      for (let i = 0; i < n; i++) {
        for (let j = i + 1; j < n; j++) {
          let dx = pos[i].x - pos[j].x, dy = pos[i].y - pos[j].y;
          let d = Math.hypot(dx, dy) || 1e-3;
          const f = (k * k) / d;
          disp[i].x += (dx / d) * f; disp[i].y += (dy / d) * f;
          disp[j].x -= (dx / d) * f; disp[j].y -= (dy / d) * f;
        }
      }
      for (const [i, j] of links) {
        const dx = pos[i].x - pos[j].x, dy = pos[i].y - pos[j].y;
        const d = Math.hypot(dx, dy) || 1e-3;
        const f = (d * d) / k;
        disp[i].x -= (dx / d) * f; disp[i].y -= (dy / d) * f;
        disp[j].x += (dx / d) * f; disp[j].y += (dy / d) * f;
      }
      for (let i = 0; i < n; i++) {
        const d = Math.hypot(disp[i].x, disp[i].y) || 1e-9;
        pos[i].x += (disp[i].x / d) * Math.min(d, temp);
        pos[i].y += (disp[i].y / d) * Math.min(d, temp);
        pos[i].x -= pos[i].x * 0.01; pos[i].y -= pos[i].y * 0.01;
      }
      temp *= 0.985;
    }
    const xs = pos.map((p) => p.x), ys = pos.map((p) => p.y);
    const minX = Math.min(...xs), maxX = Math.max(...xs), minY = Math.min(...ys), maxY = Math.max(...ys);
    const pad = 40;
    const padRight = 110; // room for the labels right of the nodes
    const sx = (v) => pad + ((v - minX) / ((maxX - minX) || 1)) * (o.width - pad - padRight);
    const sy = (v) => pad + ((v - minY) / ((maxY - minY) || 1)) * (o.height - 2 * pad);
    for (const [i, j] of links) {
      svg.appendChild(node("line", { x1: sx(pos[i].x).toFixed(1), y1: sy(pos[i].y).toFixed(1), x2: sx(pos[j].x).toFixed(1), y2: sy(pos[j].y).toFixed(1), class: "edge" }));
    }
    nodes.forEach((nd, i) => {
      const c = node("circle", { cx: sx(pos[i].x).toFixed(1), cy: sy(pos[i].y).toFixed(1), r: nd.kind === "self" ? 8 : 6, class: "node " + (nd.kind || "") });
      titled(c, nd.title || nd.label || nd.id);
      svg.appendChild(c);
      if (n <= 80 || nd.kind === "self" || nd.kind === "target") {
        svg.appendChild(node("text", { x: (sx(pos[i].x) + 9).toFixed(1), y: (sy(pos[i].y) + 3).toFixed(1), class: "node-label" }, nd.label || nd.id));
      }
    });
    return svg;
  }

  window.DnaCharts = { timeSeries, bars, graph, fmtNumber, fmtClock };
})();
