"""`loopctl up` supervises everything it starts, the Kafka broker included: a broker killed with SIGKILL is started
again on its port and log directory, a killed service comes back, the live line keeps coming while they do, and
SIGTERM then stops it all, leaving no process behind."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from loop.policy import LoopPolicy
from services.kafka.launcher import KafkaBroker, _free_ports

pytestmark = [pytest.mark.kafka, pytest.mark.slow]
REPO = Path(__file__).resolve().parents[2]


def wait_for(condition, timeout: float, what: str, log: Path):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.5)
    raise AssertionError(f"no {what} within {timeout} s; loopctl up said:\n{log.read_text()[-3000:]}")


def service_pid(up: subprocess.Popen, module: str) -> int | None:
    for child in psutil.Process(up.pid).children(recursive=True):
        try:
            command = child.cmdline()
        except psutil.Error:
            continue
        if "-m" in command and command[command.index("-m") + 1:command.index("-m") + 2] == [module]:
            return child.pid
    return None


def test_the_broker_and_a_service_killed_under_loopctl_up_come_back(tmp_path, tiny_trained_model):
    policy = tmp_path / "policy.json"
    policy.write_text(LoopPolicy(problems_per_round=50, request_size=25, k=2, base_eval_up_to=2,
                                 lora={"steps": 2, "batch_size": 4}).model_dump_json())
    [port] = _free_ports(1)
    env = {**os.environ, "LOOP_DATA_DIR": str(tmp_path), "LOOP_MODEL_DIR": str(tiny_trained_model),
           "LOOP_KAFKA_BOOTSTRAP": f"127.0.0.1:{port}", "OMP_NUM_THREADS": "1"}
    log = tmp_path / "up.log"
    with log.open("w") as out:
        up = subprocess.Popen([sys.executable, "-m", "loop.cli", "up", "--policy", str(policy), "--api-port", "0"],
                              cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT)
    restarted = None
    try:
        wait_for(lambda: "services started" in log.read_text(), 180, "start", log)
        broker = KafkaBroker(tmp_path / "kafka")  # the one loopctl up started: its port from its properties
        first = broker.pid
        assert first is not None and broker.answers()
        os.kill(first, signal.SIGKILL)
        restarted = wait_for(lambda: broker.pid not in (None, first) and broker.answers() and broker.pid, 120,
                             "broker restarted by the supervisor", log)
        assert broker.port == port  # the same address: the services find it again
        lines = log.read_text().count(" min] ")
        wait_for(lambda: log.read_text().count(" min] ") >= lines + 2, 60, "live line after the restart", log)

        controller = wait_for(lambda: service_pid(up, "loop.controller"), 60, "controller", log)
        os.kill(controller, signal.SIGKILL)
        wait_for(lambda: service_pid(up, "loop.controller") not in (None, controller), 60, "controller restarted", log)
        assert up.poll() is None
        assert json.loads((tmp_path / "loop" / "policy.json").read_text())["problems_per_round"] == 50
    finally:
        up.send_signal(signal.SIGTERM)
        code = up.wait(timeout=120)
    assert code == 0, log.read_text()[-3000:]
    assert restarted is not None and not psutil.pid_exists(restarted)
    assert KafkaBroker(tmp_path / "kafka").pid is None
