// The visitor page: one prompt, then its own status, polled (docs/web.md, "The visitor page").
// It knows only its own ticket; it never sees another visitor's prompt, a job id or a path.
"use strict";

const form = document.getElementById("form");
const box = document.getElementById("prompt");
const send = document.getElementById("send");
const status = document.getElementById("status");
const count = document.getElementById("count");
const FINAL = new Set(["refused", "dropped", "failed", "unknown", "shown"]);
let timer = null;

function say(text, bad) {
  status.textContent = text;
  status.className = bad ? "bad" : "";
}

function counted() {
  count.textContent = `${box.value.length} / ${box.maxLength}`;
}

async function poll(ticket) {
  clearTimeout(timer);
  try {
    const response = await fetch(`/visit/status/${encodeURIComponent(ticket)}`, { cache: "no-store" });
    const answer = await response.json();
    say(answer.text, ["refused", "dropped", "failed", "unknown"].includes(answer.state));
    if (FINAL.has(answer.state)) {
      localStorage.removeItem("ldm3d-ticket");
      return;
    }
    timer = setTimeout(() => poll(ticket), answer.state === "on_screen" ? 5000 : 2000);
  } catch (error) {
    timer = setTimeout(() => poll(ticket), 5000); // the network came back or will
  }
}

form.addEventListener("submit", async (event) => {
  event.preventDefault();
  const prompt = box.value.trim();
  if (!prompt) return;
  send.disabled = true;
  try {
    const response = await fetch("/visit/prompt", {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ prompt }),
    });
    const answer = await response.json();
    if (!answer.ok) {
      say(answer.message, true);
      return;
    }
    box.value = "";
    counted();
    localStorage.setItem("ldm3d-ticket", answer.ticket);
    say("Sent. Thank you!", false);
    poll(answer.ticket);
  } catch (error) {
    say("The installation cannot be reached right now. Please try again.", true);
  } finally {
    send.disabled = false;
  }
});

box.addEventListener("input", counted);
fetch("/visit/config", { cache: "no-store" })
  .then((r) => r.json())
  .then((config) => { box.maxLength = config.max_chars; counted(); })
  .catch(() => counted());
const kept = localStorage.getItem("ldm3d-ticket");
if (kept) poll(kept);
