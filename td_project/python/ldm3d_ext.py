"""TouchDesigner extension for the ldm3d Base COMP (built by build_network.py).

Thin glue: it sends OSC, turns OSC In DAT callbacks and frame ticks into events for
WorldSwitcher (ldm3d_td_logic.py), and applies the actions it returns. Inference never
runs here; the bridge does that in its own process.

Custom parameters on the Base COMP: Bridgehost, Bridgeport, Listenport, Crossfade,
Strength, Baseradius, Eyeseparation, Token (optional shared secret).
"""

# TouchDesigner provides `op`, `absTime` and the operator classes at run time.
from ldm3d_td_logic import LoadBack, SetCross, Shown, SubscriptionKeeper, WorldSwitcher  # noqa: F401 - Shown documents the actions


class Ldm3dExt:
    def __init__(self, ownerComp):
        self.ownerComp = ownerComp
        self.switcher = WorldSwitcher(crossfade_s=float(ownerComp.par.Crossfade.eval()))
        self.keeper = SubscriptionKeeper()  # renews the bridge's subscription lease from OnFrame

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

    # -- receiving -------------------------------------------------------------

    def OnOsc(self, address, args):
        """Called by the OSC In DAT callbacks for every message."""
        s = self.switcher
        if address == "/ldm3d/ready" and len(args) >= 3:
            self._apply(s.on_ready(str(args[0]), str(args[1]), str(args[2])))
        elif address == "/ldm3d/state" and len(args) >= 4:
            self.ownerComp.op("status").text = s.on_state(str(args[0]), int(args[1]), str(args[2]), str(args[3]))
        elif address == "/ldm3d/subscribed" and len(args) >= 3:
            self.keeper.on_subscribed(float(args[2]), absTime.seconds)  # noqa: F821 - a TouchDesigner global
        elif address == "/ldm3d/error" and len(args) >= 3:
            self.ownerComp.op("error").text = s.on_error(str(args[0]), str(args[1]), str(args[2]))

    def OnFrame(self):
        """Called every frame by the Execute DAT: renews the subscription, notices loaded textures,
        advances the fade."""
        s = self.switcher
        now = absTime.seconds  # noqa: F821 - a TouchDesigner global
        if self.keeper.due(now):
            self.Subscribe()
            self.keeper.sent(now)
        job = s.loading
        if job is not None:
            for kind, path in (("rgb", job.rgb), ("depth", job.depth)):
                if kind not in job.loaded and self._texture_ready(s.back, kind, path):
                    self._apply(s.on_loaded(s.back, kind, path, now))
        self._apply(s.tick(now))

    # -- applying ----------------------------------------------------------------

    def _texture_ready(self, buffer, kind, path):
        """The one TouchDesigner-specific check: the Movie File In TOP names the file and its
        Info CHOP reports the file open."""
        top = self.ownerComp.op(f"{kind}_{buffer}")
        info = self.ownerComp.op(f"{kind}_{buffer}_info")
        channel = info["open"] if info is not None else None
        return top.par.file.eval() == path and channel is not None and channel.eval() >= 1

    def _apply(self, actions):
        for action in actions:
            if isinstance(action, LoadBack):
                self.ownerComp.op(f"rgb_{action.buffer}").par.file = action.rgb
                self.ownerComp.op(f"depth_{action.buffer}").par.file = action.depth
            elif isinstance(action, SetCross):
                self.ownerComp.op("cross_rgb").par.cross = action.value
                self.ownerComp.op("cross_depth").par.cross = action.value
