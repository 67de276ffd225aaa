// The live 360° viewer: the equirectangular RGB on a sphere displaced by the 16-bit depth.
// The displacement is not written here: the vertex shader is built around the bridge's
// ldm3d_displace.glsl (served at /ui/ldm3d_displace.glsl), the same file TouchDesigner's
// GLSL MAT and the headless preview compile. Depth arrives as raw uint16 and is uploaded
// as a 32-bit float texture (exact: 16 bits fit a float's 24-bit mantissa), read with
// nearest filtering as the shared shader expects. A world still forming (a preview of a running
// job, a morph's frame as it renders) is shown the same way at its own size, greyed and dimmed.
import * as THREE from "three";

const COLUMNS = 256, ROWS = 128;
/** The sphere's base radius (depth 0.5): objects (objects.js) are placed in units of it, as TouchDesigner's are. */
export const BASE_RADIUS = 10;
// Orbit: the eye steps back from the centre along the view, so it swings around the centre as it
// turns and sees the displaced walls from off-centre, where depth shows as parallax. Distances are
// in units of the base radius; the eye stays inside the world.
export const ORBIT = { start: 0.5, min: 0.1, max: 0.9, step: 0.05 };
const TURN = 0.05;  // radians a key press turns
const FOV = 75;  // the camera's vertical field of view at the start, degrees

const VERTEX_MAIN = `
uniform sampler2D uDepthA;
uniform sampler2D uDepthB;
uniform float uMix;
uniform float uStrength;
uniform float uBaseRadius;
out vec2 vUv;
void main() {
  vec3 a = ldm3dDisplace(uv, uDepthA, uBaseRadius, uStrength);
  vec3 b = ldm3dDisplace(uv, uDepthB, uBaseRadius, uStrength);
  vUv = uv;
  gl_Position = projectionMatrix * viewMatrix * vec4(mix(a, b, uMix), 1.0);
}`;

const FRAGMENT = `
uniform sampler2D uRgbA;
uniform sampler2D uRgbB;
uniform float uMix;
uniform float uFormingA;
uniform float uFormingB;
in vec2 vUv;
layout(location = 0) out vec4 fragColor;
// A world still forming (forming = 1): greyed toward a cool grey and dimmed; 0 leaves the colour as it is.
vec3 forming(vec3 c, float f) {
  float grey = dot(c, vec3(0.299, 0.587, 0.114));
  return mix(c, vec3(0.85, 0.95, 1.1) * grey, 0.7 * f) * (1.0 - 0.25 * f);
}
void main() {
  vec3 a = forming(texture(uRgbA, vUv).rgb, uFormingA);
  vec3 b = forming(texture(uRgbB, vUv).rgb, uFormingB);
  fragColor = vec4(mix(a, b, uMix), 1.0);
}`;

/** The sphere grid of bridge/render/sphere.py: texture coordinates only (v = 0 is the image's bottom row). */
export function sphereGrid(columns = COLUMNS, rows = ROWS) {
  const uv = new Float32Array((columns + 1) * (rows + 1) * 2);
  let i = 0;
  for (let r = 0; r <= rows; r++) for (let c = 0; c <= columns; c++) { uv[i++] = c / columns; uv[i++] = r / rows; }
  const index = [];
  for (let r = 0; r < rows; r++) for (let c = 0; c < columns; c++) {
    const a = r * (columns + 1) + c, b = a + 1, d = a + columns + 1, e = d + 1;
    index.push(a, d, b, b, d, e);
  }
  return { uv, index };
}

/** Raw little-endian uint16 rows (top row first) → 0..1 floats, bottom row first (OpenGL's v). */
export function depthFloats(buffer, width, height) {
  const view = new DataView(buffer);
  if (view.byteLength !== width * height * 2) throw new Error(`depth: ${view.byteLength} bytes for ${width}×${height}`);
  const out = new Float32Array(width * height);
  for (let row = 0; row < height; row++) {
    const src = row * width * 2, dst = (height - 1 - row) * width;
    for (let x = 0; x < width; x++) out[dst + x] = view.getUint16(src + 2 * x, true) / 65535;
  }
  return out;
}

/** The depth map as grey (near = white), top row first, on a 2D canvas: the page's depth inset. */
export function drawDepth(canvas, floats, width, height) {
  const w = canvas.width, h = canvas.height, image = canvas.getContext("2d").createImageData(w, h);
  for (let y = 0; y < h; y++) {
    const row = height - 1 - Math.floor(y * height / h);  // floats are bottom row first
    for (let x = 0; x < w; x++) {
      const v = Math.round(255 * floats[row * width + Math.floor(x * width / w)]), i = 4 * (y * w + x);
      image.data[i] = image.data[i + 1] = image.data[i + 2] = v; image.data[i + 3] = 255;
    }
  }
  canvas.getContext("2d").putImageData(image, 0, 0);
}

