"""A TouchDesigner stand-in: enough of TouchDesigner's Python object model for td_project's builder,
extension and callbacks to run outside TouchDesigner, over real UDP on loopback.

It is not TouchDesigner. It models only the documented rules below, each with the Derivative page it
comes from; nothing here draws, cooks on a GPU or compiles a shader (tests/test_td_shaders.py does the
shaders with glslangValidator). What it cannot tell us is listed in td_project/README.md.

Rules modelled (docs.derivative.ca):
- R1 Operators live inside a component: ``COMP.create(type, name)`` "creates a new node of the given type,
  inside this component"; other operators have no ``create``.                    (COMP_Class)
- R2 A new Geometry COMP holds a default ``torus1`` SOP with its Render and Display flags on. (Geometry_COMP)
- R3 A Render TOP draws the SOPs whose Render flag is on, inside the Geometry COMPs named in its
  Geometry parameter whose own Render flag is on.                                 (Render_Flag, Render_TOP)
- R4 Sequence parameters (``sampler0name`` …) exist only for blocks below ``Sequence.numBlocks``; setting
  ``numBlocks`` adds blocks.                                                      (Sequence_Class, GLSL_MAT)
- R5 A menu parameter takes one of its ``menuNames``.                             (Par_Class)
- R6 ``par.expr = "…"`` makes the parameter evaluate that Python expression, with ``me`` the operator and
  ``parent()`` its parent; Par objects take part in arithmetic as their value.   (Par_Class, Parameter)
- R7 Custom parameters: ``appendCustomPage(name)`` and ``Page.appendFloat/Int/Str/Toggle(name)`` (each
  returns the new parameters).                                                    (Page_Class, COMP_Class)
- R8 A DAT's ``module`` is its text run as a Python module; ``import name`` inside it finds a DAT called
  ``name`` in the same component; extensions are created from ``ext0object`` (``me`` = the component) by
  ``initializeExtensions`` and reached as ``comp.ext.ClassName``.                (DAT_Class, Extensions)
- R9 OSC In DAT: each message calls the callbacks DAT's ``onReceiveOSC(dat, rowIndex, message, byteData,
  timeStamp, address, args, peer)``; OSC Out DAT: ``sendOSC(address, args)``.   (OSC_In_DAT, OscoutDAT_Class)
  The OSC In DAT listens from its first cook (here: the first frame after it is made): what arrives
  before is lost, as UDP to a closed port is, so the builder's first subscribe may go unanswered.
- R10 Execute DAT with Frame Start on: ``onFrameStart(frame)`` once per frame.    (Execute_DAT)
- R11 Movie File In TOP: a newly named file is read while the network cooks, not at the moment the
  parameter is set; its members (``isFullyPreRead``) describe the TOP as of its last cook, so right after
  ``par.file`` changes they still speak of the previous file. Here TOPs cook once per frame, after the
  frame-start callbacks and before incoming OSC, and a file takes ``load_frames`` cooks to read;
  ``isFullyPreRead`` is never True for a file that cannot be read.              (MovieFileInTOP_Class)
- R12 ``app.version`` and ``app.build`` are strings.                               (App_Class)
- R13 Text DAT: with Sync to File (``syncfile``) on, its text is its file's (loaded from disk); with it
  off, the DAT keeps its own text, which is what a saved .toe/.tox holds. Turning it off keeps the text
  it has.                                                                         (Text_DAT)
- R14 Movie File In TOP, Reload Pulse (``reloadpulse``, a pulse parameter): "Instantly reloads the file";
  its Reload toggle is "useful when the file changes". So a file changed on disk under the name the TOP
  already has is read again only when the pulse is pulsed (``par.reloadpulse.pulse()``: "Pulsing sets a
  parameter ..., cooks the operator, then restores" it; "for pulse type parameters no value or time is
  specified or used"). Here the file is read again at the TOP's next cook, as under R11 (we do not rely
  on the "instantly").                                         (Movie_File_In_TOP, Par_Class)
- R15 File In SOP: its Geometry File (``file``) is read from disk; the formats it names are .tog, .classic,
  .bhclassic and .obj, and TouchDesigner's File Types page lists no glTF (.gltf/.glb) for any SOP or COMP.
  Refresh Pulse (``refreshpulse``): "Instantly reload the file from disk". Here the file is read at the
  SOP's next cook (after the TOPs), again only when its name changes or the pulse is pulsed; only .obj is
  parsed (points and faces: whether its ``v x y z r g b`` colours arrive as the point colour ``Cd`` is not
  documented, so it is not modelled); any other file gives no geometry.      (File_In_SOP, File_Types)
- R16 A COMP's Render parameter (``render``) "works in conjunction (logical AND) with the Component's Render
  Flag": a Render TOP draws a Geometry COMP's SOPs only with both on.          (COMP_Render_Page)
- R17 COMP Xform page: Translate ``tx ty tz``, Rotate ``rx ry rz`` (degrees), Scale ``sx sy sz``, Uniform
  Scale ``scale``; Transform Order ``xord`` ``srt`` is T * R * S * position (column vectors), and Rotate
  Order ``rord`` ``xyz`` is R = Rz * Ry * Rx (likewise for the other entries). The sign of a rotation is
  not stated there: modelled as OpenGL's right-handed one (counter-clockwise looking down the axis toward
  the origin), the convention the builder already relies on for ``cam_dome`` (Rotate X 90 looks up).
  Uniform Scale multiplies Scale; Pivot is left at 0 and not modelled.          (COMP_Xform_Page)
- R18 Constant MAT: draws its Color (``colorr colorg colorb``) with no lighting; Apply Point Color
  (``applypointcolor``) "multiplies the color by the geometry's point color values". Only its parameters
  are modelled (nothing is drawn).                                               (Constant_MAT)
"""

