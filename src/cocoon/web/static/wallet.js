// The wallet: the channels this client pays into, spend over time and per model, the
// recent paid answers, and top-up and close through the node's own payer.
import { api, el, facts, say, short, table, ton } from "./api.js";
import { modelBars, spendLine } from "./chart.js";
import { ranWherePanel } from "./answer.js";

const $ = (id) => document.getElementById(id);

export async function loadWallet() {
  let w;
  try {
    w = await api("/v1/wallet");
  } catch (error) {
    say(`Wallet: ${error.message}`);
    return;
  }
  const out = $("wallet");
  const actions = document.querySelector(".wallet-actions");
  if (!w.payments) {
    out.replaceChildren(el("p", { class: "card muted" }, "Payments are off on this client: answers are free, nothing to show."));
    actions.hidden = true;
  } else {
    actions.hidden = false;
    const t = w.payments.totals || {};
    const inUse = w.channels.find((c) => c.in_use) || w.channels[0];
    out.replaceChildren(
      el("div", { class: "stats" },
        stat("Spent (this session)", `${ton(w.spend.total_nano)} TON`, "spent-total"),
        stat("Paid in all (vouchers)", `${ton(t.paid_nano)} TON`),
        stat("Deposited in channels", `${ton(t.deposits_paying_nano)} TON`),
        stat("Left in channel in use", inUse ? `${ton(inUse.remaining_nano)} TON` : "–", "remaining"),
      ),
      el("div", { class: "card" },
        facts([["Wallet", el("code", {}, w.payments.wallet)], ["Root", el("code", {}, w.payments.root)], ["Automatic top-ups", w.payments.top_ups]]),
        el("h2", {}, "Channels"),
        table([
          ["Channel", (c) => el("code", { title: c.channel }, short(c.channel, 20))],
          ["Proxy", (c) => el("span", {}, c.proxy || c.peer, c.in_use ? " (in use)" : "")],
          ["Deposit", (c) => ton(c.deposit_nano)],
          ["Owed", (c) => ton(c.owed_nano)],
          ["Vouchered", (c) => ton(c.vouchered_nano)],
          ["Redeemed", (c) => ton(c.redeemed_nano)],
          ["State", (c) => c.close_at ? `closing: withdraw after ${new Date(c.close_at * 1000).toLocaleString()}` : "open"],
        ], w.channels, "no channel yet"),
      ),
    );
  }
  spendLine($("chart-time"), w.spend.answers);
  modelBars($("chart-models"), w.spend.per_model);
  const recent = w.spend.answers.slice(-10).reverse();
  $("wallet-answers").replaceChildren(
    el("div", { class: "card" }, el("h2", {}, "Recent paid answers"),
      table([
        ["When", (a) => new Date(a.at_ms).toLocaleTimeString()],
        ["Model", (a) => a.model],
        ["Tokens", (a) => a.tokens],
        ["Price (TON)", (a) => ton(a.amount_nano)],
        ["", (a) => ranWherePanel(a.request_id)],
      ], recent, "none yet")),
  );
}

function stat(name, value, id) {
  return el("div", { class: "stat", "data-stat": id || null }, el("div", { class: "v" }, value), el("div", { class: "k" }, name));
}

export function setUpWallet() {
  $("top-up-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    const amount = $("top-up-amount").value.trim();
    say(`Topping up by ${amount} TON…`, "info");
    try {
      const r = await api("/v1/wallet/top-up", { json: { amount_ton: amount } });
      say(`Topped up ${ton(r.topped_up_nano)} TON on ${short(r.channel, 20)}.`, "info");
    } catch (error) {
      say(`Top-up: ${error.message}`);
    }
    loadWallet();
  });
  $("close-channel").addEventListener("click", async () => {
    if (!confirm("Close the payment channel in use? The proxy may still redeem what it was paid until the close delay ends; then the rest comes back to your wallet. This client stops paying through this channel.")) return;
    try {
      const r = await api("/v1/wallet/close", { json: {} });
      say(`Channel ${short(r.channel, 20)} is closing; withdraw after ${new Date(r.close_at * 1000).toLocaleString()}.`, "info");
    } catch (error) {
      say(`Close: ${error.message}`);
    }
    loadWallet();
  });
}
