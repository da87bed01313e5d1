// The playground: a streamed chat with sampling settings and a stop button, and an
// embeddings try-out. The conversation lives in this page only.
import { api, el, failure, headers, say } from "./api.js";
import { ranWherePanel } from "./answer.js";

const $ = (id) => document.getElementById(id);
let conversation = [];
let running = null; // the AbortController of the answer being streamed

export async function loadModels() {
  try {
    const body = await api("/v1/models");
    const ids = body.data.map((m) => m.id);
    for (const select of [$("model"), $("embed-model")]) {
      const keep = select.value;
      select.replaceChildren(...ids.map((id) => el("option", { value: id }, id)));
      if (ids.includes(keep)) select.value = keep;
    }
    const embedding = ids.find((id) => /minilm|embed/i.test(id));
    if (embedding && !$("embed-model").dataset.touched) $("embed-model").value = embedding;
    const chat = ids.find((id) => !/minilm|embed/i.test(id));
    if (chat && !$("model").dataset.touched) $("model").value = chat;
    if (!ids.length) say("No model is served yet: the workers are still starting?", "info");
  } catch (error) {
    say(`Models: ${error.message}`);
  }
}

function number(id) {
  const value = $(id).value.trim();
  return value === "" ? undefined : Number(value);
}

function bubble(role, text) {
  const textNode = el("div", { class: "text" }, text);
  const who = el("div", { class: "who" }, el("strong", {}, role === "user" ? "You" : "Assistant"));
  const item = el("li", { class: `msg ${role}` }, who, textNode);
  $("messages").append(item);
  item.scrollIntoView({ block: "end" });
  return { item, who, textNode };
}

// Server-sent events from a fetch body: yields each `data:` payload.
async function* events(response) {
  const reader = response.body.getReader();
  const decoder = new TextDecoder();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    buffer += decoder.decode(value, { stream: true });
    let cut;
    while ((cut = buffer.indexOf("\n\n")) >= 0) {
      const block = buffer.slice(0, cut);
      buffer = buffer.slice(cut + 2);
      for (const line of block.split("\n")) {
        if (line.startsWith("data:")) yield line.slice(5).trim();
      }
    }
  }
}

async function send(event) {
  event.preventDefault();
  if (running) return;
  const text = $("prompt").value.trim();
  if (!text) return;
  say("");
  $("prompt").value = "";
  conversation.push({ role: "user", content: text });
  bubble("user", text);
  const answer = bubble("assistant", "");
  answer.item.setAttribute("aria-busy", "true");
  const system = $("system").value.trim();
  const body = {
    model: $("model").value,
    messages: system ? [{ role: "system", content: system }, ...conversation] : conversation,
    stream: true,
    stream_options: { include_usage: true },
    temperature: number("temperature"),
    top_p: number("top-p"),
    max_tokens: number("max-tokens"),
  };
  running = new AbortController();
  $("stop").disabled = false;
  $("send").disabled = true;
  let requestId = "";
  let received = "";
  try {
    const response = await fetch("/v1/chat/completions", {
      method: "POST",
      headers: headers({ "Content-Type": "application/json" }),
      body: JSON.stringify(body),
      signal: running.signal,
    });
    if (!response.ok) throw await failure(response);
    requestId = response.headers.get("x-request-id") || "";
    const worker = response.headers.get("x-cocoon-worker");
    answer.item.dataset.requestId = requestId;
    if (worker) {
      answer.item.dataset.worker = worker;
      answer.who.append(el("span", { class: "muted" }, `worker ${worker}`));
    }
    for await (const data of events(response)) {
      if (data === "[DONE]") break;
      const chunk = JSON.parse(data);
      if (chunk.error) throw new Error(chunk.error.message);
      const delta = chunk.choices && chunk.choices[0] && chunk.choices[0].delta;
      if (delta && delta.content) {
        received += delta.content;
        answer.textNode.textContent = received;
      }
      if (chunk.usage) answer.who.append(el("span", { class: "muted" }, `${chunk.usage.completion_tokens} tokens`));
    }
  } catch (error) {
    if (error.name === "AbortError") {
      answer.who.append(el("span", { class: "muted" }, "stopped"));
    } else {
      answer.item.append(el("div", { class: "error" }, error.message));
    }
  } finally {
    running = null;
    $("stop").disabled = true;
    $("send").disabled = false;
    answer.item.removeAttribute("aria-busy");
    answer.item.dataset.done = "true";
  }
  if (received) conversation.push({ role: "assistant", content: received });
  if (requestId) answer.item.append(ranWherePanel(requestId));
  $("prompt").focus();
}

async function embed(event) {
  event.preventDefault();
  const out = $("embed-result");
  out.replaceChildren(el("span", { class: "muted" }, "embedding…"));
  try {
    const response = await fetch("/v1/embeddings", {
      method: "POST",
      headers: headers({ "Content-Type": "application/json" }),
      body: JSON.stringify({ model: $("embed-model").value, input: $("embed-input").value }),
    });
    if (!response.ok) throw await failure(response);
    const requestId = response.headers.get("x-request-id") || "";
    const body = await response.json();
    const vector = body.data[0].embedding;
    const norm = Math.sqrt(vector.reduce((s, x) => s + x * x, 0));
    out.replaceChildren(
      el("p", {}, `${vector.length} dimensions · norm ${norm.toFixed(4)} · ${body.usage.prompt_tokens} tokens`),
      el("code", {}, `[${vector.slice(0, 6).map((x) => x.toFixed(4)).join(", ")}, …]`),
      requestId ? ranWherePanel(requestId) : "",
    );
  } catch (error) {
    out.replaceChildren(el("p", { class: "error" }, error.message));
  }
}

export function setUpPlayground() {
  $("prompt-form").addEventListener("submit", send);
  $("prompt").addEventListener("keydown", (event) => {
    if (event.key === "Enter" && (event.ctrlKey || event.metaKey)) send(event);
  });
  $("stop").addEventListener("click", () => running && running.abort());
  $("new-chat").addEventListener("click", () => {
    if (running) running.abort();
    conversation = [];
    $("messages").replaceChildren();
    $("prompt").focus();
  });
  $("embed-form").addEventListener("submit", embed);
  for (const id of ["model", "embed-model"]) $(id).addEventListener("change", () => ($(id).dataset.touched = "1"));
  $("embeddings").addEventListener("toggle", () => $("embeddings").open && loadModels());
  loadModels();
}
