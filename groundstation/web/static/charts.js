// stratoecho ground dashboard: charts against time, drawn as SVG (altitude, temperature, battery,
// the power mode, the link's frames and losses). Times are UTC, the payload's own clock.
"use strict";

window.StratoechoCharts = (() => {
  const { svg, clock } = window.StratoechoDom; // dom.js
  const TIME_STEPS_MIN = [1, 2, 5, 10, 15, 30, 60, 120, 180, 360, 720, 1440];

  function niceStep(span, count) {
    const raw = span / count;
    const mag = 10 ** Math.floor(Math.log10(raw));
    const norm = raw / mag;
    return (norm < 1.5 ? 1 : norm < 3 ? 2 : norm < 7 ? 5 : 10) * mag;
  }

  function ticks(min, max, count) {
    const step = niceStep(max - min || 1, count);
    const out = [];
    for (let v = Math.ceil(min / step) * step; v <= max + step * 1e-6; v += step) out.push(Number(v.toFixed(10)));
    return out;
  }

  // The drawing's y range: categories for a step chart, else the values with a margin.
  function valueRange(valued, kind, opts) {
    if (kind === "step") return [-0.5, opts.categories.length - 0.5];
    const values = valued.map((p) => p.v + (p.v2 || 0));
    let lo = opts.zero ? 0 : Math.min(...values);
    let hi = Math.max(...values);
    if (opts.max !== undefined) hi = Math.max(hi, opts.max);
    const margin = (hi - lo) * 0.08 || Math.abs(hi) * 0.05 || 1;
    if (!opts.zero) lo -= margin;
    return [lo, hi + margin];
  }

  function axes(node, box, scale, kind, opts) {
    const { W, H, L, R, T, B, lo, hi, t0, t1, x, y } = { ...box, ...scale };
    // y axis: grid and labels
    const yTicks = kind === "step" ? opts.categories.map((_, i) => i) : ticks(lo, hi, 4);
    for (const v of yTicks) {
      svg("line", node, { x1: L, x2: W - R, y1: y(v), y2: y(v), class: "grid" });
      const label = kind === "step" ? opts.categories[v].toLowerCase().replace("_", " ") : String(v);
      svg("text", node, { x: L - 4, y: y(v) + 4, class: "axis", "text-anchor": "end" }, label);
    }
    // x axis: times of day (UTC) at a round step
    const spanMin = (t1 - t0) / 60000;
    const stepMin = TIME_STEPS_MIN.find((s) => spanMin / s <= 6) || 1440;
    const stepMs = stepMin * 60000;
    for (let t = Math.ceil(t0 / stepMs) * stepMs; t <= t1; t += stepMs) {
      svg("line", node, { x1: x(t), x2: x(t), y1: T, y2: H - B, class: "grid" });
      svg("text", node, { x: x(t), y: H - 5, class: "axis", "text-anchor": "middle" }, clock(t, false));
    }
    svg("rect", node, { x: L, y: T, width: W - L - R, height: H - T - B, class: "frame" });
  }

  function bars(node, valued, lo, x, y) {
    for (const p of valued) {
      const w = Math.max(1, (x(p.t + 60000) - x(p.t)) * 0.8);
      const base = y(Math.max(lo, 0));
      svg("rect", node, { x: x(p.t), y: y(p.v), width: w, height: Math.max(0, base - y(p.v)), class: "bar" });
      if (p.v2) {
        svg("rect", node, { x: x(p.t), y: y(p.v + p.v2), width: w, height: y(p.v) - y(p.v + p.v2), class: "bar bad" });
      }
    }
  }

  // lines: one polyline per run of values; a step chart holds each value until the next
  function lines(node, points, kind, opts, x, y, right) {
    let run = [];
    const flush = () => {
      if (run.length) svg("polyline", node, { points: run.join(" "), class: `line ${opts.cls || ""}` });
      run = [];
    };
    let prev = null;
    for (const p of points) {
      if (p.v === null || p.v === undefined || !Number.isFinite(p.v)) { flush(); prev = null; continue; }
      if (kind === "step" && prev !== null) run.push(`${x(p.t).toFixed(1)},${y(prev).toFixed(1)}`);
      run.push(`${x(p.t).toFixed(1)},${y(p.v).toFixed(1)}`);
      prev = p.v;
    }
    if (kind === "step" && prev !== null) run.push(`${right.toFixed(1)},${y(prev).toFixed(1)}`);
    flush();
  }

  // points: [{t: ms, v: number|null, v2?: number}] sorted by t.
  // opts.kind: "line" (nulls break the line), "step" (categories), "bars" (v, and v2 stacked on top).
  function timeChart(node, points, opts = {}) {
    node.replaceChildren();
    const view = node.viewBox.baseVal;
    const box = { W: view.width, H: view.height, L: 56, R: 10, T: 8, B: 20 };
    const kind = opts.kind || "line";
    const valued = points.filter((p) => p.v !== null && p.v !== undefined && Number.isFinite(p.v));
    if (!valued.length) {
      svg("text", node, { x: box.W / 2, y: box.H / 2, class: "empty", "text-anchor": "middle" }, "no data yet");
      return;
    }
    let t0 = valued[0].t, t1 = valued[valued.length - 1].t;
    if (kind === "bars") t1 += 60000;
    if (t1 - t0 < 120000) { t0 -= 60000; t1 += 60000; }
    const [lo, hi] = valueRange(valued, kind, opts);
    const x = (t) => box.L + ((t - t0) / (t1 - t0)) * (box.W - box.L - box.R);
    const y = (v) => box.T + (1 - (v - lo) / (hi - lo)) * (box.H - box.T - box.B);
    axes(node, box, { lo, hi, t0, t1, x, y }, kind, opts);
    if (kind === "bars") {
      bars(node, valued, lo, x, y);
      return;
    }
    lines(node, points, kind, opts, x, y, box.W - box.R);
    const last = valued[valued.length - 1];
    svg("circle", node, { cx: x(last.t), cy: y(last.v), r: 3, class: `dot ${opts.cls || ""}` });
  }

  return { timeChart };
})();
