"""Cue files as the bridge reads them: from its input folders (``/ldm3d/show/load``), or the
``show`` setting's file (``serve --show``), or the file a saved show came from (a restart); every
cue checked against the bridge's model (no weights needed) and its prompt rules."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from bridge.contract.paths import resolve_input_path
from bridge.errors import BadShow, NotSupported, RefusedPrompt
from bridge.settings import BridgeSettings
from bridge.show.checks import cue_limits
from bridge.show.cues import Show
from bridge.show.reading import load_show

#: The mistakes of a cue file ``/ldm3d/show/load`` names in its error (``show check`` lists them all).
MAX_MISTAKES = 10


class ShowFiles:
    def __init__(self, settings: BridgeSettings, check_prompt: Callable[[str], None]) -> None:
        self._settings = settings
        self._check_prompt = check_prompt
        #: The ``show`` setting's file (``serve --show``), or None.
        self.configured = Path(settings.show).resolve() if settings.show else None

    def requested(self, raw_path: str) -> Show:
        """A client's cue file: inside the input folders (``NotSupported`` without any)."""
        folders = [Path(d) for d in self._settings.input_dirs]
        if not folders:
            raise NotSupported("/ldm3d/show/load is off: start the bridge with input_dirs (the folders it may read)")
        return self._checked(self._read(resolve_input_path(raw_path, folders)))

    def saved(self, source: str) -> Show:
        """The file a saved show was read from: the operator's own (the ``show`` setting), or one
        still inside the input folders."""
        if self.configured is not None and Path(source) == self.configured:
            return self._checked(self._read(self.configured))
        folders = [Path(d) for d in self._settings.input_dirs]
        if not folders:
            raise NotSupported("the bridge has no input_dirs now")
        return self._checked(self._read(resolve_input_path(source, folders)))

    def _read(self, path: Path) -> Show:
        """The cue file, every cue checked against this bridge's model; a :class:`BadShow` names at
        most ``MAX_MISTAKES`` of its mistakes and how to see them all."""
        try:
            return load_show(path, cue_limits(self._settings))
        except BadShow as exc:
            if len(exc.mistakes) <= MAX_MISTAKES:
                raise
            more = len(exc.mistakes) - MAX_MISTAKES
            hint = f"… and {more} more: `ldm3d-bridge show check {path} --model {self._settings.model}` lists them all"
            raise BadShow(*exc.mistakes[:MAX_MISTAKES], hint) from None

    def _checked(self, show: Show) -> Show:
        """``show``, once every cue's prompt passed the prompt rules (RefusedPrompt names the cue)."""
        for cue in show.cues:
            try:
                self._check_prompt(str(cue.params["prompt"]))
            except RefusedPrompt as exc:
                raise RefusedPrompt(f"show {show.name!r}, cue {cue.number}: {exc}") from None
        return show
