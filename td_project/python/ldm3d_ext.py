"""TouchDesigner extension for the ldm3d Base COMP (built by build_network.py).

Thin glue: it sends OSC, turns OSC In DAT callbacks and frame ticks into events for
WorldSwitcher (ldm3d_td_logic.py), and applies the actions it returns. Inference never
runs here; the bridge does that in its own process.

Custom parameters on the Base COMP: Bridgehost, Bridgeport, Listenport, Crossfade (read at
each switch, and the Blackout fade time), Hold, Blackout (fades the GLSL MAT's uBrightness to 0),
Strength, Baseradius, Eyeseparation, Eyeoffset (steps the flat camera back from the centre, a fraction
of Baseradius: the depth shows as parallax), Domepitch, Token (optional shared secret). A performer's
tablet sets Crossfade, Hold, Blackout and Strength through the bridge (/ldm3d/display/...).
Live page: Showpreviews (show a world while it forms), Previewmix (how much of the forming preview
covers the world on screen: the GLSL MAT's uForming at full), Previewfade (seconds to fade it in; it
fades out over Crossfade). Previews and morphs: ldm3d_td_live.py.
Objects page: Showobjects (the object slot's Geometry COMP renders). The newest /ldm3d/object/ready
points the File In SOP `object/mesh` at its OBJ and places `object` (ldm3d_td_objects.py).
"""

import json
import os

# TouchDesigner provides `op`, `absTime` and the operator classes at run time.
from ldm3d_td_live import Forming, MorphFrames
from ldm3d_td_logic import (  # noqa: F401 - Shown documents the actions
    BridgeWatch,
    Dimmer,
    LoadBack,
    SetCross,
    Shown,
    SubscriptionKeeper,
    WorldSwitcher,
)
from ldm3d_td_objects import ObjectSlot, parse_object_ready

#: /ldm3d/display/<name> from the bridge (a performer's tablet) → the Base COMP's parameter.
DISPLAY_PARS = {"fade": "Crossfade", "hold": "Hold", "blackout": "Blackout", "strength": "Strength"}


