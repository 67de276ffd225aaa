// The operator page: control, monitor, history, the show panel (showpanel.js) and the live viewer.
// It speaks the bridge's OSC contract over a JSON WebSocket (/ws): every button sends an
// OSC message ({"id", "address", "args"}) and every event the OSC subscribers get arrives
// here too. docs/web.md describes the protocol.
import { Viewer } from "./viewer.js";
import * as live from "./live.js";
import * as objects from "./objects.js";
import { renderModeration, setupVisitors } from "./moderation.js";
import { renderShow, setupShow } from "./showpanel.js";

const $ = (id) => document.getElementById(id);
const TOKEN_KEY = "ldm3d-bridge-token";
const page = {
  token: localStorage.getItem(TOKEN_KEY) || "", ws: null, nextId: 1, boot: null, heartbeat: 2, lastBeat: 0,
  retry: 0, hello: null, status: null, history: [], onScreen: null, live: true, viewer: null,
  drawn: [], arrived: [],  // when worlds were first drawn and events arrived (bench/web_page.py reads them)
  lastSent: { key: "", at: 0 },  // the double-tap guard
  timing: {},  // job id → {first: ms at its first progress, firstStep, lastStepAt}
  secondsPerStep: [], decodeSeconds: [],  // of recent jobs seen here: the estimates
  cancelling: null,  // the job whose cancel was asked for, until it ends
  queueKey: null,  // the queue as last drawn
};
const SAME_REQUEST_MS = 1000;  // the same request twice within this is a double tap: sent once
const RECENT = 5;  // jobs the estimates average over
window.ldm3d = page;  // for the curious operator (and the tests)

function withToken(url) {
  if (!page.token) return url;
  return url + (url.includes("?") ? "&" : "?") + "token=" + encodeURIComponent(page.token);
}
const fetchWithToken = (url) => fetch(url, page.token ? { headers: { "X-Ldm3d-Token": page.token } } : {});

function send(address, ...args) {
  if (!page.ws || page.ws.readyState !== WebSocket.OPEN) { note("offline", "the bridge is not connected; try again in a moment"); return false; }
  const key = JSON.stringify([address, args]), now = Date.now();
  if (key === page.lastSent.key && now - page.lastSent.at < SAME_REQUEST_MS) return false;  // a double tap
  page.lastSent = { key, at: now };
  page.ws.send(JSON.stringify({ id: page.nextId++, address, args }));
  return true;
}

// -- messages shown to the operator -------------------------------------------------------

function note(code, message, kind = "error") {
  const li = document.createElement("li");
  li.className = kind;
  const c = document.createElement("code");
  c.textContent = code;
  li.append(c, " ", message);
  li.title = "tap to dismiss";
  li.onclick = () => li.remove();
  $("errors").prepend(li);
  while ($("errors").children.length > 5) $("errors").lastChild.remove();
  setTimeout(() => li.remove(), kind === "error" ? 30000 : 8000);
}

// -- connection ------------------------------------------------------------------------------

async function connect() {
  if (page.retry === 0 || page.retry > 2) {  // at the start, and when refused again and again: perhaps the token
    try {
      const r = await fetchWithToken("/?HOST_INFO");
      if (r.status === 401) { askToken(); return; }
    } catch { /* the bridge is down: keep trying */ }
  }
  const scheme = location.protocol === "https:" ? "wss" : "ws";
  const ws = new WebSocket(`${scheme}://${location.host}${withToken("/ws")}`);
  page.ws = ws;
  ws.onmessage = (e) => receive(JSON.parse(e.data));
  ws.onclose = () => {
    page.ws = null;
    lamp();
    $("state").textContent = "offline: reconnecting…";
    page.retry++;
    setTimeout(connect, Math.min(2000, 250 * 2 ** Math.min(page.retry, 3)));
  };
}

function askToken() {
  const dialog = $("token-dialog");
  dialog.onclose = () => {
    page.token = $("token").value.trim();
    localStorage.setItem(TOKEN_KEY, page.token);
    page.retry = 0;
    connect();
  };
  dialog.showModal();
}