from __future__ import annotations

import builtins
import socket
import sys
import types
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from bridge.osc.codec import decode_packet, encode_message


@dataclass(frozen=True)
class Menu:
    names: tuple[str, ...]
    default: str


@dataclass(frozen=True)
class PulsePar:
    """A pulse parameter's default: it has no value, only ``pulse()`` (R14)."""


PULSE = PulsePar()


@dataclass(frozen=True)
class OpType:
    name: str
    family: str  # COMP, TOP, SOP, DAT, MAT
    pars: dict[str, Any]
    sequences: dict[str, tuple[tuple[str, ...], int]] = field(default_factory=dict)  # name → (fields, blocks)


# Parameter names as Derivative's operator pages give them (only the ones this project touches, plus
# the defaults that matter). The Render TOP's Render Mode entries: "Cube Map" (cubemap) and "Fish-Eye
# (180)" (fisheye180) as we read the Render TOP page; the builder lists any entry a build lacks.
ORDERS = Menu(("srt", "str", "rst", "rts", "tsr", "trs"), "srt")  # R17
ROTATE_ORDERS = Menu(("xyz", "xzy", "yxz", "yzx", "zxy", "zyx"), "xyz")
XFORM = {
    **{f"t{axis}": 0.0 for axis in "xyz"},
    **{f"r{axis}": 0.0 for axis in "xyz"},
    **{f"s{axis}": 1.0 for axis in "xyz"},
    "scale": 1.0,
    "xord": ORDERS,
    "rord": ROTATE_ORDERS,
}
OUTPUT_RESOLUTION = Menu(
    ("useinput", "eighth", "quarter", "half", "2x", "4x", "8x", "fit", "limit", "custom"), "useinput"
)
TYPES = {
    t.name: t
    for t in (
        OpType("baseCOMP", "COMP", {"ext0object": "", "ext0promote": False}),
        OpType("geometryCOMP", "COMP", {"material": "", "render": True, **XFORM}),
        OpType("cameraCOMP", "COMP", {"fov": 45.0, "tx": 0.0, "ty": 0.0, "tz": 0.0, "rx": 0.0, "ry": 0.0, "rz": 0.0}),
        OpType("oscinDAT", "DAT", {"port": 10000, "callbacks": ""}),
        OpType("oscoutDAT", "DAT", {"address": "localhost", "port": 10000}),
        OpType("textDAT", "DAT", {"file": "", "syncfile": False}),
        OpType("executeDAT", "DAT", {"file": "", "syncfile": False, "framestart": False}),
        OpType("moviefileinTOP", "TOP", {"file": "", "reloadpulse": PULSE}),
        OpType("crossTOP", "TOP", {"cross": 0.0}),
        OpType(
            "gridSOP",
            "SOP",
            {"orient": Menu(("xy", "yz", "zx"), "xy"), "sizex": 1.0, "sizey": 1.0, "rows": 10, "cols": 10},
        ),
        OpType("torusSOP", "SOP", {}),
        OpType("fileinSOP", "SOP", {"file": "", "refreshpulse": PULSE}),
        OpType("constantMAT", "MAT", {"colorr": 1.0, "colorg": 1.0, "colorb": 1.0, "applypointcolor": False}),
        OpType("infoCHOP", "CHOP", {"op": ""}),
        OpType(
            "glslMAT",
            "MAT",
            {"vdat": "", "pdat": ""},
            {"sampler": (("name", "top"), 1), "vec": (("name", "valuex", "valuey", "valuez", "valuew"), 1)},
        ),
        OpType(
            "renderTOP",
            "TOP",
            {
                "camera": "cam1",
                "geometry": "*",
                "rendermode": Menu(("render2d", "cubemap", "fisheye180", "dualparaboloid"), "render2d"),
                "outputresolution": OUTPUT_RESOLUTION,
                "resolutionw": 256,
                "resolutionh": 256,
            },
        ),
    )
}


