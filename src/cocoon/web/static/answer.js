// "What ran where" for one answer: the worker, its attestation, the model, the receipt,
// the price and the channel; and the download of its evidence bundle.
import { api, badge, el, facts, failure, headers, say, ton } from "./api.js";
import { teeBadge, teeFacts, teeKind, teeLabel } from "./tee.js";

export async function answerDetails(requestId, attempts = 10) {
  // The final receipt is recorded as the answer ends: a moment after the last byte.
  for (let i = 0; ; i++) {
    try {
      return await api(`/v1/answers/${encodeURIComponent(requestId)}`);
    } catch (error) {
      if (error.status !== 404 || i >= attempts) throw error;
      await new Promise((resolve) => setTimeout(resolve, 150 * (i + 1)));
    }
  }
}

export function renderAnswer(d) {
  const w = d.worker || {};
  const root = d.root;
  const download = el("button", { type: "button", class: "ghost", "data-action": "download-evidence" }, "Download evidence bundle");
  download.addEventListener("click", () => downloadEvidence(d.request_id));
  return el(
    "div",
    { class: "ran-where-body", "data-worker": w.key_id || "", "data-tee": teeKind(w) },
    facts([
      ["Worker", el("span", {}, el("code", { class: "worker-id" }, w.key_id || "–"), " ", teeBadge(w))],
      ["TEE", el("span", { class: "tee-kind" }, teeLabel(w))],
      ["Attestation", w.attestation || "–"],
      ["Image hash", el("code", {}, w.image_hash || "–")],
      ["Listed on root", root ? (root.image_listed === null ? "–" : badge(root.image_listed, "image listed", "image NOT listed")) : "no root followed"],
      ...teeFacts(w),
      ["GPU evidence", w.gpu_evidence || "none"],
      ["Model", el("span", {}, el("code", {}, d.model), " ", d.model_id_kind === "merkle_root" ? badge(true, "Merkle root", "") : badge(true, "name only", "", true))],
      ["Model on root", root ? badge(root.model_listed, "listed", "NOT listed") : "no root followed"],
      ["Receipt", el("span", {}, badge(d.receipt.signature === "valid", "signature valid (gateway's check)", `signature ${d.receipt.signature}`), d.receipt.final ? "" : " partial")],
      ["Tokens", `${d.tokens.prompt} prompt + ${d.tokens.completion} completion${d.tokens.cached_prompt ? ` (${d.tokens.cached_prompt} cached)` : ""}`],
      ["Price", d.amount_nano === null ? "payments off" : `${ton(d.amount_nano)} TON`],
      ["Paid from channel", el("code", {}, d.channel || "–")],
      ["Request", el("code", {}, d.request_id)],
    ]),
    el("p", {}, download, " ", el("span", { class: "muted" }, "then check it anywhere: ", el("code", {}, "cocoon verify FILE"))),
  );
}

export async function downloadEvidence(requestId) {
  try {
    const response = await fetch(`/v1/evidence/${encodeURIComponent(requestId)}`, { headers: headers() });
    if (!response.ok) throw await failure(response);
    const blob = await response.blob();
    const url = URL.createObjectURL(blob);
    const a = el("a", { href: url, download: `cocoon-evidence-${requestId}.json` });
    document.body.append(a);
    a.click();
    a.remove();
    setTimeout(() => URL.revokeObjectURL(url), 10000);
  } catch (error) {
    say(`Evidence bundle: ${error.message}`);
  }
}

// A <details> that loads the panel the first time it opens.
export function ranWherePanel(requestId) {
  const body = el("div", { class: "muted" }, "loading…");
  const details = el("details", { class: "ran-where" }, el("summary", {}, "What ran where"), body);
  let loaded = false;
  details.addEventListener("toggle", async () => {
    if (!details.open || loaded) return;
    loaded = true;
    try {
      body.replaceWith(renderAnswer(await answerDetails(requestId)));
    } catch (error) {
      body.textContent = `No details: ${error.message}`;
      loaded = false;
    }
  });
  return details;
}
