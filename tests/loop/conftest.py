"""Fixtures for the loop's end-to-end tests: a quickly bootstrapped tiny model and the services as processes."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from services.settings import Settings

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def tiny_trained_model(tmp_path_factory) -> Path:
    """A two-layer builtin model trained for a minute on 1-2 digit addition: it writes the format, not always the sum."""
    from workers.model.builtin import BuiltinConfig, bootstrap

    directory = tmp_path_factory.mktemp("tiny-trained")
    bootstrap(BuiltinConfig(max_digits=2, layers=2, hidden=64, heads=2, intermediate=256, steps=300, batch_size=64,
                            lr=3e-3, warmup_steps=30, threads=1, eval_count=20, scarce_digits=0), directory)
    return directory


def service_env(settings: Settings, **extra: str) -> dict[str, str]:
    env = {**os.environ, "LOOP_DATA_DIR": str(settings.data_dir), "LOOP_KAFKA_BOOTSTRAP": settings.kafka_bootstrap,
           "LOOP_TOPIC_PREFIX": settings.topic_prefix, "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}
    if settings.model_dir is not None:
        env["LOOP_MODEL_DIR"] = str(settings.model_dir)
    env.update(extra)
    return env


class Services:
    """Child processes of one test, stopped with SIGTERM (then SIGKILL) at the end; logs kept for failures."""

    repo = REPO

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.processes: dict[str, subprocess.Popen] = {}
        self.extra_env: dict[str, str] = {}  # PYTHONPATH for a plug-in family, say
        self.log_dir = settings.data_dir / "logs"
        self.log_dir.mkdir(parents=True, exist_ok=True)

    def env(self) -> dict[str, str]:
        return service_env(self.settings, **self.extra_env)

    def start(self, name: str, *args: str) -> subprocess.Popen:
        log = open(self.log_dir / f"{name}.log", "wb")  # noqa: SIM115 - closed with the process
        process = subprocess.Popen([sys.executable, "-m", *args], cwd=REPO, env=self.env(),
                                   stdout=log, stderr=subprocess.STDOUT)
        self.processes[name] = process
        return process

    def assert_alive(self) -> None:
        for name, process in self.processes.items():
            if process.poll() is not None:
                raise AssertionError(f"{name} exited with {process.returncode}:\n{self.tail(name)}")

    def tail(self, name: str, size: int = 3000) -> str:
        return (self.log_dir / f"{name}.log").read_text(errors="replace")[-size:]

    def stop(self) -> None:
        for process in self.processes.values():
            if process.poll() is None:
                process.terminate()
        deadline = time.monotonic() + 20
        for process in self.processes.values():
            try:
                process.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


@pytest.fixture
def services(settings):
    running = Services(settings)
    yield running
    running.stop()


def _wait_until(predicate, timeout: float, what: str, services=None, interval: float = 1.0):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if services is not None:
            services.assert_alive()
        if time.monotonic() > deadline:
            logs = "\n".join(f"--- {name}\n{services.tail(name, 1500)}" for name in services.processes) if services else ""
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}\n{logs}")
        time.sleep(interval)


def _scalar(engine, query):
    with engine.connect() as connection:
        return connection.execute(query).scalar()


@pytest.fixture
def wait_until():
    """``wait_until(predicate, timeout, what, services)``: the predicate's first truthy value, or a failure that shows
    every service's log tail."""
    return _wait_until


@pytest.fixture
def scalar():
    """``scalar(engine, query)``: one value from the store."""
    return _scalar
