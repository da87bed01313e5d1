// Two small SVG charts, drawn here rather than with a library: a cumulative line over
// time and horizontal bars. The wallet needs no zoom or thousands of points, and
// ~100 lines of SVG cost less than vendoring and updating a charting package.
import { ton } from "./api.js";

const NS = "http://www.w3.org/2000/svg";

function svg(tag, attrs = {}, text) {
  const node = document.createElementNS(NS, tag);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, String(v));
  if (text !== undefined) node.textContent = text;
  return node;
}

function clock(ms) {
  return new Date(ms).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit", second: "2-digit" });
}

// points: [{at_ms, amount_nano}] oldest first; drawn as the running total.
export function spendLine(container, points) {
  const W = 520, H = 220, L = 70, R = 12, T = 12, B = 28;
  let total = 0;
  const series = points.map((p) => ({ x: p.at_ms, y: (total += p.amount_nano) }));
  const root = svg("svg", {
    viewBox: `0 0 ${W} ${H}`,
    role: "img",
    "data-points": series.length,
    "data-total-nano": total,
    "aria-label": `Spend over time: ${series.length} answers, ${ton(total)} TON in all`,
  });
  root.append(svg("line", { class: "axis", x1: L, y1: H - B, x2: W - R, y2: H - B }));
  root.append(svg("line", { class: "axis", x1: L, y1: T, x2: L, y2: H - B }));
  if (!series.length) {
    root.append(svg("text", { x: W / 2, y: H / 2, "text-anchor": "middle" }, "no paid answers yet"));
    container.replaceChildren(root);
    return;
  }
  const x0 = series[0].x, x1 = Math.max(series[series.length - 1].x, x0 + 1000);
  const ymax = Math.max(total, 1);
  const sx = (x) => L + ((x - x0) / (x1 - x0)) * (W - L - R);
  const sy = (y) => H - B - (y / ymax) * (H - T - B);
  const path = [`M${sx(x0)},${sy(0)}`, ...series.map((p) => `L${sx(p.x).toFixed(1)},${sy(p.y).toFixed(1)}`)];
  root.append(svg("path", { class: "area", d: `${path.join(" ")} L${sx(series[series.length - 1].x)},${sy(0)} Z` }));
  root.append(svg("path", { class: "line", d: path.join(" ") }));
  for (const p of series.slice(-60)) root.append(svg("circle", { class: "dot", cx: sx(p.x).toFixed(1), cy: sy(p.y).toFixed(1), r: 2.5 }));
  for (const f of [0, 0.5, 1]) {
    root.append(svg("text", { x: L - 6, y: sy(ymax * f) + 4, "text-anchor": "end" }, ton(Math.round(ymax * f))));
  }
  root.append(svg("text", { x: L, y: H - 8 }, clock(x0)));
  root.append(svg("text", { x: W - R, y: H - 8, "text-anchor": "end" }, clock(x1)));
  container.replaceChildren(root);
}

// perModel: {model: nanotons}
export function modelBars(container, perModel) {
  const entries = Object.entries(perModel).sort((a, b) => b[1] - a[1]);
  const W = 520, row = 30, L = 150, R = 90;
  const H = Math.max(60, entries.length * row + 16);
  const root = svg("svg", {
    viewBox: `0 0 ${W} ${H}`,
    role: "img",
    "data-models": entries.length,
    "aria-label": `Spend per model: ${entries.map(([m, v]) => `${m} ${ton(v)} TON`).join(", ") || "none yet"}`,
  });
  if (!entries.length) {
    root.append(svg("text", { x: W / 2, y: H / 2, "text-anchor": "middle" }, "no paid answers yet"));
  }
  const max = Math.max(1, ...entries.map(([, v]) => v));
  entries.forEach(([model, value], i) => {
    const y = 8 + i * row;
    const label = model.length > 22 ? `${model.slice(0, 21)}…` : model;
    root.append(svg("text", { x: L - 8, y: y + 17, "text-anchor": "end" }, label));
    root.append(svg("rect", { class: "bar", x: L, y: y + 4, height: 18, width: Math.max(2, ((W - L - R) * value) / max), rx: 3 }));
    root.append(svg("text", { x: W - R + 6, y: y + 17 }, ton(value)));
  });
  container.replaceChildren(root);
}
