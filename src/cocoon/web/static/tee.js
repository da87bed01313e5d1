// The kind of TEE behind an attestation (TDX or SEV-SNP, hardware or simulated) and the
// facts that differ by kind: TDX has MRTD, RTMRs and a TCB status; SEV-SNP a launch
// measurement, a product and a TCB of patch levels.
import { badge, el, short } from "./api.js";

const NAMES = { tdx: "TDX", "sev-snp": "SEV-SNP" };
const KIND_OF = { "sim-tdx": "tdx", tdx: "tdx", "sim-snp": "sev-snp", "sev-snp": "sev-snp" };
const SIMULATED = new Set(["sim-tdx", "sim-snp"]);

// "tdx", "sev-snp" or "none", from the gateway's `tee` or else the provider name.
export function teeKind(x) {
  return x.tee || KIND_OF[x.provider] || "none";
}

export function isSimulated(x) {
  return SIMULATED.has(x.provider);
}

// "simulated SEV-SNP (not hardware)", "TDX (hardware)", or the provider name if unknown.
export function teeLabel(x) {
  const name = NAMES[teeKind(x)];
  if (!name) return x.provider || "none";
  return isSimulated(x) ? `simulated ${name} (not hardware)` : `${name} (hardware)`;
}

export function teeBadge(x) {
  if (!x.provider || x.provider === "none") return badge(false, "", "no hardware attestation");
  if (!NAMES[teeKind(x)]) return badge(x.trusted, `${x.provider} attested`, "untrusted");
  return badge(x.trusted, teeLabel(x), `${teeLabel(x)}: untrusted`, isSimulated(x));
}

// SEV-SNP's reported TCB, component by component: "bootloader 4, tee 0, snp 22, microcode 213".
export function snpTcb(m) {
  const levels = Object.entries(m).filter(([k]) => k.startsWith("tcb_"));
  return levels.map(([k, v]) => `${k.slice(4)} ${v}`).join(", ");
}

// One line of TCB for either kind (tables), "–" if none.
export function tcbSummary(x) {
  const m = x.measurements || {};
  if (teeKind(x) === "sev-snp") return `${m.product || "?"} · ${snpTcb(m) || "–"}`;
  return m.tcb_status || "–";
}

// The rows of "what ran where" that depend on the kind (facts() skips undefined).
export function teeFacts(x) {
  const m = x.measurements || {};
  const debug = m.debug === "true" ? " · DEBUG" : "";
  if (teeKind(x) === "sev-snp") {
    return [
      ["Product", m.product || "–"],
      ["Launch measurement", el("code", { class: "launch-measurement" }, m.measurement || "–")],
      ["TCB", el("span", { class: "snp-tcb" }, `${snpTcb(m) || "–"}${debug}`)],
      ["Firmware", m.firmware],
    ];
  }
  return [
    ["TCB", m.tcb_status ? `${m.tcb_status}${m.advisory_ids ? " · " + m.advisory_ids : ""}${debug}` : "–"],
    ["MRTD", el("code", {}, short(m.mr_td, 32))],
    ["RTMR0–3", el("code", {}, [m.rtmr0, m.rtmr1, m.rtmr2, m.rtmr3].map((v) => short(v, 12)).join(" "))],
  ];
}
