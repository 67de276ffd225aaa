// The operator page's show panel, for an operator used to QLab: the current cue and its state,
// the cue that stands by (what GO fires), the countdown of the current cue (or of its pre-wait),
// running or paused, GO / Back / Pause-Resume, the cue list (tap a cue: it stands by; Show: it
// fires now), and loading a cue file. Every button sends the OSC contract's message, as TouchOSC
// would (docs/osc.md, docs/shows.md); docs/web.md, "The show panel".
const $ = (id) => document.getElementById(id);
const FILE_KEY = "ldm3d-bridge-show-file";  // the cue file this browser loaded last
const STATE_WORDS = { shown: "shown", rendering: "rendering…", failed: "failed", prewait: "pre-wait" };
const panel = {
  show: null, send: null,
  cuesKey: null,  // the cue list as last drawn: redrawn only when it changes, never under a finger
  syncedAt: 0,  // performance.now() when the show's `remaining` arrived
};

export function setupShow(send) {
  panel.send = send;
  $("show-file").value = localStorage.getItem(FILE_KEY) || "";
  $("cue-go").onclick = () => send("/ldm3d/cue/go");
  $("cue-back").onclick = () => send("/ldm3d/cue/back");
  $("show-pause").onclick = () => send(panel.show?.running ? "/ldm3d/show/pause" : "/ldm3d/show/resume");
  $("show-pregen").onclick = () => send("/ldm3d/show/pregen");
  $("show-load").addEventListener("submit", (e) => e.preventDefault());  // Enter in the field fires nothing
  $("show-load-fire").onclick = () => load(1);
  $("show-load-quiet").onclick = () => load(0);
  setInterval(countdown, 200);
}

function load(fire) {
  if (!$("show-load").reportValidity()) return;  // no file name yet: the browser says so at the field
  const file = $("show-file").value.trim();
  localStorage.setItem(FILE_KEY, file);
  panel.send("/ldm3d/show/load", file, fire);
}

/** The show as the bridge's status has it (null: none loaded): the load controls stay either way. */
export function renderShow(show) {
  if (show !== panel.show) panel.syncedAt = performance.now();  // a fresh status (not the same one drawn again)
  panel.show = show;
  $("show-desk").hidden = !show;
  $("show-name").textContent = show ? show.show : "";
  $("show-none").hidden = Boolean(show);
  countdown();
  if (!show) { panel.cuesKey = null; return; }
  const byNumber = (number) => show.cues.find((cue) => cue.number === number);
  const current = byNumber(show.cue), standby = byNumber(show.standby);
  $("cue-current").textContent = current ? `${current.number} ${current.name}` : "no cue fired yet";
  $("cue-current").classList.toggle("muted", !current);
  $("cue-state").textContent = current ? STATE_WORDS[show.cue_state] ?? show.cue_state : "";
  $("cue-state").className = `state ${show.cue_state}`;
  $("cue-standby").textContent = standby ? `${standby.number} ${standby.name}` : "nothing stands by";
  $("cue-standby").classList.toggle("muted", !standby);
  $("cue-go").textContent = standby ? `GO ▶ ${standby.number}` : "GO";
  $("cue-go").disabled = !standby;
  $("cue-go").title = standby ? `fire cue ${standby.number} (${standby.name}) on the dome` : "nothing stands by: tap a cue below";
  $("show-running").textContent = show.running ? "running" : "paused";
  $("show-running").className = show.running ? "running" : "paused";
  $("show-now").classList.toggle("paused", !show.running);
  $("show-pause").textContent = show.running ? "❚❚ Pause" : "▶ Resume";
  $("show-pause").setAttribute("aria-pressed", String(!show.running));
  const skipped = show.skipped ? ` · ${show.skipped} skipped` : "";
  $("show-state").textContent = `${show.rendered}/${show.total} rendered${skipped}${show.loop ? " · loops" : ""}`;
  const key = JSON.stringify(show.cues);
  if (key !== panel.cuesKey) { panel.cuesKey = key; renderCues(show.cues); }
}

function renderCues(cues) {
  const list = $("cues");
  list.replaceChildren();
  for (const cue of cues) {
    const li = document.createElement("li");
    li.className = [cue.current && "current", cue.standby && "standby", cue.skipped && "skipped"].filter(Boolean).join(" ");
    li.dataset.cue = cue.number;
    const mark = document.createElement("span");
    mark.className = "mark"; mark.textContent = cue.skipped ? "✕" : cue.rendered ? "●" : "○";
    mark.title = cue.skipped ? "failed again and again: GO and auto-follow skip it until the show is loaded again"
      : cue.rendered ? "rendered: shows at once" : "not rendered yet: showing it renders it first";
    const name = document.createElement("button");  // tapping a cue stands it by, as in QLab: the dome is untouched
    name.type = "button"; name.className = "name"; name.title = "stand by: GO fires it next";
    const tag = cue.current ? "now" : cue.standby ? "next" : "";
    name.textContent = `${cue.number} ${cue.name}`;
    if (tag) { const t = document.createElement("span"); t.className = "tag"; t.textContent = tag; name.prepend(t); }
    name.onclick = () => panel.send("/ldm3d/cue/standby", cue.number);
    const b = document.createElement("button");
    b.type = "button"; b.className = "fire"; b.textContent = "Show"; b.title = "on the dome now";
    b.onclick = () => panel.send("/ldm3d/cue", cue.number);
    li.append(mark, name, b);
    list.append(li);
  }
}

/** Whole seconds (rounded up: 0 only when it is over), m:ss from a minute. */
function clock(s) {
  const whole = Math.ceil(s - 1e-6);
  return whole < 60 ? `${whole} s` : `${Math.floor(whole / 60)}:${String(whole % 60).padStart(2, "0")}`;
}

/** The countdown, counted here between the bridge's pushes: the pre-wait always counts, the cue's
 * duration only while the show runs (paused: the value it froze at). */
function countdown() {
  const show = panel.show, box = $("countdown");
  if (!show || !(show.remaining >= 0)) { box.textContent = ""; return; }
  const prewait = show.cue_state === "prewait";
  const gone = prewait || show.running ? (performance.now() - panel.syncedAt) / 1000 : 0;
  const left = Math.max(0, show.remaining - gone);
  box.textContent = prewait ? `pre-wait ${clock(left)}` : `${clock(left)} left`;
}