function receive(m) {
  if (m.type === "hello") return hello(m);
  if (m.type === "status") return status(m);
  if (m.type === "preview") return live.preview(m);
  if (m.type === "event") {
    page.arrived.push({ address: m.address, t: m.t, at: Date.now() });
    if (page.arrived.length > 100) page.arrived.shift();
  }
  if (m.type === "event" || m.type === "reply") return event(m.address, m.args, m);
}

function hello(m) {
  if (page.boot && page.boot !== m.boot) note("restarted", "the bridge restarted; everything below is current", "info");
  page.hello = m; page.boot = m.boot; page.heartbeat = m.heartbeat_s; page.lastBeat = Date.now(); page.retry = 0;
  $("model").textContent = `${m.model} · v${m.bridge}`;
  controls(m.ranges, m.stage);
  $("strength").value = m.display.strength ?? 1;
  if (page.viewer) page.viewer.strength = Number($("strength").value);
  page.history = m.history;
  page.onScreen = m.world?.job_id ?? null;
  setupVisitors(m.visitors, withToken, fetchWithToken);
  status(m.status);
  if (m.world && page.live) showWorld(m.world);
  objects.show(m.object);
  renderHistory();
  lamp();
}

function event(address, args, m) {
  switch (address) {
    case "/ldm3d/state":
      page.lastBeat = Date.now();
      $("state").textContent = args[6] > 1 ? `${args[0]} · workers ${args[5]}/${args[6]}` : args[0];
      if (page.boot && args[4] && args[4] !== page.boot) page.ws?.close();  // a new bridge: start over
      break;
    case "/ldm3d/progress": {
      const [id, step, total] = args;
      timeStep(id, step, total);
      const first = page.status?.running?.[0];  // with several workers: the bar follows the earliest job
      if (!first || first.id === id) progress(step, total, id);
      break;
    }
    case "/ldm3d/ready": {
      timeDone(args[0]);
      const fresh = live.justMade(args[0]) || isRunning(args[0]);  // a morph just made (not recalled) plays
      live.ended(args[0], m.world);
      // Only a job that ran fills the bar, and only for a moment: a recall or a cue ran nothing.
      if (page.status?.running?.some((job) => job.id === args[0])) progress(1, 1);
      if (m.world) {
        if (!m.world.scene && !page.history.some((w) => w.job_id === m.world.job_id)) page.history.unshift(m.world);
        page.onScreen = m.world.job_id;
        if (page.live && m.world.morph && fresh) playMorph(m.world, m.t);
        else if (page.live) showWorld(m.world, m.t);
        renderHistory();
      }
      break;
    }
    case "/ldm3d/morph/frame":
      live.morphFrame(args, m.frame);
      break;
    case "/ldm3d/object/ready":
      if (m.type === "event") objects.ready(args, m.object);
      break;
    case "/ldm3d/object/clear":
      if (m.type === "event") objects.show(null);
      break;
    case "/ldm3d/error":
      live.ended(args[0]);
      if (args[0] && page.cancelling === args[0]) cancelled();
      delete page.timing[args[0]];
      note(args[1], (args[0] ? `job ${args[0]}: ` : "") + args[2]);
      break;
    case "/ldm3d/cancelled":
      live.ended(args[0]);
      delete page.timing[args[0]];
      if (page.cancelling === args[0]) cancelled();
      note("cancelled", `job ${args[0]} was cancelled`, "info");
      break;
    case "/ldm3d/warning":
      note(args[1], `job ${args[0]}: ${args[2]}`, "info");
      break;
    case "/ldm3d/accepted":
      note("accepted", args[1] > 1 ? `job ${args[0]} waits: ${args[1] - 1} ahead of it` : `job ${args[0]} runs next`, "info");
      break;
    case "/ldm3d/display/strength":
      $("strength").value = args[0];
      if (page.viewer) page.viewer.strength = Number(args[0]);
      break;
  }
}

