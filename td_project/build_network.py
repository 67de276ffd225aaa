"""Build the ldm3d network inside TouchDesigner from the table below.

Run once from the Textport, with this repository's path:

    repo = 'C:/path/to/ldm3d-bridge'
    exec(open(repo + '/td_project/build_network.py').read()); build(op('/project1'), repo)

It creates (or rebuilds) a Base COMP `ldm3d` holding everything: OSC In/Out DATs, two
buffers of Movie File In TOPs (rgb, depth) with Info CHOPs, Cross TOPs, a Grid SOP, the
GLSL MAT whose shaders are Text DATs synced to the files in td_project/glsl and
bridge/render/glsl, a Geometry COMP, mono and stereo cameras, and Render TOPs. Every operator is a
row in NODES and every parameter a row in PARAMS: edit the table, not the builder.
"""

import os

# (name, operator type, x, y)
NODES = [
    ("oscin", "oscinDAT", 0, 400),
    ("oscin_callbacks", "textDAT", 0, 300),
    ("oscout", "oscoutDAT", 200, 400),
    ("frame", "executeDAT", 400, 400),
    ("ldm3d_td_logic", "textDAT", 600, 400),
    ("status", "textDAT", 800, 400),
    ("error", "textDAT", 1000, 400),
    ("rgb_A", "moviefileinTOP", 0, 0),
    ("rgb_B", "moviefileinTOP", 0, -150),
    ("depth_A", "moviefileinTOP", 0, -300),
    ("depth_B", "moviefileinTOP", 0, -450),
    ("rgb_A_info", "infoCHOP", -200, 0),
    ("rgb_B_info", "infoCHOP", -200, -150),
    ("depth_A_info", "infoCHOP", -200, -300),
    ("depth_B_info", "infoCHOP", -200, -450),
    ("cross_rgb", "crossTOP", 200, -75),
    ("cross_depth", "crossTOP", 200, -375),
    ("grid", "gridSOP", 400, 200),
    ("ldm3d_displace", "textDAT", 600, 200),
    ("ldm3d_vertex", "textDAT", 600, 100),
    ("ldm3d_pixel", "textDAT", 600, 0),
    ("world_mat", "glslMAT", 800, 100),
    ("world", "geometryCOMP", 1000, 200),
    ("cam_mono", "cameraCOMP", 1000, 0),
    ("cam_left", "cameraCOMP", 1000, -150),
    ("cam_right", "cameraCOMP", 1000, -300),
    ("render_mono", "renderTOP", 1200, 0),
    ("render_left", "renderTOP", 1200, -150),
    ("render_right", "renderTOP", 1200, -300),
]

# (operator, input index, source operator)
WIRES = [
    ("cross_rgb", 0, "rgb_A"),
    ("cross_rgb", 1, "rgb_B"),
    ("cross_depth", 0, "depth_A"),
    ("cross_depth", 1, "depth_B"),
]

# (operator, parameter, value or expression). Expressions start with "=".
PARAMS = [
    ("oscin", "port", "=parent().par.Listenport"),
    ("oscin", "callbacks", "oscin_callbacks"),
    ("oscout", "address", "=parent().par.Bridgehost"),
    ("oscout", "port", "=parent().par.Bridgeport"),
    ("oscin_callbacks", "file", "td_project/python/oscin_callbacks.py"),
    ("frame", "file", "td_project/python/frame_callbacks.py"),
    ("frame", "framestart", True),
    ("ldm3d_td_logic", "file", "td_project/python/ldm3d_td_logic.py"),
    ("rgb_A_info", "op", "rgb_A"),
    ("rgb_B_info", "op", "rgb_B"),
    ("depth_A_info", "op", "depth_A"),
    ("depth_B_info", "op", "depth_B"),
    ("cross_rgb", "cross", 0.0),
    ("cross_depth", "cross", 0.0),
    # The sphere is computed from texture coordinates: a grid's uv run 0..1 like the
    # reference renderer's sphere grid (seam column and pole rows included).
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
    ("world", "material", "world_mat"),
    ("cam_mono", "fov", 90.0),
    ("cam_left", "fov", 90.0),
    ("cam_left", "tx", "=-parent().par.Eyeseparation / 2"),
    ("cam_right", "fov", 90.0),
    ("cam_right", "tx", "=parent().par.Eyeseparation / 2"),
    ("render_mono", "camera", "cam_mono"),
    ("render_mono", "geometry", "world"),
    ("render_left", "camera", "cam_left"),
    ("render_left", "geometry", "world"),
    ("render_right", "camera", "cam_right"),
    ("render_right", "geometry", "world"),
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
]

FILE_PARAMS = {"file"}


def build(parent, repo, name="ldm3d"):  # pragma: no cover - runs inside TouchDesigner
    """Create `name` under `parent` from the tables; returns the Base COMP."""
    old = parent.op(name)
    if old is not None:
        old.destroy()
    comp = parent.create(baseCOMP, name)  # noqa: F821 - TouchDesigner globals
    for page_name, par_name, kind, default in CUSTOM:
        page = next((p for p in comp.customPages if p.name == page_name), None) or comp.appendCustomPage(page_name)
        par = getattr(page, f"append{kind}")(par_name)[0]
        par.default = default
        par.val = default
    for node_name, op_type, x, y in NODES:
        node = comp.create(globals()[op_type], node_name)
        node.nodeX, node.nodeY = x, y
    for target, index, source in WIRES:
        comp.op(source).outputConnectors[0].connect(comp.op(target).inputConnectors[index])
    problems = []
    for target, par_name, value in PARAMS:
        par = getattr(comp.op(target).par, par_name, None)
        if par is None:
            problems.append(f"{target}.par.{par_name}")
            continue
        if isinstance(value, str) and value.startswith("="):
            par.expr = value[1:]
        elif par_name in FILE_PARAMS:
            par.val = os.path.join(repo, value).replace("\\", "/")
        else:
            par.val = value
    for text in ("oscin_callbacks", "frame", "ldm3d_td_logic", "ldm3d_displace", "ldm3d_vertex", "ldm3d_pixel"):
        if getattr(comp.op(text).par, "syncfile", None) is not None:
            comp.op(text).par.syncfile = True
    comp.par.ext0object = "op('./ldm3d_ext').module.Ldm3dExt(me)"
    ext = comp.create(textDAT, "ldm3d_ext")  # noqa: F821
    ext.par.file = os.path.join(repo, "td_project/python/ldm3d_ext.py").replace("\\", "/")
    ext.par.syncfile = True
    comp.par.ext0promote = True
    if problems:
        print(
            "ldm3d build: these parameters do not exist in this TouchDesigner build, set them by hand:",
            ", ".join(problems),
        )
    comp.ext.Ldm3dExt.Subscribe()
    return comp
