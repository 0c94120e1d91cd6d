"""`loopctl up`'s live line is read in the background: a broker that does not answer slows the line, never the loop
that supervises the services."""

from __future__ import annotations

import threading
import time

from loop.up import LiveStatus


def wait_for(condition, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline
        time.sleep(0.01)


def test_a_read_that_hangs_on_the_broker_leaves_the_last_line_with_its_age():
    release, reads = threading.Event(), []

    def read(monitor) -> str:
        reads.append(monitor)
        if len(reads) > 1:
            release.wait(30)  # the broker went away mid-run
        return f"line {len(reads)}"

    live = LiveStatus(read, connect=lambda: "monitor", every_s=0.05)
    live.start()
    try:
        wait_for(lambda: len(reads) == 2)
        started = time.monotonic()
        assert live.line() == "line 1"  # at once, while the second read hangs
        wait_for(lambda: "ago" in live.line())
        assert live.line().startswith("line 1 (as of ") and time.monotonic() - started < 5
    finally:
        release.set()
        live.close()


def test_a_broker_that_refuses_is_reported_and_asked_again():
    connects = []

    def connect():
        connects.append(1)
        if len(connects) == 1:
            raise ConnectionError("no broker at 127.0.0.1:9092")
        return "monitor"

    live = LiveStatus(lambda monitor: "all good", connect=connect, every_s=0.05)
    live.start()
    try:
        wait_for(lambda: len(connects) >= 1 and live.line() != "starting")
        wait_for(lambda: live.line() == "all good")
        assert len(connects) == 2
    finally:
        live.close()