class Ldm3dExt:
    def __init__(self, ownerComp):
        self.ownerComp = ownerComp
        # Which buffer is on screen comes from the Cross TOP, so a re-initialised extension is safe.
        self.switcher = WorldSwitcher(
            crossfade_s=float(ownerComp.par.Crossfade.eval()), cross=float(ownerComp.op("cross_rgb").par.cross.eval())
        )
        self.keeper = SubscriptionKeeper()  # renews the bridge's subscription lease from OnFrame
        self.watch = BridgeWatch()  # heartbeats and boot ids: re-subscribe after a restart
        self.dimmer = Dimmer()  # Blackout as a fade of uBrightness
        self._load_frame = -1  # the frame the back buffer was last pointed at new files
        self.forming = Forming()  # the preview of the world being made, over the world on screen
        self.morphs = MorphFrames()  # morph frames announced, until their morph arrives
        self._preview_frame = -1  # the frame the preview TOPs were last pointed at a preview
        self.objects = ObjectSlot()  # the newest object, shown in the world
        self._placed_radius = None  # the Baseradius the object was last placed with

    # -- sending ---------------------------------------------------------------

    def _send(self, address, args):
        token = self.ownerComp.par.Token.eval()
        if token:
            args = [*args, "token", token]
        self.ownerComp.op("oscout").sendOSC(address, list(args))

    def Subscribe(self):
        """Ask the bridge to send notifications to this component's OSC In DAT."""
        self._send("/ldm3d/subscribe", [int(self.ownerComp.op("oscin").par.port.eval())])

    def Generate(self, prompt, *options):
        """Generate('a forest at dawn', 'seed', 42, 'steps', 25)"""
        self._send("/ldm3d/generate", [prompt, *options])

    def Morph(self, from_job, to, *options):
        """Morph('<job id>', '<job id or prompt>', 'frames', 8, 'seconds', 4): travel between worlds."""
        self._send("/ldm3d/morph", [from_job, to, *options])

    def Object(self, prompt, *options):
        """Object('a red lantern', 'yaw', -30, 'distance', 0.7): a 3D object, shown in the world when ready."""
        self._send("/ldm3d/object", [prompt, *options])

    def ClearObject(self):
        """Empty the object slot (as /ldm3d/object/clear does)."""
        self.objects.clear()
        self.ownerComp.op("object/mesh").par.file = ""

    # -- receiving -------------------------------------------------------------

    def OnOsc(self, address, args):
        """Called by the OSC In DAT callbacks for every message."""
        s = self.switcher
        if address in ("/ldm3d/progress", "/ldm3d/preview", "/ldm3d/morph/frame") and args:
            s.on_running(str(args[0]))  # its world, when it comes, is a live job's (see WorldSwitcher)
        if address == "/ldm3d/preview" and len(args) >= 5:
            enabled = bool(self.ownerComp.par.Showpreviews.eval())
            if self.forming.on_preview(str(args[0]), str(args[3]), str(args[4]), s.newest(), enabled):
                self._show_preview(str(args[3]), str(args[4]))
        elif address == "/ldm3d/morph/frame" and len(args) >= 6:
            self.morphs.on_frame(str(args[0]), int(args[1]), int(args[2]), float(args[3]), str(args[4]), str(args[5]))
        elif address == "/ldm3d/ready" and len(args) >= 3:
            job, rgb, depth = str(args[0]), str(args[1]), str(args[2])
            self.forming.on_end(job, ready=True)
            plan = self.morphs.arrive(job, rgb, depth, self._manifest(job, rgb), s.shown)
            self._apply(s.on_morph(job, plan.frames, plan.step_s) if plan else s.on_ready(job, rgb, depth))
        elif address == "/ldm3d/object/ready":
            if self.objects.on_ready(parse_object_ready(args)):  # a malformed one is counted and ignored
                self._show_object()
        elif address == "/ldm3d/object/clear":
            self.ClearObject()
        elif address in ("/ldm3d/cancelled", "/ldm3d/error") and args:
            self.forming.on_end(str(args[0]), ready=False)
            self.morphs.drop(str(args[0]))
            if address == "/ldm3d/error" and len(args) >= 3:
                self.ownerComp.op("error").text = s.on_error(str(args[0]), str(args[1]), str(args[2]))
        elif address == "/ldm3d/state" and len(args) >= 4:
            workers = (int(args[5]), int(args[6])) if len(args) >= 7 else None
            self.ownerComp.op("status").text = s.on_state(
                str(args[0]), int(args[1]), str(args[2]), str(args[3]), workers
            )
            now = absTime.seconds  # noqa: F821 - a TouchDesigner global
            if len(args) >= 5 and self.watch.on_state(str(args[4]), now):
                self.keeper.now(now)  # the bridge restarted: subscribe again
                self.forming.stop()  # the job it was making is gone
        elif address.startswith("/ldm3d/display/") and len(args) == 1:
            name = DISPLAY_PARS.get(address[len("/ldm3d/display/") :])
            if name is not None:
                setattr(self.ownerComp.par, name, args[0])
        elif address == "/ldm3d/subscribed" and len(args) >= 3:
            self.keeper.on_subscribed(float(args[2]), absTime.seconds)  # noqa: F821 - a TouchDesigner global

    def OnFrame(self):
        """Called every frame by the Execute DAT: renews the subscription, notices loaded textures,
        advances the fade."""
        s = self.switcher
        now = absTime.seconds  # noqa: F821 - a TouchDesigner global
        if self.watch.tick(now):
            self.ownerComp.op("status").text = "bridge offline: no heartbeat; subscribing again"
            self.keeper.now(now)
            self.forming.stop()
        if self.keeper.due(now):
            self.Subscribe()
            self.keeper.sent(now)
        crossfade = float(self.ownerComp.par.Crossfade.eval())  # read each frame: a switch uses it as it is now
        hold = bool(self.ownerComp.par.Hold.eval())
        if hold != s.hold:
            self._apply(s.set_hold(hold))
        s.sync(float(self.ownerComp.op("cross_rgb").par.cross.eval()))
        job = s.loading
        if job is not None:
            for kind, path in (("rgb", job.rgb), ("depth", job.depth)):
                if kind not in job.loaded and self._texture_ready(s.back, kind, path):
                    self._apply(s.on_loaded(s.back, kind, path, now, crossfade))
        self._apply(s.tick(now))
        level = self.dimmer.tick(bool(self.ownerComp.par.Blackout.eval()), crossfade, now)
        brightness = self.ownerComp.op("world_mat").par.vec2valuex
        if brightness.eval() != level:
            brightness.val = level
        self._form(crossfade, now)
        if self.objects.shown is not None and float(self.ownerComp.par.Baseradius.eval()) != self._placed_radius:
            self._place_object()  # Baseradius changed: the object keeps its place in the world

    def _form(self, crossfade, now):
        """The forming look: the GLSL MAT's uForming, toward Previewmix while a followed job's preview is
        read, toward 0 otherwise."""
        par = self.ownerComp.par
        paths = self.forming.paths
        if (
            paths is not None
            and not self.forming.seen
            and self._texture_read("rgb_preview", paths[0], self._preview_frame)
            and self._texture_read("depth_preview", paths[1], self._preview_frame)
        ):
            self.forming.loaded()
        enabled = bool(par.Showpreviews.eval())
        level = self.forming.tick(enabled, float(par.Previewfade.eval()), crossfade, now) * float(par.Previewmix.eval())
        forming = self.ownerComp.op("world_mat").par.vec3valuex
        if forming.eval() != level:
            forming.val = level

    # -- applying ----------------------------------------------------------------

    def _texture_ready(self, buffer, kind, path):
        return self._texture_read(f"{kind}_{buffer}", path, self._load_frame)

    def _texture_read(self, name, path, since):
        """The one TouchDesigner-specific check: the Movie File In TOP names the file, has cooked
        since it was pointed at it (frame ``since``: its members describe its last cook, until then
        the previous file), and reports the file fully pre-read (moviefileinTOP.isFullyPreRead)."""
        top = self.ownerComp.op(name)
        cooked_since = absTime.frame >= since + 2  # noqa: F821 - a whole frame's cook in between
        return top.par.file.eval() == path and cooked_since and top.isFullyPreRead

    def _show_preview(self, rgb, depth):
        """Point the preview TOPs at the slot and make them read it again: the slot keeps its name, so
        a new name alone would not (Movie File In TOP, Reload Pulse: "Instantly reloads the file")."""
        for kind, path in (("rgb", rgb), ("depth", depth)):
            top = self.ownerComp.op(f"{kind}_preview")
            if top.par.file.eval() != path:
                top.par.file = path
            top.par.reloadpulse.pulse()
        self._preview_frame = absTime.frame  # noqa: F821 - a TouchDesigner global

    def _show_object(self):
        """Point the File In SOP at the newest object's OBJ, make it read the file (its Refresh Pulse:
        "Instantly reload the file from disk"), and place the Geometry COMP."""
        mesh = self.ownerComp.op("object/mesh")
        if mesh.par.file.eval() != self.objects.shown.obj:
            mesh.par.file = self.objects.shown.obj
        mesh.par.refreshpulse.pulse()
        self._place_object()

    def _place_object(self):
        radius = float(self.ownerComp.par.Baseradius.eval())
        geometry = self.ownerComp.op("object")
        for name, value in self.objects.transform(radius).items():
            setattr(geometry.par, name, value)
        self._placed_radius = radius

    def _manifest(self, job_id, rgb):
        """A morph's manifest, or None: two folders above an announced frame, else ``morphs/<job>/`` beside
        the job's folder (a morph none of whose frames was announced)."""
        frame = self.morphs.a_frame(job_id)
        if frame is not None:
            path = os.path.join(os.path.dirname(os.path.dirname(frame)), "morph.json")
        else:
            path = os.path.join(os.path.dirname(os.path.dirname(rgb)), "morphs", job_id, "morph.json")
        try:
            with open(path, encoding="utf-8") as manifest:
                return json.load(manifest)
        except (OSError, ValueError):
            return None

    def _apply(self, actions):
        for action in actions:
            if isinstance(action, LoadBack):
                self.ownerComp.op(f"rgb_{action.buffer}").par.file = action.rgb
                self.ownerComp.op(f"depth_{action.buffer}").par.file = action.depth
                self._load_frame = absTime.frame  # noqa: F821 - a TouchDesigner global
            elif isinstance(action, SetCross):
                self.ownerComp.op("cross_rgb").par.cross = action.value
                self.ownerComp.op("cross_depth").par.cross = action.value
