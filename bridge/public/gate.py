"""The prompt rules in force: read at start-up, swapped whole at a reload (SIGHUP or
``/ldm3d/rules/reload``), checked on every prompt before it reaches the stage or the queue."""

from __future__ import annotations

import logging
import threading

from bridge.errors import BadRules
from bridge.public.rules import PromptRules, load_rules

logger = logging.getLogger(__name__)


class PromptGate:
    """``source``: a rules file, ``default`` (the shipped list) or None (no prompt is refused).
    Raises :class:`BadRules` now when the file cannot be read: a mistake stops the start."""

    def __init__(self, source: str | None) -> None:
        self.source = source
        self._lock = threading.Lock()
        self._rules: PromptRules | None = load_rules(source) if source else None  # (load_rules logs it)

    @property
    def count(self) -> int:
        """How many rules are in force (0 without a rules file)."""
        rules = self._rules
        return len(rules) if rules is not None else 0

    def check(self, prompt: str) -> None:
        """Raise :class:`~bridge.errors.RefusedPrompt` when a rule matches ``prompt``."""
        rules = self._rules  # one read: a reload swaps the whole set
        if rules is not None:
            rules.check(prompt)

    def reload(self) -> int:
        """Read the rules file again and return how many rules are in force. A file that cannot be
        read raises :class:`BadRules` and the previous rules stay."""
        if self.source is None:
            raise BadRules("no prompt rules file was given at start-up (prompt_rules); there is nothing to reload")
        with self._lock:
            try:
                rules = load_rules(self.source)
            except BadRules as exc:
                logger.error("prompt rules not reloaded, the previous %d stay: %s", self.count, exc)
                raise BadRules(f"not reloaded, the previous {self.count} rules stay in force: {exc}") from None
            self._rules = rules
        return len(rules)
