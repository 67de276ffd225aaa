"""Build the ldm3d network inside TouchDesigner from the tables below.

Run once from the Textport, with this repository's path:

    repo = 'C:/path/to/ldm3d-bridge'
    exec(open(repo + '/td_project/build_network.py').read()); build(op('/project1'), repo)

and, to move it to a show machine without this checkout, ``freeze(op('/project1/ldm3d'))`` before
saving the component as a .tox (td_project/README.md, "Freeze it into a .tox").

It creates (or rebuilds) a Base COMP `ldm3d` holding everything: OSC In/Out DATs, two buffers of
Movie File In TOPs (rgb, depth), Cross TOPs, the preview TOPs (a world while it forms, mixed in by
the GLSL MAT's uForming), a Geometry COMP `world` holding the Grid SOP, the
GLSL MAT whose shaders are Text DATs synced to the files in td_project/glsl and bridge/render/glsl,
the object slot (a Geometry COMP `object` beside `world`, in the same frame, holding a File In SOP that
reads the newest object's OBJ, drawn with a Constant MAT showing its vertex colours), cameras, and one
Render TOP per output in OUTPUTS (flat view, stereo pair, 180° dome master, cube
map). Every operator is a row in NODES and every parameter a row in PARAMS: edit the tables, not
the builder. Parameters, sequence blocks or menu entries this TouchDesigner build lacks are listed
in the Textport, never skipped silently.

The TouchDesigner rules the builder relies on (each modelled by tests/td_standin.py, which cites
Derivative's page for it): operators are created inside a component (`COMP.create`); a Geometry
COMP comes with a default `torus1`; a Render TOP draws only the SOPs inside the Geometry COMPs it
names whose Render flag is on; sequence parameters (the GLSL MAT's `sampler*`, `vec*`) exist only
up to the sequence's `numBlocks`; a menu parameter takes only its `menuNames`; a Movie File In TOP
reads a file again under the same name only when its Reload Pulse (`reloadpulse`) is pulsed; a File In
SOP reads .obj (not glTF) and reads its file again when its Refresh Pulse (`refreshpulse`) is pulsed; a
COMP's Render parameter works with its Render flag (logical AND); the Xform page's Transform Order `srt`
is T * R * S * position; a Constant MAT draws its Color unlit, times the point colour with Apply Point
Color on.
"""

import importlib.util
import os
import sys

# Which outputs to build: "flat" (render_mono), "stereo" (render_left/right), "dome" (render_dome:
# a 180° fisheye dome master, zenith at the centre) and "cube" (render_cube: a cube map for VR).
OUTPUTS = ("flat", "stereo", "dome", "cube")

# (name, operator type, x, y, inside: "" for the Base COMP or the Geometry COMP's name, output or "")
NODES = [
    ("oscin", "oscinDAT", 0, 400, "", ""),
    ("oscin_callbacks", "textDAT", 0, 300, "", ""),
    ("oscout", "oscoutDAT", 200, 400, "", ""),
    ("frame", "executeDAT", 400, 400, "", ""),
    ("ldm3d_td_logic", "textDAT", 600, 400, "", ""),
    ("ldm3d_td_live", "textDAT", 600, 500, "", ""),
    ("ldm3d_td_objects", "textDAT", 600, 600, "", ""),
    ("status", "textDAT", 800, 400, "", ""),
    ("error", "textDAT", 1000, 400, "", ""),
    ("rgb_A", "moviefileinTOP", 0, 0, "", ""),
    ("rgb_B", "moviefileinTOP", 0, -150, "", ""),
    ("depth_A", "moviefileinTOP", 0, -300, "", ""),
    ("depth_B", "moviefileinTOP", 0, -450, "", ""),
    ("rgb_preview", "moviefileinTOP", 0, -600, "", ""),  # the preview slot, while a world forms
    ("depth_preview", "moviefileinTOP", 0, -750, "", ""),
    ("cross_rgb", "crossTOP", 200, -75, "", ""),
    ("cross_depth", "crossTOP", 200, -375, "", ""),
    ("ldm3d_displace", "textDAT", 600, 200, "", ""),
    ("ldm3d_vertex", "textDAT", 600, 100, "", ""),
    ("ldm3d_pixel", "textDAT", 600, 0, "", ""),
    ("world_mat", "glslMAT", 800, 100, "", ""),
    ("world", "geometryCOMP", 1000, 200, "", ""),
    ("grid", "gridSOP", 0, 0, "world", ""),
    ("object_mat", "constantMAT", 800, 350, "", ""),  # the object slot: the newest 3D object in the world
    ("object", "geometryCOMP", 1000, 350, "", ""),
    ("mesh", "fileinSOP", 0, 0, "object", ""),
    ("cam_mono", "cameraCOMP", 1000, 0, "", ""),
    ("cam_left", "cameraCOMP", 1000, -150, "", "stereo"),
    ("cam_right", "cameraCOMP", 1000, -300, "", "stereo"),
    ("cam_dome", "cameraCOMP", 1000, -450, "", "dome"),
    ("cam_cube", "cameraCOMP", 1000, -600, "", "cube"),
    ("render_mono", "renderTOP", 1200, 0, "", "flat"),
    ("render_left", "renderTOP", 1200, -150, "", "stereo"),
    ("render_right", "renderTOP", 1200, -300, "", "stereo"),
    ("render_dome", "renderTOP", 1200, -450, "", "dome"),
    ("render_cube", "renderTOP", 1200, -600, "", "cube"),
]