// -- what is shown --------------------------------------------------------------------------

function lamp() {
  const online = page.ws?.readyState === WebSocket.OPEN && Date.now() - page.lastBeat < 3 * page.heartbeat * 1000;
  $("lamp").className = online ? "lamp online" : "lamp";
  $("lamp").textContent = online ? "online" : "offline";
}
setInterval(lamp, 500);

// -- progress, its phases and the estimates ---------------------------------------------------

const mean = (xs) => xs.reduce((a, b) => a + b, 0) / xs.length;
const remember = (list, value) => { list.push(value); if (list.length > RECENT) list.shift(); };
const seconds = (s) => (s < 10 ? s.toFixed(1) : Math.round(s).toString()) + " s";
const cancellingText = (id) => `${id}: cancelling…`;
/** Seconds per step of a job's timing record `t` up to `step`; null before its second step. */
const ownPace = (t, step) => (step > t.firstStep ? (t.lastStepAt - t.first) / 1000 / (step - t.firstStep) : null);
/** The mean decode-and-write time of recent jobs; null before the first. */
const recentDecode = () => (page.decodeSeconds.length ? mean(page.decodeSeconds) : null);

function timeStep(id, step, total) {
  const now = Date.now(), t = page.timing[id];
  if (!t) { page.timing[id] = { first: now, firstStep: step, lastStepAt: now }; return; }
  t.lastStepAt = now;
  const pace = step >= total ? ownPace(t, step) : null;
  if (pace !== null) remember(page.secondsPerStep, pace);
}

function timeDone(id) {
  const t = page.timing[id];
  if (t) { remember(page.decodeSeconds, (Date.now() - t.lastStepAt) / 1000); delete page.timing[id]; }
}

/** Seconds left for job `id` at `step` of `total`: its own pace so far, else recent jobs'; null without either. */
function estimate(id, step, total) {
  const t = page.timing[id];
  const pace = (t ? ownPace(t, step) : null) ?? (page.secondsPerStep.length ? mean(page.secondsPerStep) : null);
  if (pace === null) return null;
  return (total - step) * pace + (recentDecode() ?? 0);
}

const isRunning = (id) => Boolean(page.status?.running?.some((job) => job.id === id));

function progress(step, total, id) {
  const fraction = total ? step / total : 0;
  $("bar").style.width = `${Math.round(fraction * 100)}%`;
  page.progressAt = Date.now();
  let text = "";
  if (id && page.cancelling === id) text = cancellingText(id);
  else if (total && step < total) {
    const left = estimate(id, step, total);
    text = `${id ?? ""} step ${step} of ${total}` + (left === null ? "" : ` · about ${seconds(left)} left`);
  } else if (total && id) {
    const decode = recentDecode();
    text = `${id}: decoding and writing…` + (decode === null ? "" : ` · about ${seconds(decode)}`);
  }
  $("progress-text").textContent = text;
  // A full bar is a job's last step: the job then decodes and writes its world; the bar empties once
  // it no longer runs (checked a moment later: its status can arrive before its last step's event).
  if (total && step >= total) {
    const check = () => {
      if (Date.now() - page.progressAt < 1000) return;  // another job moved the bar meanwhile
      if (id && isRunning(id)) { setTimeout(check, 500); return; }
      progress(0, 0);
    };
    setTimeout(check, 1200);
  }
}