class Par:
    def __init__(self, owner: Op, name: str, default: Any) -> None:
        self.owner, self.name = owner, name
        self.menuNames: list[str] = list(default.names) if isinstance(default, Menu) else []
        self.isMenu = isinstance(default, Menu)
        self.isPulse = isinstance(default, PulsePar)
        self.default = default.default if isinstance(default, Menu) else None if self.isPulse else default
        self._val = self.default
        self.expr = ""
        self.pulses = 0  # how many times pulse() was called (R14)

    @property
    def val(self) -> Any:
        return self._val

    @val.setter
    def val(self, value: Any) -> None:
        if self.isMenu and value not in self.menuNames:  # R5
            raise ValueError(f"{self.owner.path}.par.{self.name}: {value!r} is not one of {self.menuNames}")
        self._val, self.expr = value, ""

    def pulse(self) -> None:
        """R14: only pulse parameters are modelled (a value pulse of another parameter is not used here)."""
        if not self.isPulse:
            raise NotImplementedError(f"{self.owner.path}.par.{self.name}: the stand-in pulses only pulse parameters")
        self.pulses += 1
        self.owner._pulsed(self.name)

    def eval(self) -> Any:
        if not self.expr:
            return self._val
        parent = self.owner.parent
        assert parent is not None, f"{self.owner.path}: an expression needs a parent to resolve in"
        value = eval(self.expr, {"me": self.owner, "parent": lambda: parent, "op": parent.op})
        return value.eval() if isinstance(value, Par) else value  # an expression naming a Par gives its value

    # R6: a Par in arithmetic is its value
    def __float__(self) -> float:
        return float(self.eval())

    def __neg__(self) -> Any:
        return -self.eval()

    def __truediv__(self, other: Any) -> Any:
        return self.eval() / other

    def __mul__(self, other: Any) -> Any:
        return self.eval() * other


class ParCollection:
    _pars: dict[str, Par]
    _owner: Op

    def __init__(self, owner: Op) -> None:
        object.__setattr__(self, "_pars", {})
        object.__setattr__(self, "_owner", owner)

    def _add(self, name: str, default: Any) -> Par:
        par = Par(self._owner, name, default)
        self._pars[name] = par
        return par

    def __getattr__(self, name: str) -> Par:
        try:
            return self._pars[name]
        except KeyError:
            raise AttributeError(f"{self._owner.path} has no parameter {name!r}") from None

    def __setattr__(self, name: str, value: Any) -> None:
        getattr(self, name).val = value


class Sequence:
    """R4: the block parameters ``<name><i><field>`` exist for i < numBlocks."""

    def __init__(self, owner: Op, name: str, fields: tuple[str, ...], blocks: int) -> None:
        self._owner, self.name, self._fields, self._blocks = owner, name, fields, 0
        self.numBlocks = blocks

    @property
    def numBlocks(self) -> int:
        return self._blocks

    @numBlocks.setter
    def numBlocks(self, blocks: int) -> None:
        for index in range(self._blocks, blocks):
            for name in self._fields:
                self._owner.par._add(f"{self.name}{index}{name}", "" if name in ("name", "top") else 0.0)
        self._blocks = max(self._blocks, blocks)


class Page:
    def __init__(self, owner: Op, name: str) -> None:
        self.owner, self.name = owner, name

    def _append(self, name: str, default: Any) -> list[Par]:  # R7
        return [self.owner.par._add(name, default)]

    def appendFloat(self, name: str) -> list[Par]:
        return self._append(name, 0.0)

    def appendInt(self, name: str) -> list[Par]:
        return self._append(name, 0)

    def appendStr(self, name: str) -> list[Par]:
        return self._append(name, "")

    def appendToggle(self, name: str) -> list[Par]:
        return self._append(name, False)


