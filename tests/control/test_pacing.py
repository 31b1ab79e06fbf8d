"""The launcher's RunTask pacer: a burst goes out at once, the rest one ``1 / rate`` apart, across threads."""

from __future__ import annotations

import threading

import pytest
from ecs_event_executor.control.pacing import Pacer


class FakeTime:
    def __init__(self) -> None:
        self.now = 100.0
        self.slept: list[float] = []

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)


def test_a_burst_goes_at_once_and_the_rest_at_the_rate() -> None:
    t = FakeTime()
    pacer = Pacer(4.0, clock=t.clock, sleep=t.sleep)
    waits = [pacer.acquire() for _ in range(8)]
    assert waits == [0.0, 0.0, 0.0, 0.0, 0.25, 0.5, 0.75, 1.0]
    assert t.slept == [0.25, 0.5, 0.75, 1.0]


def test_tokens_come_back_with_time_up_to_the_burst() -> None:
    t = FakeTime()
    pacer = Pacer(4.0, burst=2, clock=t.clock, sleep=t.sleep)
    assert [pacer.reserve() for _ in range(3)] == [0.0, 0.0, 0.25]
    t.now += 10  # long idle: the bucket refills to its burst, not beyond
    assert [pacer.reserve() for _ in range(3)] == [0.0, 0.0, 0.25]


def test_concurrent_callers_each_get_their_own_slot() -> None:
    t = FakeTime()
    pacer = Pacer(10.0, burst=1, clock=t.clock, sleep=t.sleep)
    waits: list[float] = []
    lock = threading.Lock()

    def take() -> None:
        wait = pacer.reserve()
        with lock:
            waits.append(wait)

    threads = [threading.Thread(target=take) for _ in range(20)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=10)
    assert sorted(waits) == pytest.approx([i / 10 for i in range(20)])


def test_a_wait_longer_than_allowed_takes_no_token() -> None:
    t = FakeTime()
    pacer = Pacer(1.0, clock=t.clock, sleep=t.sleep)
    assert pacer.acquire(max_wait=5) == 0.0
    assert pacer.acquire(max_wait=0.5) is None  # would wait 1 s
    assert t.slept == []
    assert pacer.acquire(max_wait=5) == 1.0  # the refused caller gave its token back


def test_rate_must_be_positive() -> None:
    with pytest.raises(ValueError, match="positive"):
        Pacer(0)
