"""Run a set of processes as one unit: start them, restart one that dies, stop all cleanly.

``loopctl up`` uses it for the embedded default, where there is no Docker to do this job.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from services.niceness import with_niceness

log = logging.getLogger(__name__)


@dataclass
class Service:
    name: str
    argv: list[str]
    max_restarts: int = 5
    nice: int = 0  # added to the process's niceness: a higher one yields its cores to the others
    process: subprocess.Popen | None = None
    restarts: int = 0
    log_path: Path | None = None
    _log_file: object | None = field(default=None, repr=False)


class Supervisor:
    def __init__(self, log_dir: Path, env: dict[str, str] | None = None) -> None:
        self.log_dir = log_dir
        self.env = {**os.environ, **(env or {})}
        self.services: list[Service] = []
        log_dir.mkdir(parents=True, exist_ok=True)

    def add(self, name: str, module_args: list[str], *, max_restarts: int = 5, nice: int = 0) -> Service:
        service = Service(name, [sys.executable, "-m", *module_args], max_restarts=max_restarts, nice=nice)
        service.log_path = self.log_dir / f"{name}.log"
        self.services.append(service)
        return service

    def start(self) -> None:
        for service in self.services:
            self._spawn(service)

    def _spawn(self, service: Service) -> None:
        service._log_file = open(service.log_path, "ab")  # noqa: SIM115 - lives as long as the process
        service.process = subprocess.Popen(
            with_niceness(service.argv, service.nice), env=self.env, stdout=service._log_file, stderr=subprocess.STDOUT, start_new_session=True
        )
        log.info("started %s (pid %d), log %s", service.name, service.process.pid, service.log_path)

    def check(self) -> list[str]:
        """Restart services that exited; returns the names of those that gave up restarting."""
        failed = []
        for service in self.services:
            code = service.process.poll() if service.process else None
            if code is None:
                continue
            if service.restarts >= service.max_restarts:
                failed.append(service.name)
                continue
            service.restarts += 1
            log.warning("%s exited with %s; restart %d of %d", service.name, code, service.restarts, service.max_restarts)
            time.sleep(min(2**service.restarts, 30))
            self._spawn(service)
        return failed

    def stop(self, timeout: float = 30.0) -> None:
        """SIGTERM everything (the workers finish their batch and commit), SIGKILL what lingers."""
        running = [s for s in reversed(self.services) if s.process and s.process.poll() is None]
        for service in running:
            service.process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + timeout
        for service in running:
            try:
                service.process.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                log.warning("%s did not stop in %.0fs; killing it", service.name, timeout)
                os.killpg(service.process.pid, signal.SIGKILL)
                service.process.wait()
        for service in self.services:
            if service._log_file:
                service._log_file.close()