# Operator types whose new instances come with children of their own that must go (a Geometry
# COMP's default torus1 would render with the world's material).
CLEAR_DEFAULT_CHILDREN = {"geometryCOMP"}

# (operator, flag, value): the grid is what the world's Geometry COMP renders.
FLAGS = [
    ("grid", "render", True),
    ("grid", "display", True),
    ("mesh", "render", True),
    ("mesh", "display", True),
]

# (operator, wire input index, source operator)
WIRES = [
    ("cross_rgb", 0, "rgb_A"),
    ("cross_rgb", 1, "rgb_B"),
    ("cross_depth", 0, "depth_A"),
    ("cross_depth", 1, "depth_B"),
]

# (operator, sequence, blocks): grown before the PARAMS that use them are set.
SEQUENCES = [
    ("world_mat", "sampler", 4),  # sampler0 sRgb, sampler1 sDepth, sampler2 sPreviewRgb, sampler3 sPreviewDepth
    ("world_mat", "vec", 4),  # vec0 uBaseRadius, vec1 uStrength, vec2 uBrightness, vec3 uForming
]

# (operator, parameter, value or expression). Expressions start with "=". Paths are relative to the
# operator's own parent, as TouchDesigner resolves them.
PARAMS = [
    ("oscin", "port", "=parent().par.Listenport"),
    ("oscin", "callbacks", "oscin_callbacks"),
    ("oscout", "address", "=parent().par.Bridgehost"),
    ("oscout", "port", "=parent().par.Bridgeport"),
    ("oscin_callbacks", "file", "td_project/python/oscin_callbacks.py"),
    ("frame", "file", "td_project/python/frame_callbacks.py"),
    ("frame", "framestart", True),
    ("ldm3d_td_logic", "file", "td_project/python/ldm3d_td_logic.py"),
    ("ldm3d_td_live", "file", "td_project/python/ldm3d_td_live.py"),
    ("ldm3d_td_objects", "file", "td_project/python/ldm3d_td_objects.py"),
    ("cross_rgb", "cross", 0.0),
    ("cross_depth", "cross", 0.0),
    # The sphere is computed in the vertex shader from each point's place on a unit grid in the XY
    # plane (P.xy + 0.5 runs 0..1, seam column and pole rows included), like the reference renderer.
    ("grid", "orient", "xy"),
    ("grid", "sizex", 1.0),
    ("grid", "sizey", 1.0),
    ("grid", "rows", 257),
    ("grid", "cols", 513),
    ("ldm3d_displace", "file", "bridge/render/glsl/ldm3d_displace.glsl"),
    ("ldm3d_vertex", "file", "td_project/glsl/ldm3d_vertex.glsl"),
    ("ldm3d_pixel", "file", "td_project/glsl/ldm3d_pixel.glsl"),
    ("world_mat", "vdat", "ldm3d_vertex"),
    ("world_mat", "pdat", "ldm3d_pixel"),
    ("world_mat", "sampler0name", "sRgb"),
    ("world_mat", "sampler0top", "cross_rgb"),
    ("world_mat", "sampler1name", "sDepth"),
    ("world_mat", "sampler1top", "cross_depth"),
    ("world_mat", "vec0name", "uBaseRadius"),
    ("world_mat", "vec0valuex", "=parent().par.Baseradius"),
    ("world_mat", "vec1name", "uStrength"),
    ("world_mat", "vec1valuex", "=parent().par.Strength"),
    ("world_mat", "vec2name", "uBrightness"),  # the extension fades it for Blackout
    ("world_mat", "vec2valuex", 1.0),
    # While a world forms, the extension points the preview TOPs at the bridge's preview slot and mixes
    # them over the world by uForming (0 = the world alone).
    ("world_mat", "sampler2name", "sPreviewRgb"),
    ("world_mat", "sampler2top", "rgb_preview"),
    ("world_mat", "sampler3name", "sPreviewDepth"),
    ("world_mat", "sampler3top", "depth_preview"),
    ("world_mat", "vec3name", "uForming"),
    ("world_mat", "vec3valuex", 0.0),
    ("world", "material", "world_mat"),
    # The object slot, in the sphere's frame: the extension sets its File In SOP's file (the newest OBJ:
    # `v x y z r g b`, colours as point colour) and tx ty tz, ry and the uniform scale from the placement
    # (ldm3d_td_objects.py). Scale, then turn about +Y, then move: T * R * S * position.
    ("object", "material", "object_mat"),
    ("object", "xord", "srt"),
    ("object", "rord", "xyz"),
    ("object", "render", "=parent().par.Showobjects"),
    # Unlit like the sphere: the vertex colour as it is, dimmed with the sphere by Blackout (uBrightness).
    ("object_mat", "applypointcolor", True),
    ("object_mat", "colorr", "=op('world_mat').par.vec2valuex"),
    ("object_mat", "colorg", "=op('world_mat').par.vec2valuex"),
    ("object_mat", "colorb", "=op('world_mat').par.vec2valuex"),
    ("cam_mono", "fov", 90.0),
    # Eyeoffset steps the flat camera back from the centre (a fraction of Baseradius): from the centre
    # the displacement runs along the line of sight and the depth is invisible; off it, it shows.
    ("cam_mono", "tz", "=parent().par.Eyeoffset.eval() * parent().par.Baseradius.eval()"),
    ("cam_left", "fov", 90.0),
    ("cam_left", "tx", "=-parent().par.Eyeseparation / 2"),
    ("cam_right", "fov", 90.0),
    ("cam_right", "tx", "=parent().par.Eyeseparation / 2"),
    # Pitched up 90° (the default), the dome master has the zenith at its centre and the panorama's
    # middle at its bottom, as `ldm3d-bridge preview --fisheye 180` renders it.
    ("cam_dome", "rx", "=parent().par.Domepitch"),
    ("render_mono", "camera", "cam_mono"),
    ("render_mono", "geometry", "world object"),
    ("render_left", "camera", "cam_left"),
    ("render_left", "geometry", "world object"),
    ("render_right", "camera", "cam_right"),
    ("render_right", "geometry", "world object"),
    ("render_dome", "camera", "cam_dome"),
    ("render_dome", "geometry", "world object"),
    ("render_dome", "rendermode", "fisheye180"),
    ("render_dome", "outputresolution", "custom"),
    ("render_dome", "resolutionw", 2048),
    ("render_dome", "resolutionh", 2048),
    ("render_cube", "camera", "cam_cube"),  # a cube map is taken from the centre, whatever Eyeoffset says
    ("render_cube", "geometry", "world object"),
    ("render_cube", "rendermode", "cubemap"),
    ("render_cube", "outputresolution", "custom"),
    ("render_cube", "resolutionw", 1024),
    ("render_cube", "resolutionh", 1024),
]

