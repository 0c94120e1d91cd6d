import os
import subprocess
import sys
import time

import psutil
import pytest

from loop.supervisor import NEVER_RESTART, RestartLimit, Supervisor

SLEEPER = ["timeit", "-n", "1", "-r", "1", "import time; time.sleep(60)"]  # module args, as services are
CRASHER = ["json.tool", "/no/such/file"]  # exits at once with an error


@pytest.fixture
def supervisor(tmp_path):
    sup = Supervisor(tmp_path / "logs")
    yield sup
    sup.stop(timeout=5)


def test_a_yielding_service_runs_nicer_than_its_supervisor(supervisor):
    supervisor.add("worker", SLEEPER)
    supervisor.add("light", SLEEPER, nice=7)
    supervisor.start()
    ours = os.nice(0)
    worker, light = (psutil.Process(s.process.pid) for s in supervisor.services)
    deadline = time.monotonic() + 30
    while light.cmdline() != [sys.executable, "-m", *SLEEPER]:  # `nice` sets the niceness, then becomes the program
        assert time.monotonic() < deadline, light.cmdline()
        time.sleep(0.01)
    assert worker.nice() == ours
    assert light.nice() == min(ours + 7, 19)


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def crash(supervisor: Supervisor, name: str) -> None:
    """Wait for the service (which exits at once) to be gone, so the next check sees it exited."""
    service = next(s for s in supervisor.services if s.name == name)
    service.process.wait(timeout=30)


def test_a_service_that_keeps_crashing_is_held_back_then_tried_again(tmp_path):
    clock = Clock()
    supervisor = Supervisor(tmp_path / "logs", clock=clock)
    limit = RestartLimit(burst=2, interval_s=100, hold_s=50, backoff_s=1, max_backoff_s=4, stable_s=10)
    service = supervisor.add("flaky", CRASHER, limit=limit)
    try:
        supervisor.start()
        crash(supervisor, "flaky")
        assert supervisor.check() == [] and service.restart_at == 1  # backoff: 1 s, not restarted yet
        assert service.restarts == 0
        clock.now = 1
        assert supervisor.check() == [] and service.restarts == 1
        crash(supervisor, "flaky")
        clock.now = 2
        assert supervisor.check() == [] and service.restart_at == 4  # a quick crash again: the delay doubles
        clock.now = 4
        supervisor.check()
        crash(supervisor, "flaky")
        clock.now = 5
        assert supervisor.check() == ["flaky"]  # two restarts within 100 s: the most allowed, held back 50 s
        assert service.restart_at == 55 and service.restarts == 2
        clock.now = 54
        assert supervisor.check() == ["flaky"] and service.restarts == 2
        clock.now = 55
        assert supervisor.check() == [] and service.restarts == 3  # tried again once the hold is over
        crash(supervisor, "flaky")
        assert (tmp_path / "logs" / "flaky.log").read_text().count("can't open") == 4  # every run appended to its log
    finally:
        supervisor.stop(timeout=5)


def test_a_service_that_crashes_now_and_then_is_restarted_every_time(tmp_path):
    clock = Clock()
    supervisor = Supervisor(tmp_path / "logs", clock=clock)
    limit = RestartLimit(burst=2, interval_s=100, hold_s=50, backoff_s=1, stable_s=10)
    service = supervisor.add("daily", CRASHER, limit=limit)
    try:
        supervisor.start()
        for day in range(1, 6):  # five crashes, each long after the last: never over the limit, never held
            crash(supervisor, "daily")
            clock.now = day * 1000
            assert supervisor.check() == [] and service.restart_at == day * 1000 + 1  # a run past stable_s: 1 s
            clock.now += 1
            assert supervisor.check() == [] and service.restarts == day
    finally:
        supervisor.stop(timeout=5)


def test_a_service_that_must_not_be_restarted_is_reported_at_once(tmp_path):
    supervisor = Supervisor(tmp_path / "logs")
    supervisor.add("once", CRASHER, limit=NEVER_RESTART)
    try:
        supervisor.start()
        crash(supervisor, "once")
        assert supervisor.check() == ["once"] and supervisor.services[0].restarts == 0
        assert supervisor.check() == ["once"]
    finally:
        supervisor.stop(timeout=5)


def test_an_adopted_process_is_restarted_with_its_command_in_its_directory_and_stopped_last(tmp_path):
    clock = Clock()
    supervisor = Supervisor(tmp_path / "logs", clock=clock)
    argv = [sys.executable, "-c", "import time; time.sleep(60)"]
    started = []
    broker = supervisor.adopt("broker", subprocess.Popen(argv), argv, log_path=tmp_path / "broker.out", cwd=tmp_path,
                              on_start=started.append)
    worker = supervisor.add("worker", SLEEPER)
    try:
        supervisor.start()  # starts the worker; the adopted process runs already
        assert started == [] and broker.process.pid != worker.process.pid
        broker.process.kill()
        broker.process.wait(timeout=30)
        assert supervisor.check() == [] and broker.restarts == 0  # reaped, and due in backoff_s
        clock.now = RestartLimit().backoff_s
        supervisor.check()
        assert broker.restarts == 1 and started == [broker.process]
        assert psutil.Process(broker.process.pid).cwd() == str(tmp_path)
    finally:
        supervisor.stop(timeout=5)
    assert broker.process.poll() is not None and worker.process.poll() is not None
