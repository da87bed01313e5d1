// The explorer: proxies, the root's lists, workers with their trust, stake and
// reputation, and what this client refused and why (from /v1/attestation).
import { api, badge, el, facts, say, short, table, ton } from "./api.js";
import { tcbSummary, teeBadge, teeKind } from "./tee.js";

const trust = teeBadge;
// The launch measurement (SEV-SNP) or MRTD (TDX), shortened; the whole on hover.
const measurement = (x) => {
  const m = x.measurements || {};
  const value = teeKind(x) === "sev-snp" ? m.measurement : m.mr_td;
  return value ? el("code", { title: value }, short(value, 16)) : "–";
};

export async function loadExplorer() {
  const out = document.getElementById("explorer");
  let s;
  try {
    s = await api("/v1/attestation");
  } catch (error) {
    say(`Explorer: ${error.message}`);
    return;
  }
  const root = s.root;
  const node = s.node || {};
  const refusedWorkers = Object.entries(s.refused_workers || {});
  const refusedProxies = Object.entries(s.refused_proxy_connections || {});
  const reputation = (s.reputation && s.reputation.workers) || {};
  out.replaceChildren(
    el("div", { class: "card" },
      el("h2", {}, "This client"),
      facts([
        ["Node", el("code", {}, node.key_id || "–")],
        ["Attestation", el("span", {}, trust(node), " ", node.note || "")],
        ["Proxy in use", s.proxy ? el("code", {}, `${s.proxy.address} (${s.proxy.key_id})`) : "not connected"],
      ])),
    el("div", { class: "card" },
      el("h2", {}, "Root contract"),
      !root || root.version === null || root.version === undefined
        ? el("p", { class: "muted" }, "This client follows no root contract (payments off).")
        : el("div", {},
          facts([
            ["Address", el("code", {}, root.root)],
            ["Version", root.version],
            ["Network id", root.network_id],
            ["Minimum worker stake", root.min_worker_stake_nano === undefined ? undefined : `${ton(root.min_worker_stake_nano)} TON`],
            ["Images enforced", root.images_enforced ? "yes" : "no (no attestation)"],
          ]),
          el("h3", {}, "Allowed worker images"), list(root.worker_images),
          el("h3", {}, "Allowed proxy images"), list(root.proxy_images),
          el("h3", {}, "Allowed models (Merkle roots)"), list(root.models),
          el("h3", {}, "Registered proxies"),
          table([["Endpoint", (p) => p.endpoint], ["Wallet", (p) => el("code", {}, short(p.wallet, 20))], ["Node key", (p) => el("code", {}, short(p.node_key, 16))]], root.proxies || []),
        )),
    el("div", { class: "card" },
      el("h2", {}, "Proxies"),
      table([
        ["Address", (p) => el("code", {}, p.address)],
        ["State", (p) => p.refused ? badge(false, "", `refused: ${p.refused}`) : badge(p.connected, p.in_use ? "in use" : "connected", "not connected")],
        ["Key", (p) => el("code", {}, p.key_id || "–")],
        ["Attestation", (p) => p.provider ? el("span", {}, trust(p), " ", p.attestation) : "–"],
        ["Image", (p) => el("code", {}, short((p.measurements || {}).image_hash, 16))],
        ["Latency", (p) => `${p.latency_ms} ms`],
      ], s.proxies || [])),
    el("div", { class: "card" },
      el("h2", {}, "Workers"),
      table([
        ["Worker", (w) => el("code", {}, w.key_id)],
        ["Models", (w) => w.models.join(", ")],
        ["Attestation", (w) => el("span", { "data-tee": teeKind(w) }, trust(w), " ", w.attestation)],
        ["Measurement", measurement],
        ["TCB", tcbSummary],
        ["Image", (w) => el("span", {}, el("code", {}, short((w.measurements || {}).image_hash, 16)), w.root && w.root.image ? [" ", badge((root && (root.worker_images || []).includes(w.root.image)), "on root", "not on root")] : "")],
        ["Stake", (w) => !w.root || w.root.stake_bonded_nano === null || w.root.stake_bonded_nano === undefined ? "–" : `${ton(w.root.stake_bonded_nano)} TON (min ${ton(w.root.minimum_stake_nano)})`],
        ["Reputation", (w) => w.reputation ? `${Number(w.reputation.score).toFixed(2)}${w.reputation.allowed ? "" : " (excluded)"}` : "–"],
        ["Price ×", (w) => (w.coefficient_milli / 1000).toFixed(3)],
        ["GPU", (w) => w.gpu_evidence ? "yes" : "–"],
      ], s.workers || [], "no worker verified yet")),
    el("div", { class: "card" },
      el("h2", {}, "Refused, and why"),
      table([["Worker", ([k]) => el("code", {}, k)], ["Reason", ([, v]) => v]], refusedWorkers, "no worker refused"),
      el("h3", {}, "Proxy connections refused"),
      table([["Reason", ([k]) => k], ["Times", ([, v]) => v]], refusedProxies, "none"),
      el("h3", {}, "Reputation of every worker seen"),
      table([["Worker", ([k]) => el("code", {}, k)], ["Score", ([, r]) => Number(r.score).toFixed(3)], ["Answers", ([, r]) => r.answers], ["Audits passed / failed", ([, r]) => `${r.audits_passed} / ${r.audits_failed}`], ["Last reason", ([, r]) => r.last_reason || "–"]], Object.entries(reputation))),
  );
}

function list(items) {
  if (!items || !items.length) return el("p", { class: "muted" }, "none");
  return el("ul", {}, items.map((x) => el("li", {}, el("code", {}, x))));
}