# (page, name, kind, default)
CUSTOM = [
    ("Bridge", "Bridgehost", "Str", "127.0.0.1"),
    ("Bridge", "Bridgeport", "Int", 9000),
    ("Bridge", "Listenport", "Int", 9001),
    ("Bridge", "Token", "Str", ""),
    ("World", "Crossfade", "Float", 2.0),
    ("World", "Hold", "Toggle", False),
    ("World", "Blackout", "Toggle", False),
    ("World", "Strength", "Float", 1.0),
    ("World", "Baseradius", "Float", 10.0),
    ("World", "Eyeseparation", "Float", 0.064),
    ("World", "Eyeoffset", "Float", 0.0),
    ("World", "Domepitch", "Float", 90.0),
    ("Live", "Showpreviews", "Toggle", True),
    ("Live", "Previewmix", "Float", 0.8),
    ("Live", "Previewfade", "Float", 0.5),
    ("Objects", "Showobjects", "Toggle", True),
]

FILE_PARAMS = {"file"}
SYNCED_TEXT = (
    "oscin_callbacks",
    "frame",
    "ldm3d_td_logic",
    "ldm3d_td_live",
    "ldm3d_td_objects",
    "ldm3d_displace",
    "ldm3d_vertex",
    "ldm3d_pixel",
)


