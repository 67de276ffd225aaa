// The world as it forms and the travel between worlds, in the page's viewer (docs/web.md).
// Previews: the bridge pushes {"type": "preview", job, step, total, width, height, rgb, depth} while a
// job denoises; the viewer shows the newest of the job the progress bar follows, greyed ("forming"),
// until its world arrives (/ldm3d/ready: the real world crossfades in) or it ends without one.
// Morphs: each /ldm3d/morph/frame (with its texture URLs) is shown forming as it is rendered; at the
// morph's /ldm3d/ready the page plays it from its first frame to the world it arrives at, crossfading
// frame to frame over frame_seconds each; a morph's history card can play it again (this page only).
const $ = (id) => document.getElementById(id);
const FORMING_KEY = "ldm3d-bridge-forming";
const FIRST_FADE_S = 0.5;  // into a morph's first frame (the world it starts from)
const KEEP = 200;  // entries kept in the logs below

let page = null, fetcher = null, note = null;
const endedJobs = new Set();  // jobs that ended here: a preview of one decoded late is not shown
const seenMorphs = new Set();  // morphs whose frames this page saw rendered: they play at their ready

function log(list, entry) { list.push({ ...entry, at: Date.now() }); if (list.length > KEEP) list.shift(); }
const sleep = (ms) => new Promise((done) => setTimeout(done, ms));

/** Wire the page's state (app.js's `page`), its token-adding fetch and its notes. */
export function setupLive(state, fetchWithToken, noteFn) {
  page = state; fetcher = fetchWithToken; note = noteFn;
  Object.assign(page, {
    showForming: localStorage.getItem(FORMING_KEY) !== "off",
    forming: null,  // the job whose preview is on screen
    formed: [],  // previews shown: {job, step, total, at}
    morphShown: [],  // morph frames shown: {morph_id, index, playing, at}
    playing: null,  // the morph being played ({morph_id}), until it ends or something else is shown
  });
  const button = $("forming-toggle");
  button.setAttribute("aria-pressed", String(page.showForming));
  button.onclick = () => {
    page.showForming = !page.showForming;
    button.setAttribute("aria-pressed", String(page.showForming));
    localStorage.setItem(FORMING_KEY, page.showForming ? "on" : "off");
    if (!page.showForming && page.forming) { const job = page.forming; unmark(); back(job); }
  };
  page.viewer && (page.viewer.onShown = shown);
}

function shown(item) {
  if (item.kind === "preview") log(page.formed, { job: item.job, step: item.step, total: item.total });
  else if (item.kind === "frame") log(page.morphShown, { morph_id: item.morph_id, index: item.index, playing: Boolean(item.playing) });
  else if (item.playIndex !== undefined) log(page.morphShown, { morph_id: item.job_id, index: item.playIndex, playing: true });
}

function mark(job, text) {
  page.forming = job;
  $("view").dataset.forming = job;
  $("forming").textContent = text;
  $("forming").hidden = false;
  $("empty-hint").hidden = true;
}

function unmark() {
  page.forming = null;
  delete $("view").dataset.forming;
  $("forming").hidden = true;
}

/** Whether this page shows what forms now: previews on, following the dome, no morph playing. */
const following = () => Boolean(page.viewer && page.showForming && page.live && !page.playing);

/** A `preview` message from the bridge. */
export async function preview(m) {
  if (!following()) return;
  const first = page.status?.running?.[0];  // with several workers: the job the progress bar follows
  if (first && first.id !== m.job) return;
  const wanted = () => following() && !endedJobs.has(m.job);
  if (!wanted()) return;
  try {
    if (await page.viewer.showPreview(m, wanted)) mark(m.job, `forming · step ${m.step} of ${m.total}`);
  } catch (err) {
    note("preview", `cannot show the preview of ${m.job}: ${err.message}`);
  }
}

/** `/ldm3d/morph/frame` (with `frame`: its texture URLs): shown forming as the morph renders. */
export async function morphFrame(args, frame) {
  const [morphId, index, frames] = args;
  remember(seenMorphs, morphId);
  if (!frame || !following()) return;
  try {
    const loaded = await page.viewer.load(frame, fetcher);
    if (!following() || endedJobs.has(morphId)) return;
    page.viewer.put(loaded, { ...frame, kind: "frame" }, { forming: true, fadeSeconds: 0.4 });
    mark(morphId, `morph · frame ${index + 1} of ${frames}`);
  } catch (err) {
    note("morph", `cannot show frame ${index} of ${morphId}: ${err.message}`);
  }
}

/** A job ended: its world arrived (`world`), or it was cancelled or failed (back to what was on screen). */
export function ended(id, world) {
  remember(endedJobs, id);
  if (page.forming !== id) return;
  unmark();
  if (!world) back(id);
}

/** The forming picture of `job` goes: the world on screen comes back (or the empty sphere). */
function back(job) {
  if (!page.viewer || page.viewer.shown?.kind === undefined || page.playing) return;
  const w = page.history.find((h) => h.job_id === page.onScreen) || page.hello?.world;
  if (w) page.viewer.show(w, fetcher).catch((err) => note("texture", `cannot show ${w.job_id}: ${err.message}`));
  else { page.viewer.clear(); $("empty-hint").hidden = false; }
}

/** Whether the frames of morph `id` were seen rendering here (its first ready then plays it; a recall later
 * does not): asked once. */
export function justMade(id) { return seenMorphs.delete(id); }

function remember(set, id) {
  set.add(id);
  if (set.size > KEEP) set.delete(set.values().next().value);
}

/** Stop a morph that plays (something else is shown). */
export function stop() {
  page.playing = null;
  if (!page.forming) $("forming").hidden = true;
}

/** Play morph `world` (a world with `morph`: its manifest's URL): its frames in order, crossfading over
 * frame_seconds each, ending on the world itself. Resolves when it ends (or is stopped). */
export async function play(world) {
  if (!page.viewer) return;
  const token = { morph_id: world.job_id };
  page.playing = token;
  unmark();
  try {
    const r = await fetcher(world.morph);
    if (!r.ok) throw new Error(`HTTP ${r.status}`);
    const manifest = await r.json();
    const frames = manifest.written.filter((f) => f.index < manifest.frames - 1).sort((a, b) => a.index - b.index);
    const items = [...frames.map((f) => ({ ...f, kind: "frame", playing: true })), { ...world, playIndex: manifest.frames - 1 }];
    const seconds = Number(manifest.frame_seconds) || 0.5;
    let next = page.viewer.load(items[0], fetcher);
    for (let i = 0; i < items.length; i++) {
      const loaded = await next;
      if (page.playing !== token) return;
      if (i + 1 < items.length) next = page.viewer.load(items[i + 1], fetcher);
      const fade = i === 0 ? FIRST_FADE_S : seconds;
      page.viewer.put(loaded, items[i], { fadeSeconds: fade });
      $("forming").textContent = `morph · ${i + 1} of ${items.length}`;
      $("forming").hidden = false;
      await sleep(1000 * fade);
      if (page.playing !== token) return;
    }
  } catch (err) {
    note("morph", `cannot play ${world.job_id}: ${err.message}`);
    if (page.playing === token) page.viewer.show(world, fetcher).catch(() => {});
  } finally {
    if (page.playing === token) page.playing = null;
    if (!page.playing && !page.forming) $("forming").hidden = true;
  }
}