function status(s) {
  page.status = s;
  const w = s.workers;
  $("state").textContent = w && w.total > 1 ? `${s.state} · workers ${w.alive}/${w.total}` : s.state;
  if (page.cancelling && !isRunning(page.cancelling) && !s.queue.some((job) => job.id === page.cancelling)) cancelled();
  if (!s.running.length) progress(0, 0);
  const rows = [...s.running.map((job) => ({ ...job, running: true })), ...s.queue];
  renderShow(s.show);
  renderModeration(s.moderation, send);
  // A push that changed nothing here (a countdown's seconds) leaves the list alone: no button is
  // replaced under a finger between its touch and its release.
  const key = JSON.stringify([rows, page.cancelling]);
  if (key === page.queueKey) return;
  page.queueKey = key;
  const q = $("queue");
  q.replaceChildren();
  for (const job of rows) {
    const li = document.createElement("li");
    li.className = job.running ? "running" : "";
    li.dataset.job = job.id;
    const text = document.createElement("span");
    text.className = "prompt";
    text.textContent = `${job.running ? "▶ " : ""}${job.background ? "(pre-generation) " : ""}${job.prompt}`;
    text.title = `${job.id} · ${job.kind}`;
    const b = document.createElement("button");
    b.type = "button"; b.textContent = "Cancel"; b.onclick = () => cancel(job.id);
    if (page.cancelling === job.id) { b.textContent = "Cancelling…"; b.disabled = true; }
    li.append(text, b);
    q.append(li);
  }
  if (!rows.length) q.innerHTML = '<li class="muted">empty</li>';
}

const ARM_MS = 3000;  // "Put live" asks for a second tap within this

function renderHistory() {
  const box = $("history");
  box.replaceChildren();
  $("history-hint").hidden = page.history.length > 0;
  for (const w of page.history) {
    const card = document.createElement("div");
    card.className = "card" + (w.job_id === page.onScreen ? " on-screen" : "");
    card.dataset.job = w.job_id;
    const open = document.createElement("button");
    open.type = "button"; open.className = "open"; open.title = "look at it here only (not on the dome)";
    const img = document.createElement("img");
    img.src = withToken(w.thumb); img.alt = w.prompt; img.loading = "lazy";
    const label = document.createElement("span");
    label.textContent = w.prompt || w.job_id;
    open.append(img, label);
    open.onclick = () => { page.live = false; $("live").hidden = false; showWorld(w); };
    const live = document.createElement("button");
    live.type = "button"; live.className = "live";
    live.textContent = w.job_id === page.onScreen ? "On the dome" : "Put live";
    live.title = `put ${w.job_id} on the dome, for everyone (tap twice)`;
    live.onclick = () => {
      if (!live.classList.contains("armed")) {
        live.classList.add("armed"); live.textContent = "Tap again: on the dome";
        setTimeout(() => { if (live.isConnected) { live.classList.remove("armed"); live.textContent = "Put live"; } }, ARM_MS);
        return;
      }
      live.classList.remove("armed"); live.textContent = "Putting live…";
      page.live = true; $("live").hidden = true;  // this page follows the dome again
      send("/ldm3d/recall", w.job_id);
    };
    card.append(open, live);
    if (w.morph) {
      const play = document.createElement("button");
      play.type = "button"; play.className = "play"; play.textContent = "▶ Play the morph";
      play.title = "play the way to this world here only (not on the dome)";
      play.onclick = () => { page.live = false; $("live").hidden = false; playMorph(w); };
      card.append(play);
    }
    box.append(card);
  }
}

function label(world) {
  page.onScreen = page.live ? world.job_id : page.onScreen;
  $("empty-hint").hidden = true;
  $("world-label").textContent = `${page.live ? "on screen" : "preview, not on the dome"}: ${world.prompt} · ${world.width}×${world.height} · seed ${world.seed}`;
}

function playMorph(world, sentAt) {
  if (!page.viewer) return;
  label(world);
  world.sentAt = sentAt;
  live.play(world);
}

async function showWorld(world, sentAt) {
  if (!page.viewer) return;
  live.stop();
  label(world);
  try {
    world.sentAt = sentAt;
    await page.viewer.show(world, fetchWithToken);
  } catch (err) {
    note("texture", `cannot show ${world.job_id}: ${err.message}`);
  }
}

// -- the form ---------------------------------------------------------------------------------

