// The web app's entry: pages by URL hash, settings, and refreshing what is on screen.
import { apiKey, el, setApiKey, takeTelegramLaunch } from "./api.js";
import { ranWherePanel } from "./answer.js";
import { loadExplorer } from "./explorer.js";
import { setUpPlayground } from "./playground.js";
import { loadWallet, setUpWallet } from "./wallet.js";

const PAGES = ["playground", "explorer", "wallet"];
const loaders = { explorer: loadExplorer, wallet: loadWallet };
let timer = null;

function show() {
  const page = PAGES.includes(location.hash.slice(1)) ? location.hash.slice(1) : "playground";
  for (const section of document.querySelectorAll("main > section")) section.hidden = section.dataset.page !== page;
  for (const link of document.querySelectorAll("nav a")) {
    if (link.dataset.page === page) link.setAttribute("aria-current", "page");
    else link.removeAttribute("aria-current");
  }
  clearInterval(timer);
  const load = loaders[page];
  if (load) {
    load();
    // The wallet and the network change as answers come: keep them fresh while shown.
    timer = setInterval(() => document.visibilityState === "visible" && load(), page === "wallet" ? 2000 : 5000);
  }
}

function setUpSettings() {
  const button = document.getElementById("settings-button");
  const panel = document.getElementById("settings");
  const input = document.getElementById("api-key");
  input.value = apiKey();
  button.addEventListener("click", () => {
    panel.hidden = !panel.hidden;
    button.setAttribute("aria-expanded", String(!panel.hidden));
    if (!panel.hidden) input.focus();
  });
  input.addEventListener("change", () => setApiKey(input.value.trim()));
}

// `/?answer=<request id>` (the bot's /receipt button): that answer's "what ran where".
function showAskedAnswer() {
  const requestId = new URLSearchParams(location.search).get("answer");
  if (!requestId) return;
  const panel = ranWherePanel(requestId);
  document.getElementById("messages").append(el("li", { class: "msg assistant", "data-request-id": requestId }, el("div", { class: "who" }, el("strong", {}, `Answer ${requestId}`)), panel));
  panel.open = true;
}

takeTelegramLaunch();
document.getElementById("explorer-refresh").addEventListener("click", loadExplorer);
document.getElementById("wallet-refresh").addEventListener("click", loadWallet);
setUpSettings();
setUpPlayground();
setUpWallet();
window.addEventListener("hashchange", show);
show();
showAskedAnswer();
