// Talking to this gateway, and the small DOM helpers every page uses.

const KEY = "cocoon.apiKey";

export function apiKey() {
  return localStorage.getItem(KEY) || "";
}

export function setApiKey(value) {
  if (value) localStorage.setItem(KEY, value);
  else localStorage.removeItem(KEY);
}

// Opened as a Telegram Mini App, the page is launched with Telegram's signed initData
// in its URL fragment (#tgWebAppData=...): kept for this tab and sent with each call,
// the gateway knows the Telegram user by it (per-user limits) instead of an API key.
const INIT_DATA = "cocoon.telegramInitData";

export function takeTelegramLaunch() {
  const launch = new URLSearchParams(location.hash.slice(1));
  const initData = launch.get("tgWebAppData");
  if (!initData) return false;
  sessionStorage.setItem(INIT_DATA, initData);
  history.replaceState(null, "", location.pathname + location.search + "#playground");
  return true;
}

export function headers(extra = {}) {
  const key = apiKey();
  const out = key ? { Authorization: `Bearer ${key}`, ...extra } : { ...extra };
  const initData = sessionStorage.getItem(INIT_DATA);
  if (initData) out["X-Telegram-Init-Data"] = initData;
  return out;
}

// An error in the OpenAI format becomes an Error with its message (and code).
export async function failure(response) {
  let message = `${response.status} ${response.statusText}`;
  let code = "";
  try {
    const body = await response.json();
    if (body && body.error) {
      message = body.error.message || message;
      code = body.error.code || "";
    }
  } catch (_) { /* not JSON: keep the status line */ }
  const error = new Error(message);
  error.status = response.status;
  error.code = code;
  return error;
}

export async function api(path, options = {}) {
  const init = { ...options, headers: headers(options.headers || {}) };
  if (options.json !== undefined) {
    init.method = init.method || "POST";
    init.body = JSON.stringify(options.json);
    init.headers["Content-Type"] = "application/json";
  }
  const response = await fetch(path, init);
  if (!response.ok) throw await failure(response);
  return response.json();
}

export function say(message, kind = "error") {
  const status = document.getElementById("status");
  status.textContent = message || "";
  status.className = `status ${kind === "error" ? "" : "info"}`;
}

// el("div", {class: "x", onclick: f}, "text", child, ...)
export function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (name.startsWith("on")) node.addEventListener(name.slice(2), value);
    else if (name === "dataset") Object.assign(node.dataset, value);
    else node.setAttribute(name, value === true ? "" : String(value));
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

// Nanotons (an integer) as TON, exactly: 47000 → "0.000047".
export function ton(nano) {
  if (nano === null || nano === undefined) return "–";
  const negative = nano < 0;
  const digits = String(Math.abs(Math.trunc(nano))).padStart(10, "0");
  const whole = digits.slice(0, -9).replace(/^0+(?=\d)/, "");
  const frac = digits.slice(-9).replace(/0+$/, "");
  return `${negative ? "-" : ""}${whole}${frac ? "." + frac : ""}`;
}

export function short(hex, n = 16) {
  if (!hex) return "–";
  return hex.length > n ? `${hex.slice(0, n)}…` : hex;
}

export function badge(ok, yes, no, warn = false) {
  return el("span", { class: `badge ${ok ? (warn ? "warn" : "ok") : "bad"}` }, ok ? yes : no);
}

export function facts(pairs) {
  const dl = el("dl", { class: "facts" });
  for (const [name, value] of pairs) {
    if (value === undefined) continue;
    dl.append(el("dt", {}, name), el("dd", {}, value === null ? "–" : value));
  }
  return dl;
}

export function table(columns, rows, empty = "none") {
  if (!rows.length) return el("p", { class: "muted" }, empty);
  return el(
    "div",
    { class: "table-wrap" },
    el(
      "table",
      {},
      el("thead", {}, el("tr", {}, columns.map(([title]) => el("th", { scope: "col" }, title)))),
      el("tbody", {}, rows.map((row) => el("tr", {}, columns.map(([, cell]) => el("td", {}, cell(row)))))),
    ),
  );
}