function depthTexture(floats, width, height) {
  const t = new THREE.DataTexture(floats, width, height, THREE.RedFormat, THREE.FloatType);
  t.minFilter = t.magFilter = THREE.NearestFilter;
  t.generateMipmaps = false;
  t.needsUpdate = true;
  return t;
}

/** Base64 → bytes. */
function unbase64(text) {
  const raw = atob(text), out = new Uint8Array(raw.length);
  for (let i = 0; i < raw.length; i++) out[i] = raw.charCodeAt(i);
  return out;
}

function rgbTexture(bitmap) {
  const t = new THREE.Texture(bitmap);
  t.flipY = false;  // the bitmap is decoded bottom row first already
  t.colorSpace = THREE.NoColorSpace;  // the bytes as they are, as TouchDesigner and the preview show them
  t.minFilter = THREE.LinearFilter;
  t.generateMipmaps = false;
  t.needsUpdate = true;
  return t;
}

export class Viewer {
  constructor(canvas, displaceSource) {
    this.canvas = canvas;
    this.renderer = new THREE.WebGLRenderer({ canvas, antialias: true, preserveDrawingBuffer: true });
    this.renderer.setPixelRatio(Math.min(window.devicePixelRatio, 2));
    this.scene = new THREE.Scene();
    this.camera = new THREE.PerspectiveCamera(FOV, 1, 0.05, 100);
    this.camera.rotation.order = "YXZ";
    this.reset();  // at the centre (orbit 0), as TouchDesigner's flat view, looking ahead
    this.inset = null;  // a 2D canvas that gets the depth map of each world shown
    this._forward = new THREE.Vector3();
    const blankDepth = depthTexture(new Float32Array([0.5]), 1, 1);
    const blankRgb = new THREE.DataTexture(new Uint8Array([24, 24, 28, 255]), 1, 1);
    blankRgb.needsUpdate = true;
    this.blank = { rgb: blankRgb, depth: blankDepth };
    this.uniforms = {
      uDepthA: { value: blankDepth }, uDepthB: { value: blankDepth }, uRgbA: { value: blankRgb }, uRgbB: { value: blankRgb },
      uMix: { value: 0 }, uStrength: { value: 1 }, uBaseRadius: { value: BASE_RADIUS },
      uFormingA: { value: 0 }, uFormingB: { value: 0 },
    };
    const { uv, index } = sphereGrid();
    const geometry = new THREE.BufferGeometry();
    geometry.setAttribute("position", new THREE.BufferAttribute(new Float32Array(uv.length / 2 * 3), 3));
    geometry.setAttribute("uv", new THREE.BufferAttribute(uv, 2));
    geometry.setIndex(index);
    this.material = new THREE.ShaderMaterial({
      glslVersion: THREE.GLSL3, uniforms: this.uniforms, side: THREE.DoubleSide,
      vertexShader: displaceSource + "\n" + VERTEX_MAIN, fragmentShader: FRAGMENT,
    });
    const mesh = new THREE.Mesh(geometry, this.material);
    mesh.frustumCulled = false;  // positions come from the shader
    this.scene.add(mesh);
    this.world = null; this.fade = null; this.fadeSeconds = 1.0; this.dirty = true;
    this.shown = null;  // what is on screen (faded to): a world, or {kind: "preview" | "frame", …}
    this._puts = 0;  // how many times something was put on screen (a preview decoded meanwhile is stale)
    this.onDrawn = null;  // called with a world the first time a frame shows it
    this.onShown = null;  // called with whatever is shown (a world, a preview, a morph frame) when first drawn
    this._drawnPending = null;
    this._controls();
    new ResizeObserver(() => this._resize()).observe(canvas);
    this._resize();
    const loop = (now) => { this._frame(now); requestAnimationFrame(loop); };
    requestAnimationFrame(loop);
  }

  set strength(value) { this.uniforms.uStrength.value = value; this.dirty = true; }

  /** Orbit on (the eye steps back from the centre by orbitDistance × the radius) or off (the centre). */
  setOrbit(on) { this.orbit = on ? this.orbitDistance : 0; this.dirty = true; return on; }

  /** Back to the centre, looking ahead, at the start zoom. */
  reset() {
    this.yaw = 0; this.pitch = 0; this.orientation = null; this.orbit = 0; this.orbitDistance = ORBIT.start;
    this.camera.fov = FOV; this.camera.updateProjectionMatrix(); this.dirty = true;
  }

