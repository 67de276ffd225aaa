"""The budget of a list answer to a sender that is not confirmed (pure: sizes only, no socket)."""

from __future__ import annotations

from bridge.notify.lists import Message, cut_notice, encoded_size, fit_list


def _items(n: int) -> list[Message]:
    return [("/ldm3d/cue/info", (str(i), f"Cue {i}", 0)) for i in range(1, n + 1)]


END: Message = ("/ldm3d/cue/end", (3,))


def _notice(sent: int) -> Message:
    return cut_notice(sent, 3, "cues")


def _size(messages: list[Message]) -> int:
    return sum(encoded_size(m) for m in messages)


def test_a_list_that_fits_ends_with_its_end_message() -> None:
    items = _items(3)
    bound = _size([*items, END])
    assert fit_list(items, END, bound, _notice) == ([*items, END], None)
    assert fit_list([], ("/ldm3d/cue/end", (0,)), 100, _notice) == ([("/ldm3d/cue/end", (0,))], None)


def test_a_list_one_byte_too_large_is_cut_with_room_kept_for_the_notice() -> None:
    items = _items(3)
    answer, cut = fit_list(items, END, _size([*items, END]) - 1, _notice)
    assert cut == _notice(len(answer)) and END not in answer
    assert answer == items[: len(answer)] and len(answer) < 3
    assert _size(answer) + encoded_size(cut) <= _size([*items, END]) - 1  # the notice fits too


def test_a_cut_list_takes_every_item_that_leaves_room_for_the_notice_and_no_more() -> None:
    items, end = _items(5), ("/ldm3d/cue/end", (5,))

    def notice(sent: int) -> Message:
        return cut_notice(sent, 5, "cues")

    bound = _size(items[:2]) + encoded_size(notice(5))  # two items and the notice, to the byte
    assert bound < _size([*items, end])
    assert fit_list(items, end, bound, notice) == (items[:2], notice(2))
    assert fit_list(items, end, bound - 1, notice) == (items[:1], notice(1))


def test_the_items_sent_and_the_notice_stay_within_the_bound_at_every_size() -> None:
    items = _items(3)
    for bound in range(0, _size([*items, END]) + 40):
        answer, cut = fit_list(items, END, bound, _notice)
        sent = answer + ([cut] if cut is not None else [])
        if cut is None:
            assert answer == [*items, END] and _size(answer) <= bound
        else:
            assert _size(sent) <= bound or not answer, (bound, answer)  # nothing fits: the notice alone
            assert cut[1][2].startswith(f"{len(answer)} of 3 cues")


def test_the_notice_says_how_many_of_how_many_and_what_to_do() -> None:
    assert cut_notice(1, 1000, "cues") == (
        "/ldm3d/error",
        ("", "reply_too_large", "1 of 1000 cues: subscribe this host for the whole list"),
    )
    assert encoded_size(("/ldm3d/x", ("\ud800",))) == 0  # cannot be encoded: never sent, no size
