"""Visitors' prompts, pure: their tickets (what a visitor's page may ask about: only its own prompt)
and the moderation list the operator approves from. No sockets, no queue, no clock of its own:
the time is passed in.

A ticket is a random token handed to the visitor's page; it names one prompt and says where it is:

===============  ====================================================================
``moderation``   waiting in the moderation list for the operator
``queued``       approved (or sent without moderation): a job, ``job_id``, is queued or running
``done``         its world was made (``on the dome`` while it is the newest world shown)
``refused``      the operator rejected it
``dropped``      the moderation list was full and it was the oldest waiting
``failed``       its job ended without a world (the safety checker, an error, a cancel)
===============  ====================================================================

Both are bounded: the oldest tickets are forgotten past ``max_tickets`` (their pages then hear
"unknown"), and the moderation list drops its oldest entry, with a notice, past ``max_waiting``.
"""

from __future__ import annotations

import secrets
from collections import OrderedDict
from dataclasses import dataclass, field


@dataclass
class Ticket:
    ticket: str
    #: Where the prompt came from: the visitor's network address (one phone on the venue's Wi-Fi, one kiosk).
    device: str
    prompt: str
    since: float
    state: str = "moderation"
    job_id: str | None = None
    #: Why it failed (``unsafe_content``, ``engine_failed``, ``cancelled``…), for the log and the page's wording.
    reason: str = ""


@dataclass
class VisitorBook:
    """The tickets of visitors' prompts and, in their order of arrival, those waiting for moderation."""

    max_tickets: int = 1000
    max_waiting: int = 100
    _tickets: OrderedDict[str, Ticket] = field(default_factory=OrderedDict)
    _waiting: OrderedDict[str, Ticket] = field(default_factory=OrderedDict)

    def new(self, device: str, prompt: str, now: float, moderated: bool) -> tuple[Ticket, Ticket | None]:
        """A ticket for a prompt (``moderation`` when ``moderated``, else ``queued`` once given a job),
        and the ticket dropped from a full moderation list to make room (None: none)."""
        ticket = Ticket(secrets.token_urlsafe(12), device, prompt, now, "moderation" if moderated else "queued")
        self._tickets[ticket.ticket] = ticket
        while len(self._tickets) > self.max_tickets:
            old_id, _ = self._tickets.popitem(last=False)
            self._waiting.pop(old_id, None)
        dropped = None
        if moderated:
            self._waiting[ticket.ticket] = ticket
            if len(self._waiting) > self.max_waiting:
                _, dropped = self._waiting.popitem(last=False)
                dropped.state = "dropped"
        return ticket, dropped

    def get(self, ticket: str) -> Ticket | None:
        return self._tickets.get(ticket)

    def forget(self, ticket: str) -> None:
        """A ticket whose prompt never became a job (it could not be queued)."""
        self._tickets.pop(ticket, None)
        self._waiting.pop(ticket, None)

    def waiting(self) -> list[Ticket]:
        """The moderation list, oldest first."""
        return list(self._waiting.values())

    def take(self, ticket: str) -> Ticket | None:
        """Take ``ticket`` off the moderation list (to approve or reject it); None when it is not on it."""
        return self._waiting.pop(ticket, None)

    def from_device(self, device: str) -> list[Ticket]:
        """Every waiting ticket of ``device``, oldest first, taken off the list."""
        mine = [t for t in self._waiting.values() if t.device == device]
        for t in mine:
            del self._waiting[t.ticket]
        return mine


def describe(ticket: Ticket | None, ahead: int | None, running: bool, on_screen: bool) -> dict[str, object]:
    """What a visitor's page shows for its ticket: a state and a friendly sentence, nothing else
    (never another visitor's prompt, a job id or a path). ``ahead``: jobs before its job in the
    queue (None: not in the queue); ``running``: its job is being made; ``on_screen``: its world
    is the newest shown."""
    if ticket is None:
        return {"state": "unknown", "text": "This prompt is no longer known here; please type a new one."}
    state = ticket.state
    text = {
        "moderation": "Waiting for a moderator to approve your prompt.",
        "refused": "Your prompt was not taken this time. Please try another.",
        "dropped": "Too many prompts are waiting right now. Please try again in a little while.",
        "failed": "Your world could not be shown. Please try another prompt.",
    }.get(state, "")
    if state == "failed" and ticket.reason == "cancelled":
        text = "A newer prompt took its place before yours was made. Please try again."
    if state == "queued":
        if running:
            state, text = "making", "Your world is being made now."
        elif ahead is not None:
            text = "In the queue: you are next." if ahead == 0 else f"In the queue, {ahead} ahead of you."
        else:
            text = "In the queue."
    elif state == "done":
        text = "On the dome now. Look up!" if on_screen else "Your world was on the dome."
        state = "on_screen" if on_screen else "shown"
    return {"state": state, "text": text} | ({"ahead": ahead} if ahead is not None and state == "queued" else {})