class Connector:
    def __init__(self, owner: Op, index: int) -> None:
        self.owner, self.index = owner, index

    def connect(self, other: Connector) -> None:
        other.owner.inputs[other.index] = self.owner


class Op:
    def __init__(self, td: StandIn, optype: OpType, name: str, parent: Op | None) -> None:
        self.td, self.type, self.name, self.parent = td, optype.name, name, parent
        self.family = optype.family
        self.children: list[Op] = []
        self.par = ParCollection(self)
        for par_name, default in optype.pars.items():
            self.par._add(par_name, default)
        self.seq = types.SimpleNamespace(
            **{name: Sequence(self, name, fields, blocks) for name, (fields, blocks) in optype.sequences.items()}
        )
        self.customPages: list[Page] = []
        self.render = self.display = True
        self.nodeX = self.nodeY = 0
        self.inputs: dict[int, Op] = {}
        self._text = ""
        self.ext = types.SimpleNamespace()
        self._module: types.ModuleType | None = None
        # Movie File In TOP state (R11)
        self.isFullyPreRead = False
        self.image: Image.Image | None = None
        self._loading: tuple[str, int] | None = None
        self._reload = False  # R14: read the file again at the next cook
        self._socket: socket.socket | None = None
        # File In SOP state (R15): the file last read, and what it held
        self.geometry: Geometry | None = None
        self._read_file: str | None = None
        self.reads = 0  # how many times the file was read from disk

    def _pulsed(self, name: str) -> None:
        if (self.type, name) in (("moviefileinTOP", "reloadpulse"), ("fileinSOP", "refreshpulse")):
            self._reload = True

    @property
    def text(self) -> str:
        """R13: a synced DAT reads its file; otherwise (and once unsynced) its own text."""
        synced = getattr(self.par, "syncfile", None) if self.family == "DAT" else None
        if synced is not None and synced.eval() and str(self.par.file.eval()):
            self._text = Path(str(self.par.file.eval())).read_text(encoding="utf-8")
        return self._text

    @text.setter
    def text(self, value: str) -> None:
        self._text = value

    @property
    def path(self) -> str:
        return (self.parent.path if self.parent is not None else "") + "/" + self.name if self.name else ""

    @property
    def inputConnectors(self) -> list[Connector]:
        return [Connector(self, i) for i in range(2)]

    @property
    def outputConnectors(self) -> list[Connector]:
        return [Connector(self, 0)]

    def create(self, optype: OpType, name: str) -> Op:
        if self.family != "COMP":  # R1
            raise AttributeError(f"{self.path} is a {self.type}: only components hold operators")
        if any(child.name == name for child in self.children):
            raise ValueError(f"{self.path}/{name} exists")
        node = Op(self.td, optype, name, self)
        self.children.append(node)
        if optype.name == "geometryCOMP":  # R2
            node.create(TYPES["torusSOP"], "torus1")
        return node

    def op(self, path: str) -> Op | None:
        node: Op | None = self
        for part in path.replace("./", "").split("/"):
            if node is None or not part:
                continue
            node = node.parent if part == ".." else next((c for c in node.children if c.name == part), None)
        return node

    def destroy(self) -> None:
        if self._socket is not None:
            self._socket.close()
        for child in list(self.children):
            child.destroy()
        if self.parent is not None:
            self.parent.children.remove(self)

    def appendCustomPage(self, name: str) -> Page:
        page = Page(self, name)
        self.customPages.append(page)
        return page

    # -- R8: DAT modules and extensions ---------------------------------------------------------

    @property
    def module(self) -> types.ModuleType:
        if self._module is None:
            self._module = self.td.run_module(self)
        return self._module

    def initializeExtensions(self) -> None:
        expression = self.par.ext0object.eval()
        instance = eval(expression, {"op": self.op, "me": self})
        setattr(self.ext, type(instance).__name__, instance)

    # -- R9: OSC ---------------------------------------------------------------------------------

    def sendOSC(self, address: str, args: list[Any]) -> None:
        host, port = str(self.par.address.eval()), int(self.par.port.eval())
        assert host.startswith("127."), f"the stand-in sends only to loopback, not {host!r}"
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.sendto(encode_message(address, *args), (host, port))


@dataclass(frozen=True)
class Geometry:
    """What a File In SOP read (R15): point positions and the number of faces."""

    points: list[tuple[float, float, float]]
    faces: int


