"""The stage: the show's current generation values, shared by every client.

Set one at a time (``/ldm3d/prompt``, ``/ldm3d/steps``, ``/ldm3d/steps/norm``…) and
used by ``/ldm3d/go``. A change is echoed on the value's own address (and on its
``/norm`` address for faders), to the sender and every subscriber, so every
tablet shows the current values; setting a value to what it already is echoes
nothing, so two bridges subscribed to each other settle at once.
"""

from __future__ import annotations

import threading
from typing import Any

from bridge.contract.ranges import NORMALISED, Ranges
from bridge.osc.codec import Arg

#: What /ldm3d/go takes from the stage (besides the prompt).
GO_OPTIONS = ("seed", "steps", "guidance", "width", "height", "negative", "scheduler", "sampling")


class Stage:
    def __init__(self, ranges: Ranges) -> None:
        self.ranges = ranges
        self._values: dict[str, Any] = {"prompt": "", "negative": "", "seed": -1}
        self._lock = threading.Lock()

    def set(self, name: str, value: Any) -> list[tuple[str, tuple[Arg, ...]]]:
        """Store ``value``; the echoes to send (none when nothing changed)."""
        with self._lock:
            if name == "size":
                before = (self._values.get("width"), self._values.get("height"))
                self._values["width"], self._values["height"] = value
                changed = before != tuple(value)
            else:
                changed = self._values.get(name) != value
                self._values[name] = value
        return self.echo(name) if changed else []

    def set_norm(self, name: str, fraction: float) -> tuple[Any, list[tuple[str, tuple[Arg, ...]]]]:
        """A fader position → the value it stands for, stored; (value, echoes)."""
        value = self.ranges.from_norm(name, fraction)
        return value, self.set(name, value)

    def echo(self, name: str) -> list[tuple[str, tuple[Arg, ...]]]:
        values = self.get()
        if name == "size":
            return [("/ldm3d/size", (values["width"], values["height"]))]
        out: list[tuple[str, tuple[Arg, ...]]] = [(f"/ldm3d/{name}", (values[name],))]
        if name in NORMALISED:
            out.append((f"/ldm3d/{name}/norm", (self.ranges.to_norm(name, values[name]),)))
        return out

    def get(self) -> dict[str, Any]:
        with self._lock:
            return dict(self._values)

    def go_options(self) -> dict[str, Any]:
        values = self.get()
        return {k: values[k] for k in GO_OPTIONS if k in values}

    def snapshot(self) -> dict[str, tuple[Arg, ...]]:
        """address → current value, for every value that has one (OSCQuery's VALUE)."""
        values = self.get()
        out: dict[str, tuple[Arg, ...]] = {}
        for name in values:
            if name not in ("width", "height"):
                out.update(self.echo(name))
        if "width" in values and "height" in values:
            out.update(self.echo("size"))
        return out