def freeze(comp):
    """Cut the built component loose from this checkout, to save it as a .tox for the show machine.

    Every Text DAT synced to a file here (shaders, callbacks, the logic, the extension) keeps the text
    it holds and forgets the file: Sync to File off, File empty (Derivative's Text DAT page: with Sync
    to File off the DAT keeps its own text, which a saved .toe/.tox holds). Then save it: right-click
    the component > Save Component .tox, or ``comp.save('ldm3d.tox')``. Build again from the checkout
    to take later edits of the files.
    """
    frozen = []
    for name in (*SYNCED_TEXT, "ldm3d_ext"):
        dat = comp.op(name)
        if dat is None or getattr(dat.par, "syncfile", None) is None:
            continue
        text = dat.text  # read while it is still synced
        dat.par.syncfile = False
        dat.par.file = ""
        dat.text = text
        frozen.append(name)
    comp.initializeExtensions()
    print(f"ldm3d freeze: {', '.join(frozen)} now hold their own text; save {comp.path} as a .tox")
    return frozen


def _logic(repo):
    """td_project/python/ldm3d_td_logic.py as a module (the builder runs outside the component).
    Registered in sys.modules before it runs: its dataclasses look their module up there."""
    path = os.path.join(repo, "td_project/python/ldm3d_td_logic.py")
    spec = importlib.util.spec_from_file_location("_ldm3d_build_logic", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def _set(par, value, repo, is_file):
    """Set one parameter; returns a problem to report, or None."""
    if isinstance(value, str) and value.startswith("="):
        par.expr = value[1:]
        return None
    if is_file:
        value = os.path.join(repo, value).replace("\\", "/")
    menu = getattr(par, "menuNames", None)
    if getattr(par, "isMenu", False) and menu and value not in menu:
        return f"{par.owner.name}.par.{par.name} has no menu entry {value!r} (it has {', '.join(menu)})"
    par.val = value
    return None


def build(parent, repo, name="ldm3d", outputs=OUTPUTS):  # pragma: no cover - runs inside TouchDesigner
    """Create `name` under `parent` from the tables; returns the Base COMP."""
    problems = []
    old = parent.op(name)
    if old is not None:
        old.destroy()
    too_old = _logic(repo).version_problem(app.version, app.build)  # noqa: F821 - TouchDesigner globals
    if too_old:
        print(too_old)
    comp = parent.create(baseCOMP, name)  # noqa: F821 - TouchDesigner globals
    for page_name, par_name, kind, default in CUSTOM:
        page = next((p for p in comp.customPages if p.name == page_name), None) or comp.appendCustomPage(page_name)
        par = getattr(page, f"append{kind}")(par_name)[0]
        par.default = default
        par.val = default
    built = {}
    for node_name, op_type, x, y, inside, output in NODES:
        if output and output not in outputs:
            continue
        home = built[inside] if inside else comp
        node = home.create(globals()[op_type], node_name)
        node.nodeX, node.nodeY = x, y
        if op_type in CLEAR_DEFAULT_CHILDREN:
            for child in list(node.children):
                child.destroy()
        built[node_name] = node
    for target, flag, value in FLAGS:
        setattr(built[target], flag, value)
    for target, index, source in WIRES:
        built[source].outputConnectors[0].connect(built[target].inputConnectors[index])
    for target, seq_name, blocks in SEQUENCES:
        sequence = getattr(built[target].seq, seq_name, None)
        if sequence is None:
            problems.append(f"{target}.seq.{seq_name} (a sequence of parameters)")
        elif sequence.numBlocks < blocks:
            sequence.numBlocks = blocks
    for target, par_name, value in PARAMS:
        if target not in built:
            continue  # an output not built
        par = getattr(built[target].par, par_name, None)
        if par is None:
            problems.append(f"{target}.par.{par_name}")
            continue
        problem = _set(par, value, repo, par_name in FILE_PARAMS)
        if problem:
            problems.append(problem)
    for text in SYNCED_TEXT:
        if getattr(built[text].par, "syncfile", None) is not None:
            built[text].par.syncfile = True
    ext = comp.create(textDAT, "ldm3d_ext")  # noqa: F821
    ext.par.file = os.path.join(repo, "td_project/python/ldm3d_ext.py").replace("\\", "/")
    ext.par.syncfile = True
    comp.par.ext0object = "op('./ldm3d_ext').module.Ldm3dExt(me)"
    comp.par.ext0promote = True
    comp.initializeExtensions()
    if problems:
        print("ldm3d build: set these by hand, this TouchDesigner build lacks them:", "; ".join(problems))
    print(f"ldm3d build: {comp.path} built with outputs {', '.join(o for o in OUTPUTS if o in outputs)}")
    comp.ext.Ldm3dExt.Subscribe()
    return comp