  /** A key press (arrow keys and WASD turn; + and - step the orbit's eye in and out). True if handled. */
  key(name) {
    const turns = { ArrowLeft: [-1, 0], a: [-1, 0], ArrowRight: [1, 0], d: [1, 0], ArrowUp: [0, -1], w: [0, -1], ArrowDown: [0, 1], s: [0, 1] };
    if (turns[name]) {
      const [dy, dp] = turns[name];
      this.yaw += dy * TURN; this.pitch = Math.max(-1.5, Math.min(1.5, this.pitch + dp * TURN));
      this.orientation = null; this.dirty = true;
      return true;
    }
    if (this.orbit && (name === "+" || name === "=" || name === "-")) {
      this._orbitBy(name === "-" ? -ORBIT.step : ORBIT.step);
      return true;
    }
    return false;
  }

  _orbitBy(delta) {
    this.orbitDistance = Math.max(ORBIT.min, Math.min(ORBIT.max, this.orbitDistance + delta));
    this.orbit = this.orbitDistance; this.dirty = true;
  }

  /** Fetch a world's textures and crossfade to it. `fetcher(url)` adds the token. */
  async show(world, fetcher) {
    this.put(await this.load(world, fetcher), world);
  }

  /** Fetch and decode the textures of a world or a morph's frame ({rgb, depth, width, height}: URLs). */
  async load(item, fetcher) {
    const [rgbBlob, depthBuffer] = await Promise.all([
      fetcher(item.rgb).then((r) => { if (!r.ok) throw new Error(`rgb: HTTP ${r.status}`); return r.blob(); }),
      fetcher(item.depth).then((r) => { if (!r.ok) throw new Error(`depth: HTTP ${r.status}`); return r.arrayBuffer(); }),
    ]);
    const bitmap = await createImageBitmap(rgbBlob, { imageOrientation: "flipY" });
    return { bitmap, floats: depthFloats(depthBuffer, item.width, item.height), width: item.width, height: item.height };
  }

  /** A preview of a running job's world (the page's `preview` message: an RGB PNG data URL and the depth as
   * base64 raw uint16), shown forming. A newer preview of the same job replaces it in place. False when
   * something else was put on screen while it was decoded (it is stale), or `wanted()` says no more. */
  async showPreview(p, wanted = () => true) {
    const at = this._puts;
    const png = new Blob([unbase64(p.rgb.slice(p.rgb.indexOf(",") + 1))], { type: "image/png" });
    const bitmap = await createImageBitmap(png, { imageOrientation: "flipY" });
    const floats = depthFloats(unbase64(p.depth).buffer, p.width, p.height);
    if (this._puts !== at || !wanted()) return false;
    const inPlace = this.shown?.kind === "preview" && this.shown.job === p.job;
    const item = { kind: "preview", job: p.job, step: p.step, total: p.total };
    this.put({ bitmap, floats, width: p.width, height: p.height }, item, { forming: true, inPlace, fadeSeconds: 0.4 });
    return true;
  }

  /** Put decoded textures (load()'s) on screen, crossfading over `fadeSeconds` from what is shown.
   * `forming`: the forming look. `inPlace`: replace what is shown (a newer preview), its fade going on. */
  put({ bitmap, floats, width, height }, item, { fadeSeconds = this.fadeSeconds, forming = false, inPlace = false } = {}) {
    const u = this.uniforms;
    this._puts++;
    if (inPlace) {
      if (u.uRgbB.value !== this.blank.rgb) { u.uRgbB.value.dispose(); u.uDepthB.value.dispose(); }
    } else {
      const fading = Boolean(this.shown) && fadeSeconds > 0;
      if (this.shown) {  // what is on screen becomes what is faded from (a fade cut short ends where it is)
        if (u.uRgbA.value !== this.blank.rgb) { u.uRgbA.value.dispose(); u.uDepthA.value.dispose(); }
        u.uRgbA.value = u.uRgbB.value; u.uDepthA.value = u.uDepthB.value; u.uFormingA.value = u.uFormingB.value;
      }
      u.uMix.value = fading ? 0 : 1;
      this.fade = fading ? { start: performance.now(), seconds: fadeSeconds } : null;
    }
    u.uRgbB.value = rgbTexture(bitmap);
    u.uDepthB.value = depthTexture(floats, width, height);
    u.uFormingB.value = forming ? 1 : 0;
    this.shown = item;
    if (!item.kind) this.world = item;
    if (this.inset) drawDepth(this.inset, floats, width, height);
    this._drawnPending = item;
    this.dirty = true;
  }

