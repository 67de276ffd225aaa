"""The job queue (bridge/workers/jobs.py) on its own: FIFO and latest-wins, bounds, cancel, close."""

from __future__ import annotations

import threading
import time

import pytest

from bridge.errors import QueueFull
from bridge.workers.jobs import Job, JobQueue
from ldm3d_engine.types import GenerateRequest


def _job(n: int) -> Job:
    return Job(f"job-{n}", GenerateRequest(f"prompt {n}"), ("127.0.0.1", 9000 + n))


def test_fifo_keeps_order_and_reports_positions() -> None:
    queue = JobQueue(capacity=3)
    assert [queue.put(_job(n)) for n in range(3)] == [(1, []), (2, []), (3, [])]
    assert len(queue) == 3
    assert [queue.take(timeout=0).id for _ in range(3)] == ["job-0", "job-1", "job-2"]  # type: ignore[union-attr]
    assert queue.take(timeout=0) is None


def test_a_full_fifo_queue_refuses_with_what_to_do() -> None:
    queue = JobQueue(capacity=2)
    queue.put(_job(0))
    queue.put(_job(1))
    with pytest.raises(QueueFull) as caught:
        queue.put(_job(2))
    assert str(caught.value) == (
        "the queue is full (2 jobs waiting); wait for /ldm3d/ready, cancel a job, "
        "or run the bridge with a larger queue or --queue-mode latest-wins"
    )
    assert len(queue) == 2


def test_latest_wins_replaces_every_waiting_job() -> None:
    """Pins "latest-wins never drops anything": the newest is always next, the rest are handed back."""
    queue = JobQueue(capacity=2, mode="latest-wins")
    assert queue.put(_job(0)) == (1, [])
    position, replaced = queue.put(_job(1))
    assert position == 1 and [j.id for j in replaced] == ["job-0"]
    for n in range(2, 50):  # never full, never more than one waiting
        position, replaced = queue.put(_job(n))
        assert position == 1 and [j.id for j in replaced] == [f"job-{n - 1}"]
    assert len(queue) == 1 and queue.take(timeout=0).id == "job-49"  # type: ignore[union-attr]


def test_take_waits_for_a_job_and_runs_on_take_under_the_lock() -> None:
    queue = JobQueue()
    marked: list[str] = []
    threading.Timer(0.05, lambda: queue.put(_job(7))).start()
    t0 = time.monotonic()
    job = queue.take(timeout=5, on_take=lambda j: marked.append(j.id))
    assert job is not None and job.id == "job-7" and marked == ["job-7"] and time.monotonic() - t0 < 4
    t0 = time.monotonic()
    assert queue.take(timeout=0.1) is None and time.monotonic() - t0 >= 0.09  # waits, then gives up


def test_remove_drain_and_close() -> None:
    queue = JobQueue()
    for n in range(3):
        queue.put(_job(n))
    assert queue.remove("job-1").id == "job-1"  # type: ignore[union-attr]
    assert queue.remove("job-1") is None
    assert [j.id for j in queue.drain()] == ["job-0", "job-2"] and len(queue) == 0
    queue.close()
    t0 = time.monotonic()
    assert queue.take(timeout=5) is None and time.monotonic() - t0 < 1  # closed and empty: at once
    waiter: list[object] = []
    other = JobQueue()
    thread = threading.Thread(target=lambda: waiter.append(other.take(timeout=10)))
    thread.start()
    time.sleep(0.05)
    other.close()  # wakes a waiting worker
    thread.join(2)
    assert waiter == [None] and not thread.is_alive()


def test_bad_queue_settings_are_refused_with_the_value() -> None:
    with pytest.raises(ValueError, match="unknown queue mode 'lifo'; use fifo or latest-wins"):
        JobQueue(mode="lifo")
    with pytest.raises(ValueError, match="queue capacity must be at least 1, got 0"):
        JobQueue(capacity=0)


def test_a_job_outcome_is_claimed_exactly_once() -> None:
    job = _job(1)
    results: list[bool] = []
    threads = [threading.Thread(target=lambda: results.append(job.claim_outcome())) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(results) == [False] * 7 + [True]


def test_queue_defaults_and_a_queue_of_one() -> None:
    assert (JobQueue().capacity, JobQueue().mode) == (16, "fifo")
    single = JobQueue(capacity=1)
    assert single.put(_job(0)) == (1, [])
    with pytest.raises(QueueFull, match=r"\(1 jobs waiting\)"):
        single.put(_job(1))


def test_a_cue_with_an_object_gets_the_time_of_two_jobs() -> None:
    from ldm3d_engine.object_types import ObjectRequest

    plain = Job("a", GenerateRequest("p"), None)
    with_object = Job("b", GenerateRequest("p"), None, object_after=ObjectRequest("a red lantern"))
    assert (plain.size, with_object.size) == (1, 2)


def test_a_job_put_back_is_next_and_wakes_a_waiting_worker() -> None:
    """A job whose worker was lost before it began goes back first, and a worker waiting meanwhile takes it."""
    queue = JobQueue()
    queue.put(_job(1))
    assert queue.put_back(_job(0)) is True
    assert [j.id for j in queue.snapshot()] == ["job-0", "job-1"]
    other = JobQueue()
    taken: list[Job | None] = []
    thread = threading.Thread(target=lambda: taken.append(other.take(timeout=5)))
    thread.start()
    time.sleep(0.05)
    other.put_back(_job(2))
    thread.join(2)
    assert [j.id for j in taken if j is not None] == ["job-2"]


def test_a_job_is_not_put_back_into_a_closed_queue_or_behind_a_newer_live_job() -> None:
    closed = JobQueue()
    closed.close()
    live = JobQueue(mode="latest-wins")
    live.put(_job(1))
    idle_live = JobQueue(mode="latest-wins")
    assert (closed.put_back(_job(0)), live.put_back(_job(0)), idle_live.put_back(_job(0))) == (False, False, True)
    assert (len(closed), [j.id for j in live.snapshot()]) == (0, ["job-1"])


def test_nothing_is_sent_about_a_job_after_its_final_message() -> None:
    job = _job(1)
    sent: list[str] = []
    assert job.unless_ended(lambda: sent.append("progress")) is True and not job.ended
    assert job.claim_outcome() and job.ended
    assert job.unless_ended(lambda: sent.append("late progress")) is False
    assert sent == ["progress"]


def test_a_show_waiting_for_its_scene_is_told_the_final_address() -> None:
    told: list[str] = []
    Job("a", GenerateRequest("p"), None).finished("/ldm3d/ready")  # nobody waits: nothing happens
    Job("b", GenerateRequest("p"), None, on_done=told.append).finished("/ldm3d/cancelled")
    assert told == ["/ldm3d/cancelled"]


def test_on_queued_is_told_the_position_and_the_jobs_replaced() -> None:
    told: list[tuple[int, list[str]]] = []

    def tell(position: int, replaced: list[Job]) -> None:
        told.append((position, [j.id for j in replaced]))

    fifo, live = JobQueue(), JobQueue(mode="latest-wins")
    for n in range(2):
        fifo.put(_job(n), on_queued=tell)
        live.put(_job(n), on_queued=tell)
    assert told == [(1, []), (1, []), (2, []), (1, ["job-0"])]
