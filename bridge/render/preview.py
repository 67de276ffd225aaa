"""Headless reference renderer of the depth-displaced sphere (moderngl, OpenGL 3.3 via EGL).

It runs the same displacement include as TouchDesigner's GLSL MAT
(``bridge/render/glsl/ldm3d_displace.glsl``), so artists and tests can see a job's world
without TouchDesigner; on a machine without a GPU, Mesa's software renderer
(llvmpipe) works. moderngl is the ``[preview]`` extra, imported only here.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Protocol

import numpy as np
import numpy.typing as npt
from PIL import Image

from bridge.render.sphere import SphereGrid, sphere_grid


class PreviewError(RuntimeError):
    """The renderer could not start or read a job's textures; the message says what to do."""


def glsl_source(name: str) -> str:
    return resources.files("bridge.render.glsl").joinpath(name).read_text(encoding="utf-8")


def vertex_shader() -> str:
    """preview.vert with the shared include inserted after its #version line (TouchDesigner's #include)."""
    version, _, body = glsl_source("preview.vert").partition("\n")
    return f"{version}\n{glsl_source('ldm3d_displace.glsl')}\n{body}"


@dataclass(frozen=True)
class Camera:
    eye: tuple[float, float, float] = (0.0, 0.0, 0.0)
    yaw: float = 0.0  # degrees; 0 looks at the middle of the panorama, positive turns right
    pitch: float = 0.0  # degrees; positive looks up
    fov: float = 90.0  # vertical field of view, degrees

    def direction(self) -> npt.NDArray[np.float64]:
        yaw, pitch = math.radians(self.yaw), math.radians(self.pitch)
        return np.array([math.cos(pitch) * math.sin(yaw), math.sin(pitch), -math.cos(pitch) * math.cos(yaw)])

    def right(self) -> npt.NDArray[np.float64]:
        yaw = math.radians(self.yaw)
        return np.array([math.cos(yaw), 0.0, math.sin(yaw)])

    def view_proj(self, aspect: float) -> npt.NDArray[np.float32]:
        eye = np.asarray(self.eye, dtype=np.float64)
        forward = self.direction()
        right = self.right()
        up = np.cross(right, forward)
        view = np.identity(4)
        view[0, :3], view[1, :3], view[2, :3] = right, up, -forward
        view[:3, 3] = -view[:3, :3] @ eye
        near, far = 0.01, 100.0
        f = 1.0 / math.tan(math.radians(self.fov) / 2)
        proj = np.zeros((4, 4))
        proj[0, 0], proj[1, 1] = f / aspect, f
        proj[2, 2], proj[2, 3] = (far + near) / (near - far), 2 * far * near / (near - far)
        proj[3, 2] = -1.0
        return (proj @ view).astype(np.float32)


def _texture(job_dir: Path, kind: str) -> Path:
    """A job folder's ``rgb`` or ``depth`` file: ``.tif`` or ``.png`` (the folder contract, docs/osc.md)."""
    for extension in (".tif", ".png"):
        if (job_dir / f"{kind}{extension}").is_file():
            return job_dir / f"{kind}{extension}"
    raise PreviewError(
        f"{job_dir / kind}.tif (or .png) does not exist; give the folder of a finished job "
        "(it holds rgb and depth textures)"
    )


def load_job_textures(job_dir: Path) -> tuple[npt.NDArray[np.uint8], npt.NDArray[np.uint16]]:
    """The 8-bit RGB and 16-bit depth of a job folder (``rgb.tif``/``depth.tif``, or ``.png``)."""
    rgb_path, depth_path = _texture(job_dir, "rgb"), _texture(job_dir, "depth")
    rgb = np.asarray(Image.open(rgb_path).convert("RGB"))
    depth_image = Image.open(depth_path)
    if depth_image.mode not in ("I;16", "I;16B", "I"):
        raise PreviewError(f"{depth_path} is not a 16-bit depth map (mode {depth_image.mode})")
    depth = np.asarray(depth_image).astype(np.uint16)
    return rgb, depth


class Layer(Protocol):
    """More to draw after the sphere, in the same pass and depth buffer (objects: bridge/render/objects.py)."""

    def draw(self, view_proj: npt.NDArray[np.float32]) -> None: ...


