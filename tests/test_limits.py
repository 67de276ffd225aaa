"""The intake's rate limits and counters as pure functions of a clock you pass in (bridge/notify/limits.py)."""

from __future__ import annotations

import logging

import pytest

from bridge.notify.limits import Counters, LogLimiter, TokenBuckets


def test_a_bucket_allows_its_burst_then_its_rate() -> None:
    buckets = TokenBuckets(rate=2.0, burst=2)
    key = ("10.0.0.1", 9000)
    assert [buckets.allow(key, now=0.0) for _ in range(3)] == [True, True, False]
    assert buckets.allow(key, now=0.25) is False  # half a token
    assert buckets.allow(key, now=0.5) is True  # 2 per second: one token after 0.5 s
    assert buckets.allow(("10.0.0.2", 9000), now=0.5) is True  # keys are independent


def test_a_client_idle_for_long_gets_its_burst_back_and_no_more() -> None:
    """Pins the bug "token bucket without its burst cap": after 100 s idle, 101 jobs passed at once."""
    buckets = TokenBuckets(rate=1.0, burst=3)
    key = ("10.0.0.7", 9000)
    assert [buckets.allow(key, now=0.0) for _ in range(4)] == [True, True, True, False]
    assert [buckets.allow(key, now=100.0) for _ in range(5)] == [True, True, True, False, False]
    assert buckets.allow(key, now=100.5) is False
    assert buckets.allow(key, now=101.0) is True


def test_bucket_defaults() -> None:
    assert TokenBuckets(rate=1.0, burst=1).max_keys == 4096


def test_a_refused_request_spends_nothing() -> None:
    buckets = TokenBuckets(rate=1.0, burst=1)
    key = ("10.0.0.3", 9000)
    assert buckets.allow(key, now=0.0) is True
    assert [buckets.allow(key, now=t) for t in (0.2, 0.4, 0.6, 0.8)] == [False] * 4  # refusals cost no tokens
    assert buckets.allow(key, now=1.0) is True


def test_rate_limit_tables_stay_bounded_under_many_sources() -> None:
    """A flood with forged sources must not grow the bridge's memory: old keys are forgotten."""
    buckets = TokenBuckets(rate=1.0, burst=1, max_keys=100)
    for i in range(10_000):
        assert buckets.allow((f"10.0.{i // 256}.{i % 256}", 9000), now=0.0)  # each new source has its burst
    assert len(buckets) == 100
    assert not buckets.allow(("10.0.39.15", 9000), now=0.0)  # a recent key keeps its spent budget
    assert buckets.allow(("10.0.0.0", 9000), now=0.0)  # an old one was forgotten and starts afresh
    assert len(buckets) == 100


@pytest.mark.parametrize(("rate", "burst"), [(0.0, 1), (-1.0, 1), (1.0, 0.5)])
def test_impossible_limits_are_refused_with_the_values(rate: float, burst: float) -> None:
    with pytest.raises(ValueError, match=f"rate must be > 0 and burst >= 1, got {rate} and {burst}"):
        TokenBuckets(rate=rate, burst=burst)


def test_counters_add_and_snapshot_sorted() -> None:
    counters = Counters()
    counters.add("refused")
    counters.add("accepted", 3)
    counters.add("refused")
    assert counters.snapshot() == {"accepted": 3, "refused": 2}
    assert list(counters.snapshot()) == ["accepted", "refused"]


def test_log_limiter_logs_a_kind_once_per_interval_and_counts_the_rest(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="limits-test")
    limiter = LogLimiter(logging.getLogger("limits-test"), interval=10.0)
    limiter.warning("flood", 100.0, "flood from %s", "10.0.0.1")
    limiter.warning("flood", 105.0, "flood from %s", "10.0.0.1")
    limiter.warning("flood", 109.9, "flood from %s", "10.0.0.1")
    limiter.warning("other", 109.9, "other thing")
    limiter.warning("flood", 110.0, "flood from %s", "10.0.0.2")
    assert [r.getMessage() for r in caplog.records] == [
        "flood from 10.0.0.1",
        "other thing",
        "flood from 10.0.0.2",
        "2 more flood not logged in the last 10 s",
    ]
    assert all(r.levelno == logging.WARNING and not r.exc_info for r in caplog.records)  # no traceback


def test_log_limiter_exception_logs_the_traceback_at_error(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="limits-test")
    limiter = LogLimiter(logging.getLogger("limits-test"))
    try:
        raise RuntimeError("boom")
    except RuntimeError:
        limiter.exception("crash", 50.0, "handler failed: %s", "x")
        limiter.exception("crash", 55.0, "handler failed: %s", "y")  # same kind within the interval
        limiter.exception("other", 55.0, "other failed")
    record, other = caplog.records
    assert other.getMessage() == "other failed"
    assert record.levelno == logging.ERROR and record.getMessage() == "handler failed: x"
    assert record.exc_info and record.exc_info[0] is RuntimeError  # the traceback is logged


def test_log_limiter_defaults_to_one_line_per_kind_per_10_s(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="limits-test")
    limiter = LogLimiter(logging.getLogger("limits-test"))
    for now in (0.0, 9.9, 10.0, 19.9, 20.0):
        limiter.warning("k", now, "at %s", now)
    assert [r.getMessage() for r in caplog.records] == [
        "at 0.0",
        "at 10.0",
        "1 more k not logged in the last 10 s",
        "at 20.0",
        "1 more k not logged in the last 10 s",
    ]
    assert limiter.max_kinds == 256


def test_log_limiter_forgets_the_oldest_kind_beyond_its_bound(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="limits-test")
    limiter = LogLimiter(logging.getLogger("limits-test"), interval=10.0, max_kinds=2)
    limiter.warning("a", 0.0, "a1")
    limiter.warning("a", 1.0, "a2")  # suppressed
    limiter.warning("b", 1.0, "b1")
    limiter.warning("c", 1.0, "c1")  # a is forgotten, with its suppressed count
    limiter.warning("a", 2.0, "a3")  # logged again at once: a was forgotten
    assert [r.getMessage() for r in caplog.records] == ["a1", "b1", "c1", "a3"]