function controls(r, stage) {
  const d = r.defaults;
  const set = (id, lo, hi, value) => { const e = $(id); e.min = lo; e.max = hi; e.value = value; };
  set("steps", r.steps[0], r.steps[1], stage.steps ?? d.steps);
  set("guidance", r.guidance[0], r.guidance[1], stage.guidance ?? d.guidance);
  set("width", r.width[0], r.width[1], stage.width ?? d.width);
  set("height", r.height[0], r.height[1], stage.height ?? d.height);
  const sampling = $("sampling");
  sampling.replaceChildren(...r.samplings.map((name) => new Option(name, name)));
  sampling.value = stage.sampling ?? d.sampling;
  for (const id of ["steps", "guidance"]) $(id).dispatchEvent(new Event("input"));
}
for (const id of ["steps", "guidance"]) {
  $(id).addEventListener("input", () => { document.querySelector(`output[for=${id}]`).textContent = $(id).value; });
}

$("generate").addEventListener("submit", (e) => {
  e.preventDefault();
  const options = ["steps", Number($("steps").value), "guidance", Number($("guidance").value),
    "width", Number($("width").value), "height", Number($("height").value), "sampling", $("sampling").value];
  if ($("negative").value) options.push("negative", $("negative").value);
  if (Number($("seed").value) >= 0) options.push("seed", Number($("seed").value));
  send("/ldm3d/generate", $("prompt").value, ...options);
});
function cancel(id) {
  if (!send("/ldm3d/cancel", ...(id ? [id] : []))) return;
  const target = id ?? page.status?.running?.[0]?.id ?? null;
  if (!target) return;  // nothing runs: the bridge cancels the newest waiting job and says which
  page.cancelling = target;
  $("cancel").disabled = true; $("cancel").textContent = "Cancelling…";
  if (isRunning(target)) $("progress-text").textContent = cancellingText(target);  // the bar stays as it is
  status(page.status);
}

function cancelled() {
  page.cancelling = null;
  $("cancel").disabled = false; $("cancel").textContent = "Cancel";
}

$("cancel").onclick = () => cancel();
setupShow(send);
$("live").onclick = () => {
  page.live = true; $("live").hidden = true;
  const w = page.history.find((h) => h.job_id === page.onScreen) || page.hello?.world;
  if (w) showWorld(w);
};
$("strength").addEventListener("input", () => { if (page.viewer) page.viewer.strength = Number($("strength").value); });
$("orbit").onclick = () => {
  const on = $("orbit").getAttribute("aria-pressed") !== "true";
  $("orbit").setAttribute("aria-pressed", String(on));
  page.viewer?.setOrbit(on);
};
$("reset-view").onclick = () => {
  page.viewer?.reset();
  $("orbit").setAttribute("aria-pressed", "false");
};
$("view").tabIndex = 0;  // the keys work once the view has the focus (a click on it gives it)
$("view").addEventListener("keydown", (e) => { if (page.viewer?.key(e.key)) e.preventDefault(); });
$("viewer").addEventListener("pointerdown", () => $("view").focus({ preventScroll: true }));
$("gyro").onclick = async () => {
  const on = $("gyro").classList.toggle("primary");
  if (!(await page.viewer.gyro(on)) && on) { $("gyro").classList.remove("primary"); note("gyro", "this device gives no orientation", "info"); }
};

// -- start ------------------------------------------------------------------------------------

async function start() {
  try {
    const source = await (await fetch("/ui/ldm3d_displace.glsl")).text();
    page.viewer = new Viewer($("viewer"), source);
    page.viewer.inset = $("depth-inset");
    page.viewer.onDrawn = (world) => {
      page.drawn.push({ job_id: world.job_id, sentAt: world.sentAt, at: Date.now() });
      $("depth-box").hidden = false;
      if (page.drawn.length > 100) page.drawn.shift();
    };
  } catch (err) {
    note("viewer", `no 3D view on this device: ${err.message}`);
  }
  live.setupLive(page, fetchWithToken, note);
  objects.setupObjects(page, fetchWithToken, note);
  connect();
}
start();