def read_obj(path: Path) -> Geometry:
    """R15: the points (``v x y z``, anything after the position ignored) and faces of an OBJ file."""
    points: list[tuple[float, float, float]] = []
    faces = 0
    for line in path.read_text(encoding="utf-8").splitlines():
        fields = line.split()
        if fields and fields[0] == "v":
            points.append((float(fields[1]), float(fields[2]), float(fields[3])))
        elif fields and fields[0] == "f":
            faces += 1
    return Geometry(points, faces)


@dataclass
class AbsTime:
    frame: int = 0
    seconds: float = 0.0


class StandIn:
    """One TouchDesigner project: ``/`` holds ``/project1``; ``frame()`` advances one frame."""

    def __init__(self, root: Path, version: str = "2023", build: str = "11880", load_frames: int = 1) -> None:
        self.repo = root
        self.app = types.SimpleNamespace(version=version, build=build)  # R12
        self.absTime = AbsTime()
        self.load_frames = load_frames
        self.root = Op(self, OpType("root", "COMP", {}), "", None)
        self.project = self.root.create(TYPES["baseCOMP"], "project1")
        self.printed: list[str] = []
        self._modules: list[str] = []
        self.received: list[str] = []  # addresses of the OSC messages the OSC In DATs got, in order

    def globals(self, me: Op | None = None) -> dict[str, Any]:
        """What TouchDesigner puts in every script's namespace (the operator types, op, me, app …)."""
        names: dict[str, Any] = dict(TYPES)
        parent = me.parent if me is not None else None
        names.update(
            op=(parent.op if parent is not None else self.root.op),
            me=me,
            parent=lambda: parent,
            app=self.app,
            absTime=self.absTime,
            print=lambda *a: self.printed.append(" ".join(str(x) for x in a)),
        )
        return names

    def run_module(self, dat: Op) -> types.ModuleType:
        """R8: the DAT's file as a module; ``import x`` finds the DAT ``x`` beside it first."""
        source = dat.text
        # Registered under a name of its own (its dataclasses look their module up in sys.modules).
        module = types.ModuleType(f"_td_standin_{id(self)}{dat.path.replace('/', '.')}")
        sys.modules[module.__name__] = module
        self._modules.append(module.__name__)
        siblings = {c.name: c for c in dat.parent.children} if dat.parent is not None else {}

        def td_import(name: str, *args: Any, **kwargs: Any) -> Any:
            if name in siblings and siblings[name].family == "DAT":
                return siblings[name].module
            return builtins.__import__(name, *args, **kwargs)

        namespace = module.__dict__
        namespace.update(self.globals(dat))
        namespace["__builtins__"] = {**vars(builtins), "__import__": td_import}
        exec(compile(source, str(dat.par.file.eval()) or dat.path, "exec"), namespace)
        return module

    def run_builder(self, *args: Any, **kwargs: Any) -> Op:
        """exec(build_network.py) as the Textport would, then ``build(op('/project1'), repo, …)``."""
        namespace = self.globals()
        source = (self.repo / "td_project" / "build_network.py").read_text(encoding="utf-8")
        exec(compile(source, "build_network.py", "exec"), namespace)
        for edit in kwargs.pop("edits", []):
            edit(namespace)
        return namespace["build"](self.project, str(self.repo), *args, **kwargs)  # type: ignore[no-any-return]

    def all_ops(self, node: Op | None = None) -> list[Op]:
        node = node or self.root
        return [node] + [o for child in node.children for o in self.all_ops(child)]

    def frame(self, seconds: float = 1 / 60) -> None:
        """One frame: frame-start callbacks (R10), TOPs cook (R11), then incoming OSC (R9)."""
        self.absTime.frame += 1
        self.absTime.seconds += seconds
        ops = self.all_ops()
        for node in ops:
            if node.type == "executeDAT" and node.par.framestart.eval():
                node.module.onFrameStart(self.absTime.frame)
        for node in ops:
            if node.type == "moviefileinTOP":
                self._read(node)
        for node in ops:
            if node.type == "fileinSOP":
                self._read_geometry(node)
        for node in ops:
            if node.type == "oscinDAT":
                self._receive(node)

    def _receive(self, dat: Op) -> None:
        if dat._socket is None:
            dat._socket = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            dat._socket.bind(("127.0.0.1", int(dat.par.port.eval())))
            dat._socket.setblocking(False)
        callbacks = dat.parent.op(str(dat.par.callbacks.eval())) if dat.parent is not None else None
        while True:
            try:
                data, peer = dat._socket.recvfrom(65536)
            except BlockingIOError:
                return
            for row, message in enumerate(decode_packet(data)):
                self.received.append(message.address)
                if callbacks is not None:
                    text = " ".join([message.address, *map(str, message.args)])
                    callbacks.module.onReceiveOSC(
                        dat, row, text, data, self.absTime.seconds, message.address, list(message.args), peer
                    )

    def _read(self, top: Op) -> None:
        path = str(top.par.file.eval())
        if top._loading is None or top._loading[0] != path or top._reload:
            top._loading, top.isFullyPreRead, top.image = (path, self.absTime.frame), False, None
            top._reload = False
        if top.isFullyPreRead or self.absTime.frame - top._loading[1] + 1 < self.load_frames:
            return  # still reading (R11)
        try:
            with Image.open(path) as image:
                image.load()
                top.image = image.copy()
        except OSError:
            return  # cannot be read: never "fully pre-read"
        top.isFullyPreRead = True

    def _read_geometry(self, sop: Op) -> None:
        """R15: read the file when its name changed or Refresh Pulse was pulsed; only .obj is parsed."""
        path = str(sop.par.file.eval())
        if path == sop._read_file and not sop._reload:
            return
        sop._read_file, sop._reload, sop.geometry = path, False, None
        if not path:
            return
        sop.reads += 1
        if Path(path).suffix.lower() == ".obj":
            try:
                sop.geometry = read_obj(Path(path))
            except (OSError, ValueError, IndexError):
                sop.geometry = None

    def close(self) -> None:
        for name in self._modules:
            sys.modules.pop(name, None)
        for node in self.all_ops():
            if node._socket is not None:
                node._socket.close()
                node._socket = None