  /** Nothing on screen (a first job cancelled while it formed): the empty sphere. */
  clear() {
    const u = this.uniforms;
    this._puts++;
    if (!this.shown) return;
    if (u.uRgbA.value !== this.blank.rgb) { u.uRgbA.value.dispose(); u.uDepthA.value.dispose(); }
    u.uRgbA.value = u.uRgbB.value; u.uDepthA.value = u.uDepthB.value; u.uFormingA.value = u.uFormingB.value;
    u.uRgbB.value = this.blank.rgb; u.uDepthB.value = this.blank.depth; u.uFormingB.value = 0;
    u.uMix.value = 0;
    this.fade = { start: performance.now(), seconds: 0.4 };
    this.shown = null; this.world = null;
    this.dirty = true;
  }

  _frame(now) {
    if (this.fade) {
      const t = Math.min(1, (now - this.fade.start) / (1000 * this.fade.seconds));
      this.uniforms.uMix.value = t * t * (3 - 2 * t);
      if (t >= 1) this.fade = null;
      this.dirty = true;
    }
    if (!this.dirty) return;
    this.dirty = false;
    this.camera.rotation.set(this.pitch, this.yaw, 0);
    if (this.orientation) this.camera.quaternion.copy(this.orientation);
    this._forward.set(0, 0, -1).applyQuaternion(this.camera.quaternion);
    this.camera.position.copy(this._forward).multiplyScalar(-this.orbit * BASE_RADIUS);
    this.renderer.render(this.scene, this.camera);
    if (this._drawnPending) {
      const item = this._drawnPending;
      this._drawnPending = null;
      if (!item.kind && this.onDrawn) this.onDrawn(item);
      if (this.onShown) this.onShown(item);
    }
  }

  _resize() {
    const { clientWidth: w, clientHeight: h } = this.canvas;
    if (!w || !h) return;
    this.renderer.setSize(w, h, false);
    this.camera.aspect = w / h;
    this.camera.updateProjectionMatrix();
    this.dirty = true;
  }

  _controls() {
    const pointers = new Map();
    let pinch = null;
    const c = this.canvas;
    c.addEventListener("pointerdown", (e) => { c.setPointerCapture(e.pointerId); pointers.set(e.pointerId, [e.clientX, e.clientY]); });
    c.addEventListener("pointermove", (e) => {
      const last = pointers.get(e.pointerId);
      if (!last) return;
      pointers.set(e.pointerId, [e.clientX, e.clientY]);
      if (pointers.size === 2) {
        const [p, q] = [...pointers.values()];
        const d = Math.hypot(p[0] - q[0], p[1] - q[1]);
        if (pinch && this.orbit) this._orbitBy((pinch - d) * 0.002);
        else if (pinch) this._zoom(pinch / d);
        pinch = d;
        return;
      }
      const k = (this.camera.fov * Math.PI / 180) / c.clientHeight;
      this.yaw += (e.clientX - last[0]) * k;
      this.pitch = Math.max(-1.5, Math.min(1.5, this.pitch + (e.clientY - last[1]) * k));
      this.orientation = null;
      this.dirty = true;
    });
    const up = (e) => { pointers.delete(e.pointerId); pinch = null; };
    c.addEventListener("pointerup", up);
    c.addEventListener("pointercancel", up);
    c.addEventListener("wheel", (e) => {
      e.preventDefault();
      if (this.orbit) this._orbitBy(e.deltaY * 0.0005); else this._zoom(Math.exp(e.deltaY * 0.001));
    }, { passive: false });
  }

  _zoom(factor) {
    this.camera.fov = Math.max(30, Math.min(100, this.camera.fov * factor));
    this.camera.updateProjectionMatrix();
    this.dirty = true;
  }

  /** Look around by turning the device (DeviceOrientation; iOS asks the user first). */
  async gyro(on) {
    if (!on) { window.removeEventListener("deviceorientation", this._onOrientation); this.orientation = null; return false; }
    if (typeof DeviceOrientationEvent === "undefined") return false;
    if (typeof DeviceOrientationEvent.requestPermission === "function") {
      if (await DeviceOrientationEvent.requestPermission() !== "granted") return false;
    }
    const euler = new THREE.Euler(), q = new THREE.Quaternion(), z = new THREE.Vector3(0, 0, 1);
    const toCamera = new THREE.Quaternion(-Math.sqrt(0.5), 0, 0, Math.sqrt(0.5));  // the device's back looks ahead
    this._onOrientation = (e) => {
      if (e.alpha === null) return;
      const r = Math.PI / 180, screenAngle = (screen.orientation?.angle || 0) * r;
      euler.set(e.beta * r, e.alpha * r, -e.gamma * r, "YXZ");
      q.setFromEuler(euler).multiply(toCamera).multiply(new THREE.Quaternion().setFromAxisAngle(z, -screenAngle));
      this.orientation = q.clone();
      this.dirty = true;
    };
    window.addEventListener("deviceorientation", this._onOrientation);
    return true;
  }
}
