"""Which cue comes next: the playhead's rules, pure (a show, an index, the skipped cues in).

- A show starts at its fallback cue, else its first.
- After a cue fires, its ``goto`` cue stands by, else the next one in the list; past the end a
  looping show wraps to the first, another has nothing standing by.
- Cues that failed ``show_skip_after`` times in a row are passed over (a ``goto`` to one goes on
  to the cue after it), at most once round the list.
"""

from __future__ import annotations

from collections.abc import Collection

from bridge.show.cues import Show


def start_index(show: Show) -> int:
    """Where a loaded show begins: its fallback cue, else its first."""
    start = show.index(show.fallback) if show.fallback is not None else None
    return start if start is not None else 0


def step(show: Show, index: int, by: int, skipped: Collection[str] = ()) -> int | None:
    """The cue ``by`` places from ``index`` (1: the next, -1: the previous) that is not skipped,
    wrapping when the show loops; None past an end, or when every other cue is skipped."""
    for _ in range(len(show.cues)):  # past the cues that keep failing, at most once round
        index += by
        if not 0 <= index < len(show.cues):
            if not show.loop:
                return None
            index %= len(show.cues)
        if show.cues[index].number not in skipped:
            return index
    return None


def after(show: Show, index: int, skipped: Collection[str] = ()) -> int | None:
    """The cue that stands by once ``index`` fired: its ``goto`` cue, else the next one."""
    goto = show.cues[index].goto
    target = show.index(goto) if goto is not None else None
    if target is None:
        return step(show, index, 1, skipped)
    return target if show.cues[target].number not in skipped else step(show, target, 1, skipped)
