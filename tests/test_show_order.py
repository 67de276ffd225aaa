"""The playhead's rules alone (pure): where a show starts, what stands by after a cue, past the
skipped cues and through ``goto``, with and without ``loop``."""

from __future__ import annotations

from bridge.show import order
from bridge.show.cues import Show
from bridge.show.reading import parse_show


def _show(loop: bool, fallback: str | None = None, goto: str | None = None) -> Show:
    cues = "".join(
        f'[[cue]]\nnumber = "{n}"\nprompt = "p"\nseed = 1\n' + (f'goto = "{goto}"\n' if goto and n == "b" else "")
        for n in ("a", "b", "c", "d")
    )
    head = f'name = "s"\nloop = {str(loop).lower()}\n' + (f'fallback = "{fallback}"\n' if fallback else "")
    return parse_show(head + cues)


def test_a_show_starts_at_its_fallback_else_its_first_cue() -> None:
    assert order.start_index(_show(False)) == 0
    assert order.start_index(_show(False, fallback="c")) == 2


def test_next_and_previous_wrap_only_in_a_loop_and_pass_skipped_cues() -> None:
    plain, loop = _show(False), _show(True)
    assert [order.step(plain, i, 1) for i in range(4)] == [1, 2, 3, None]
    assert [order.step(plain, i, -1) for i in range(4)] == [None, 0, 1, 2]
    assert order.step(loop, 3, 1) == 0 and order.step(loop, 0, -1) == 3
    assert order.step(loop, 0, 1, {"b", "c"}) == 3
    assert order.step(loop, 2, 1, {"d"}) == 0
    assert order.step(plain, 2, 1, {"d"}) is None
    assert order.step(loop, 0, 1, {"a", "b", "c", "d"}) is None  # every cue skipped: nothing, not a hang
    assert order.step(loop, 0, 1, {"b", "c", "d"}) == 0  # only itself left: round to itself


def test_goto_stands_by_instead_of_the_next_cue_unless_it_is_skipped() -> None:
    branch = _show(False, goto="a")
    assert order.after(branch, 1) == 0 and order.after(branch, 0) == 1
    assert order.after(branch, 1, {"a"}) == 1  # its goto is skipped: the cue after the goto
    assert order.after(branch, 1, {"a", "b"}) == 2  # …past the skipped ones
    assert order.after(_show(True), 0, {"b"}) == 2  # no goto: the next cue that is not skipped
    assert order.after(branch, 3) is None
    assert order.after(_show(False, goto="d"), 1, {"d"}) is None
