"""Running a morph on a worker: its frames one after another on the worker's engine.

Each frame is one ``generate_between`` at its place between the two worlds; every frame but the
last is handed to the writer thread as soon as it is made (written and announced while the next
one renders); the last is the job's result, the world the morph arrives at. Progress counts every
step of every frame. Run again after out-of-memory, it goes on from the frame that failed.
"""

from __future__ import annotations

from collections.abc import Callable

from bridge.contract.engine_api import EngineLike
from bridge.contract.morphs import MorphRequest, check_engine
from ldm3d_engine.types import CancelToken, Previews, RGBDResult


def morph_frames(
    engine: EngineLike,
    request: MorphRequest,
    on_step: Callable[[int, int], None],
    cancel: CancelToken,
    previews: Previews | None,
    hand: Callable[[int, RGBDResult], None],
) -> Callable[[], RGBDResult]:
    """The call that renders ``request``'s frames on ``engine`` (the worker runs it; again after
    out-of-memory). WrongModel or BadArguments before any frame when the engine cannot run it."""
    made = 0

    def run() -> RGBDResult:
        nonlocal made
        check_engine(request, engine)
        frames = request.frames
        while True:
            index = made

            def step(done: int, total: int, index: int = index) -> None:
                on_step(index * total + done, frames * total)

            result = engine.generate_between(
                request.first, request.second, request.position(index), on_step=step, cancel=cancel, previews=previews
            )
            made += 1
            if made == frames:
                return result
            hand(index, result)

    return run
