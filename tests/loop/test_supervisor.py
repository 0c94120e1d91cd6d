import os
import sys
import time

import psutil
import pytest

from loop.supervisor import Supervisor

SLEEPER = ["timeit", "-n", "1", "-r", "1", "import time; time.sleep(60)"]  # module args, as services are


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


def test_a_service_that_exits_is_restarted_until_it_gives_up(supervisor):
    supervisor.add("flaky", ["-c", "raise SystemExit(3)"], max_restarts=1)
    supervisor.start()
    supervisor.services[0].process.wait(timeout=30)
    assert supervisor.check() == []  # restarted once
    assert supervisor.services[0].restarts == 1
    supervisor.services[0].process.wait(timeout=30)
    assert supervisor.check() == ["flaky"]
    assert sys.executable in supervisor.services[0].argv
