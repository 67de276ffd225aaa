// The operator page's visitors panel (serve --visitors): the visitor page's QR code and address,
// and, with --moderate, the prompts waiting for approval. Each button sends the OSC contract's
// /ldm3d/moderation/* message, as TouchOSC or TouchDesigner would. docs/web.md, "The visitor page".
const $ = (id) => document.getElementById(id);

export function setupVisitors(visitors, withToken, fetchWithToken) {
  $("visitors").hidden = !visitors;
  if (!visitors) return;
  $("visit-qr").src = withToken("/qr/visit.svg");
  fetchWithToken("/qr/visit.txt")
    .then((r) => (r.ok ? r.text() : ""))
    .then((url) => { $("visit-url").textContent = url.trim(); })
    .catch(() => {});
  $("moderation").hidden = !visitors.moderate;
}

function waited(seconds) {
  return seconds < 90 ? `${Math.round(seconds)} s` : `${Math.round(seconds / 60)} min`;
}

// The bridge sends a prompt's wait only when the list changes: the page counts it on by itself.
const shown = { list: null, syncedAt: 0 };
setInterval(tick, 1000);

function tick() {
  const gone = (performance.now() - shown.syncedAt) / 1000;
  for (const item of shown.list || []) {
    const meta = document.querySelector(`#waiting li[data-ticket="${CSS.escape(item.ticket)}"] .muted`);
    if (meta) meta.textContent = ` waited ${waited(item.waited_s + gone)} · ${item.device}`;
  }
}

export function renderModeration(list, send) {
  if (!list || list === shown.list) return;  // the same status drawn again: nothing to redraw
  shown.list = list; shown.syncedAt = performance.now();
  $("moderation-count").textContent = list.length ? `${list.length} waiting` : "";
  const ol = $("waiting");
  ol.replaceChildren();
  for (const item of list) {
    const li = document.createElement("li");
    li.dataset.ticket = item.ticket;
    const text = document.createElement("span");
    text.className = "prompt";
    text.textContent = item.prompt;  // a visitor's words: text, never markup
    const meta = document.createElement("span");
    meta.className = "muted";
    meta.textContent = ` waited ${waited(item.waited_s)} · ${item.device}`;
    const buttons = [["Approve", "approve"], ["Reject", "reject"], ["Approve all from this device", "approve_device"]];
    li.append(text, meta);
    for (const [label, action] of buttons) {
      const b = document.createElement("button");
      b.type = "button"; b.textContent = label; b.dataset.action = action;
      b.onclick = () => send(`/ldm3d/moderation/${action}`, item.ticket);
      li.append(b);
    }
    ol.append(li);
  }
  if (!list.length) ol.innerHTML = '<li class="muted">nothing waiting</li>';
}
