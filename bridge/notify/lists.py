"""How much of a list answer an unconfirmed sender gets (pure: sizes only, nothing is sent).

A list (``/ldm3d/cue/list``, ``/ldm3d/moderation/list``) is several messages for one request.
A sender that has not confirmed its address may get at most ``bound`` bytes for the whole
answer, all messages together (``reply_factor`` times the request): the items that fit, in
order, then either the list's end message (all fitted) or a ``reply_too_large`` error saying
how many it got. A confirmed sender gets everything, paced (:meth:`Notifier.reply_list`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from bridge.osc.codec import Arg, encode_message

#: One OSC message to send: (address, arguments).
Message = tuple[str, tuple[Arg, ...]]


def cut_notice(sent: int, total: int, noun: str) -> Message:
    """The error that ends a list cut short for an unconfirmed sender."""
    text = f"{sent} of {total} {noun}: subscribe this host for the whole list"
    return "/ldm3d/error", ("", "reply_too_large", text)


def encoded_size(message: Message) -> int:
    """Bytes ``message`` takes as a datagram; 0 for one that cannot be encoded (it is never sent)."""
    try:
        return len(encode_message(message[0], *message[1]))
    except ValueError:
        return 0


def fit_list(
    items: Sequence[Message],
    end: Message,
    bound: int,
    notice: Callable[[int], Message],
    size: Callable[[Message], int] = encoded_size,
) -> tuple[list[Message], Message | None]:
    """The items that fit in ``bound`` bytes, with room kept for what follows them.

    Returns ``(answer, cut)``: every item and ``end`` when they all fit (``cut`` None); otherwise the
    items that fit with room kept for ``cut``, which is ``notice(len(answer))``, to be sent within
    what is left of the bound. Encodes items only until the bound is passed, so a flood of list
    requests costs few encodings however long the list."""
    sizes: list[int] = []
    used = 0
    for item in items:
        sizes.append(size(item))
        used += sizes[-1]
        if used > bound:
            break
    else:
        if used + size(end) <= bound:
            return [*items, end], None
    room = bound - size(notice(len(items)))  # the longest notice: the count sent is at most this
    answer: list[Message] = []
    used = 0
    for i, needs in enumerate(sizes):  # (sizes stop where the bound was passed: the cut comes sooner)
        if used + needs > room:
            break
        answer.append(items[i])
        used += needs
    return answer, notice(len(answer))