class SphereRenderer:
    """One GL context, one job's textures (and any layers: objects placed in the world), any number of views."""

    def __init__(
        self,
        rgb: npt.NDArray[np.uint8],
        depth: npt.NDArray[np.uint16],
        *,
        strength: float = 1.0,
        base_radius: float = 1.0,
        grid: SphereGrid | None = None,
    ) -> None:
        try:
            import moderngl
        except ImportError:
            raise PreviewError("the preview needs moderngl: pip install 'ldm3d-bridge[preview]'") from None
        try:
            # moderngl's stubs type `backend` wrongly; "egl" is its documented headless backend.
            self.ctx = moderngl.create_standalone_context(require=330, backend="egl")  # type: ignore[arg-type]
        except Exception as exc:  # noqa: BLE001 - moderngl reports missing drivers as plain Exceptions
            raise PreviewError(
                f"no OpenGL 3.3 through EGL ({exc}); on Debian/Ubuntu: apt-get install libegl1 libegl-mesa0 "
                "libgl1-mesa-dri (Mesa renders in software where there is no GPU)"
            ) from None
        self.grid = grid or sphere_grid()
        self.base_radius = base_radius
        self.layers: list[Layer] = []
        self.program = self.ctx.program(vertex_shader=vertex_shader(), fragment_shader=glsl_source("preview.frag"))
        self.feedback = self.ctx.program(vertex_shader=vertex_shader(), varyings=("vPosition",))
        # GL's first texture row is the bottom one: upload the images flipped.
        self.rgb = self.ctx.texture((rgb.shape[1], rgb.shape[0]), 3, np.ascontiguousarray(rgb[::-1]).tobytes())
        self.depth = self.ctx.texture(
            (depth.shape[1], depth.shape[0]), 1, np.ascontiguousarray(depth[::-1]).tobytes(), dtype="nu2"
        )
        for texture in (self.rgb, self.depth):
            texture.filter = (moderngl.LINEAR, moderngl.LINEAR)
            texture.repeat_x = True  # u wraps around the seam
            texture.repeat_y = False
        for program in (self.program, self.feedback):
            program["uDepth"] = 1
            program["uBaseRadius"] = base_radius
            program["uStrength"] = strength
        self.program["uRgb"] = 0
        self._vbo = self.ctx.buffer(self.grid.uv.tobytes())
        self._ibo = self.ctx.buffer(self.grid.triangles.tobytes())
        self._vao = self.ctx.vertex_array(self.program, [(self._vbo, "2f", "in_uv")], self._ibo)
        self._feedback_vao = self.ctx.vertex_array(self.feedback, [(self._vbo, "2f", "in_uv")])

    def add_layer(self, layer: Layer) -> None:
        """Draw ``layer`` after the sphere in every later view (it was made in this renderer's context)."""
        self.layers.append(layer)

    def render(self, camera: Camera, size: tuple[int, int]) -> npt.NDArray[np.uint8]:
        """An H×W×3 image of the world seen by ``camera``."""
        import moderngl

        width, height = size
        with self.ctx:  # make this renderer's context current: several may exist in one process
            fbo = self.ctx.simple_framebuffer((width, height), components=4)
            fbo.use()
            fbo.clear(1.0, 0.0, 1.0, 1.0)  # magenta: any gap in the sphere shows
            self.ctx.enable(moderngl.DEPTH_TEST)
            self.rgb.use(0)
            self.depth.use(1)
            matrix = camera.view_proj(width / height)
            view_proj = self.program["uViewProj"]
            assert isinstance(view_proj, moderngl.Uniform)
            view_proj.write(matrix.T.tobytes())
            self._vao.render(moderngl.TRIANGLES)
            for layer in self.layers:  # the same pass and depth buffer: the world hides what is behind it
                layer.draw(matrix)
            data = np.frombuffer(fbo.read(components=3), dtype=np.uint8).reshape(height, width, 3)
            fbo.release()
        return np.ascontiguousarray(data[::-1])

    def positions(self) -> npt.NDArray[np.float32]:
        """The displaced vertex positions, computed by the same shader (transform feedback)."""
        import moderngl

        with self.ctx:
            fbo = self.ctx.simple_framebuffer((1, 1))  # a headless context has no default framebuffer
            fbo.use()
            self.depth.use(1)
            out = self.ctx.buffer(reserve=len(self.grid.uv) * 3 * 4)
            self._feedback_vao.transform(out, moderngl.POINTS, vertices=len(self.grid.uv))
            positions = np.frombuffer(out.read(), dtype=np.float32).reshape(-1, 3).copy()
            out.release()
            fbo.release()
        return positions

    def release(self) -> None:
        self.layers = []  # their buffers go with the context
        self.ctx.release()


def render_stereo(
    renderer: SphereRenderer, camera: Camera, size: tuple[int, int], eye_separation: float
) -> npt.NDArray[np.uint8]:
    """Side by side: left eye, then right eye, each ``size``; eyes ``eye_separation`` apart."""
    half = camera.right() * eye_separation / 2
    eye = np.asarray(camera.eye)
    views = []
    for offset in (-half, half):
        x, y, z = (float(c) for c in eye + offset)
        views.append(renderer.render(Camera((x, y, z), camera.yaw, camera.pitch, camera.fov), size))
    return np.concatenate(views, axis=1)