# -- what the rules say the network shows -------------------------------------------------------------


def drawn_by(render: Op) -> list[str]:
    """R3: the SOPs a Render TOP draws, as "geometry/sop" paths relative to its component."""
    assert render.type == "renderTOP" and render.parent is not None
    drawn = []
    for name in str(render.par.geometry.eval()).split():
        geometry = render.parent.op(name)
        if geometry is None or geometry.type != "geometryCOMP" or not geometry.render:
            continue
        if not geometry.par.render.eval():  # R16: the Render parameter AND the Render flag
            continue
        drawn += [f"{geometry.name}/{sop.name}" for sop in geometry.children if sop.family == "SOP" and sop.render]
    return drawn


def uniforms(mat: Op) -> dict[str, Any]:
    """R4: the GLSL MAT's bound uniforms: sampler name → TOP, vector name → x value."""
    bound: dict[str, Any] = {}
    assert mat.parent is not None
    for index in range(mat.seq.sampler.numBlocks):
        name = getattr(mat.par, f"sampler{index}name").eval()
        if name:
            bound[name] = mat.parent.op(str(getattr(mat.par, f"sampler{index}top").eval()))
    for index in range(mat.seq.vec.numBlocks):
        name = getattr(mat.par, f"vec{index}name").eval()
        if name:
            bound[name] = getattr(mat.par, f"vec{index}valuex").eval()
    return bound


def _rotation(axis: str, degrees: float) -> np.ndarray:
    """R17: a right-handed rotation about ``axis`` (counter-clockwise looking toward the origin)."""
    c, s = np.cos(np.radians(degrees)), np.sin(np.radians(degrees))
    m = np.identity(4)
    i, j = {"x": (1, 2), "y": (2, 0), "z": (0, 1)}[axis]
    m[i, i], m[i, j], m[j, i], m[j, j] = c, -s, s, c
    return m


def xform_matrix(comp: Op) -> np.ndarray:
    """R17: the 4×4 (column vectors: world = M @ [x, y, z, 1]) a COMP's Xform page gives, from its
    Transform Order, Rotate Order, Translate, Rotate, Scale and Uniform Scale."""
    par = comp.par
    t = np.identity(4)
    t[:3, 3] = [float(par.tx.eval()), float(par.ty.eval()), float(par.tz.eval())]
    uniform = float(par.scale.eval())
    scale = np.diag(
        [float(par.sx.eval()) * uniform, float(par.sy.eval()) * uniform, float(par.sz.eval()) * uniform, 1.0]
    )
    r = np.identity(4)
    for axis in str(par.rord.eval()):  # "xyz": R = Rz * Ry * Rx, the first axis applied first
        r = _rotation(axis, float(getattr(par, f"r{axis}").eval())) @ r
    parts = {"s": scale, "r": r, "t": t}
    m = np.identity(4)
    for step in str(par.xord.eval()):  # "srt": T * R * S, scale applied first
        m = parts[step] @ m
    return m
