// The world's object in the page's viewer (docs/web.md, "Objects"). An object job (/ldm3d/object) ends in
// /ldm3d/object/ready, whose page event carries `object`: {job_id, glb (its mesh.glb's URL), placement:
// {yaw, pitch, distance, size, turn}, prompt, …}; the hello carries the newest object the same way. The
// world holds one object, as TouchDesigner's slot does: a newer one replaces the older. It is drawn from
// its GLB (three.js's GLTFLoader, vendored, imported when the first object comes), unlit with its vertex
// colours (the world sphere is unlit too), depth-tested against the sphere, placed with the matrix of
// bridge/placement.py (Placement.matrix) scaled by the viewer's base radius.
import * as THREE from "three";
import { BASE_RADIUS } from "./viewer.js";

const $ = (id) => document.getElementById(id);
const OBJECTS_KEY = "ldm3d-bridge-objects";
const KEEP = 50;  // entries kept in the logs below
const DEGREES = Math.PI / 180;

/** Placement.matrix(radius) of bridge/placement.py: scale by size × radius, turn about +Y by
 * (turn − yaw) degrees, move distance × radius toward yaw/pitch (direction (cos p sin y, sin p, −cos p cos y)). */
export function placementMatrix(p, radius = BASE_RADIUS) {
  const yaw = p.yaw * DEGREES, pitch = p.pitch * DEGREES, angle = (p.turn - p.yaw) * DEGREES;
  const c = Math.cos(angle), s = Math.sin(angle), k = p.size * radius, d = p.distance * radius;
  return new THREE.Matrix4().set(  // row by row
    c * k, 0, s * k, Math.cos(pitch) * Math.sin(yaw) * d,
    0, k, 0, Math.sin(pitch) * d,
    -s * k, 0, c * k, -Math.cos(pitch) * Math.cos(yaw) * d,
    0, 0, 0, 1,
  );
}

const toLinear = (c) => (c <= 0.04045 ? c / 12.92 : ((c + 0.055) / 1.055) ** 2.4);

/** A GLB's first mesh as a geometry. Its colours (glTF's COLOR_0) become linear floats, which the renderer
 * encodes back to the file's bytes on screen: the colours as they are, as the sphere shows its RGB. */
export async function parseGlb(buffer) {
  const { GLTFLoader } = await import("./vendor/three/GLTFLoader.js");
  const gltf = await new GLTFLoader().parseAsync(buffer, "");
  let found = null;
  gltf.scene.traverse((o) => { if (!found && o.isMesh) found = o; });
  gltf.scene.traverse((o) => { if (o.isMesh) [o.material].flat().forEach((m) => m.dispose()); });
  if (!found) throw new Error("no mesh in the GLB");
  const geometry = found.geometry;
  const color = geometry.getAttribute("color");
  if (color) {
    const rgb = new Float32Array(color.count * 3);
    for (let i = 0; i < color.count; i++) {
      rgb[3 * i] = toLinear(color.getX(i)); rgb[3 * i + 1] = toLinear(color.getY(i)); rgb[3 * i + 2] = toLinear(color.getZ(i));
    }
    geometry.setAttribute("color", new THREE.BufferAttribute(rgb, 3));
  }
  return geometry;
}

/** The viewer's one object: at most one mesh in its scene. */
export class ObjectSlot {
  constructor(viewer) {
    this.viewer = viewer;
    this.mesh = null;  // the object shown (userData: job_id, placement)
    this.visible = true;
    this.disposed = [];  // ids of the objects replaced (their geometry freed)
    this._loads = 0;
  }

  /** Fetch, parse and place `info` (the page's `object`); resolves false when a newer one came meanwhile. */
  async show(info, fetcher) {
    const at = ++this._loads;
    const r = await fetcher(info.glb);
    if (!r.ok) throw new Error(`HTTP ${r.status}`);
    const geometry = await parseGlb(await r.arrayBuffer());
    if (at !== this._loads) { geometry.dispose(); return false; }
    this.clear();
    const material = new THREE.MeshBasicMaterial({ vertexColors: Boolean(geometry.getAttribute("color")), side: THREE.DoubleSide });
    const mesh = new THREE.Mesh(geometry, material);
    mesh.matrixAutoUpdate = false;
    mesh.matrix.copy(placementMatrix(info.placement));
    mesh.updateMatrixWorld(true);
    mesh.visible = this.visible;
    mesh.userData = { object: true, job_id: info.job_id, placement: info.placement };
    this.viewer.scene.add(mesh);
    this.mesh = mesh;
    this.viewer.dirty = true;
    return true;
  }

  /** No object (the one shown leaves the scene, its geometry freed). */
  clear() {
    this._loads++;
    const mesh = this.mesh;
    if (!mesh) return;
    this.viewer.scene.remove(mesh);
    mesh.geometry.dispose(); mesh.material.dispose();
    this.disposed.push(mesh.userData.job_id);
    if (this.disposed.length > KEEP) this.disposed.shift();
    this.mesh = null;
    this.viewer.dirty = true;
  }

  setVisible(on) {
    this.visible = on;
    if (this.mesh) this.mesh.visible = on;
    this.viewer.dirty = true;
  }
}

let page = null, fetcher = null, note = null;

/** Wire the page's state (app.js's `page`), its token-adding fetch and its notes; the Objects switch. */
export function setupObjects(state, fetchWithToken, noteFn) {
  page = state; fetcher = fetchWithToken; note = noteFn;
  page.showObjects = localStorage.getItem(OBJECTS_KEY) !== "off";
  page.objects = page.viewer ? new ObjectSlot(page.viewer) : null;  // (the tests read it)
  page.objectShown = [];  // objects put in the viewer: {job_id, at}
  page.objects?.setVisible(page.showObjects);
  const button = $("objects-toggle");
  button.setAttribute("aria-pressed", String(page.showObjects));
  button.onclick = () => {
    page.showObjects = !page.showObjects;
    button.setAttribute("aria-pressed", String(page.showObjects));
    localStorage.setItem(OBJECTS_KEY, page.showObjects ? "on" : "off");
    page.objects?.setVisible(page.showObjects);
  };
}

/** The newest object (an /ldm3d/object/ready's `object`, or the hello's; null: none): into the viewer. */
export async function show(info) {
  const slot = page.objects;
  if (!slot) return;
  if (!info) { slot.clear(); return; }
  $("objects-toggle").hidden = false;
  if (slot.mesh?.userData.job_id === info.job_id) return;  // (a reconnect's hello)
  try {
    if (await slot.show(info, fetcher)) {
      page.objectShown.push({ job_id: info.job_id, at: Date.now() });
      if (page.objectShown.length > KEEP) page.objectShown.shift();
    }
  } catch (err) {
    note("object", `cannot show object ${info.job_id}: ${err.message}`);
  }
}

/** `/ldm3d/object/ready`: its object, or a note when the bridge could not offer it. */
export function ready(args, info) {
  if (info) show(info);
  else note("object", `object ${args[0]} is ready but cannot be shown here (see the bridge's log)`, "info");
}
