"""Run a set of processes as one unit: start them, restart one that dies, stop all cleanly.

``loopctl up`` uses it for the embedded default, where there is no Docker to do this job. Restarts follow a
:class:`RestartLimit`, as systemd's ``StartLimitBurst`` within ``StartLimitIntervalSec``: a service that crashes
now and then is restarted every time, however long the loop runs; one that keeps crashing is held back a while and
reported, then tried again. Restarts are scheduled, never slept on, so one crashing service delays no other.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from services.niceness import with_niceness

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RestartLimit:
    """At most ``burst`` restarts within any ``interval_s``; past that the service is held back ``hold_s`` before its
    next try. Between the restarts of a service that keeps crashing, the delay doubles from ``backoff_s`` up to
    ``max_backoff_s``; a run of ``stable_s`` or more resets it. ``burst=0`` never restarts (held back for good with
    ``hold_s=inf``)."""

    burst: int = 10
    interval_s: float = 600.0
    hold_s: float = 120.0
    backoff_s: float = 1.0
    max_backoff_s: float = 30.0
    stable_s: float = 60.0


NEVER_RESTART = RestartLimit(burst=0, hold_s=float("inf"))


@dataclass
class Service:
    name: str
    argv: list[str]
    limit: RestartLimit = field(default_factory=RestartLimit)
    nice: int = 0  # added to the process's niceness: a higher one yields its cores to the others
    cwd: Path | None = None
    on_start: Callable[[subprocess.Popen], None] | None = None  # told of every process started for the service
    process: subprocess.Popen | None = None
    restarts: int = 0  # in the whole run
    log_path: Path | None = None
    started_at: float = 0.0
    recent: deque[float] = field(default_factory=deque)  # when it was restarted, within the limit's window
    quick_crashes: int = 0  # crashes in a row, each before ``stable_s``
    restart_at: float | None = None  # exited: when it is started again
    held: bool = False  # over its limit: waiting out ``hold_s``
    adopted: bool = False  # started elsewhere (Supervisor.adopt): stopped after the others
    _log_file: IO[bytes] | None = field(default=None, repr=False)


class Supervisor:
    def __init__(self, log_dir: Path, env: dict[str, str] | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.log_dir = log_dir
        self.env = {**os.environ, **(env or {})}
        self.services: list[Service] = []
        self.clock = clock
        log_dir.mkdir(parents=True, exist_ok=True)

    def add(self, name: str, module_args: list[str], *, limit: RestartLimit | None = None, nice: int = 0) -> Service:
        service = Service(name, [sys.executable, "-m", *module_args], limit=limit or RestartLimit(), nice=nice)
        service.log_path = self.log_dir / f"{name}.log"
        self.services.append(service)
        return service

    def adopt(self, name: str, process: subprocess.Popen, argv: list[str], *, log_path: Path, cwd: Path | None = None,
              limit: RestartLimit | None = None, on_start: Callable[[subprocess.Popen], None] | None = None) -> Service:
        """Supervise a process started elsewhere (the Kafka broker, which ``KafkaBroker.start`` waits for until it
        answers): restarted with ``argv`` in ``cwd`` when it exits, its output appended to ``log_path``."""
        service = Service(name, argv, limit=limit or RestartLimit(), cwd=cwd, on_start=on_start, process=process,
                          log_path=log_path, started_at=self.clock(), adopted=True)
        self.services.append(service)
        return service

    def start(self) -> None:
        for service in self.services:
            if service.process is None:
                self._spawn(service)

    def _spawn(self, service: Service) -> None:
        if service._log_file:
            service._log_file.close()
        assert service.log_path is not None  # add() and adopt() set it
        service._log_file = open(service.log_path, "ab")  # noqa: SIM115 - lives as long as the process
        service.process = subprocess.Popen(
            with_niceness(service.argv, service.nice), env=self.env, stdout=service._log_file, stderr=subprocess.STDOUT,
            start_new_session=True, cwd=service.cwd,
        )
        service.started_at = self.clock()
        if service.on_start is not None:
            service.on_start(service.process)
        log.info("started %s (pid %d), log %s", service.name, service.process.pid, service.log_path)

    def check(self) -> list[str]:
        """Schedule a restart of every service that exited and start those that are due; returns the names of the
        services held back (over their restart limit), which the caller reports."""
        now = self.clock()
        for service in self.services:
            if service.restart_at is None:
                code = service.process.poll() if service.process else None
                if code is None:
                    continue
                self._schedule(service, code, now)
            if service.restart_at is not None and now >= service.restart_at:
                service.restart_at, service.held = None, False
                service.recent.append(now)
                service.restarts += 1
                self._spawn(service)
        return [s.name for s in self.services if s.held]

    def _schedule(self, service: Service, code: int, now: float) -> None:
        limit = service.limit
        while service.recent and now - service.recent[0] > limit.interval_s:
            service.recent.popleft()
        ran = now - service.started_at
        service.quick_crashes = service.quick_crashes + 1 if ran < limit.stable_s else 1
        if len(service.recent) >= limit.burst:
            service.held = True
            service.restart_at = now + limit.hold_s
            log.error("%s exited with %s after %.0f s: %d restarts within %.0f s, the most allowed; held back %.0f s",
                      service.name, code, ran, len(service.recent), limit.interval_s, limit.hold_s)
            return
        delay = min(limit.backoff_s * 2 ** (service.quick_crashes - 1), limit.max_backoff_s)
        service.restart_at = now + delay
        log.warning("%s exited with %s after %.0f s; restarting in %.0f s (%d of %d within %.0f s)", service.name,
                    code, ran, delay, len(service.recent) + 1, limit.burst, limit.interval_s)

    def stop(self, timeout: float = 30.0) -> None:
        """SIGTERM every service (the workers finish their batch and commit), SIGKILL what lingers; the adopted
        processes (the broker the workers commit to) only once the others are gone."""
        for wave in ([s for s in self.services if not s.adopted], [s for s in self.services if s.adopted]):
            running = [(s, s.process) for s in reversed(wave) if s.process and s.process.poll() is None]
            for _service, process in running:
                process.send_signal(signal.SIGTERM)
            deadline = time.monotonic() + timeout
            for service, process in running:
                try:
                    process.wait(timeout=max(0.1, deadline - time.monotonic()))
                except subprocess.TimeoutExpired:
                    log.warning("%s did not stop in %.0fs; killing it", service.name, timeout)
                    try:
                        os.killpg(process.pid, signal.SIGKILL)
                    except ProcessLookupError:  # not the leader of a process group: an adopted process
                        process.kill()
                    process.wait()
        for service in self.services:
            if service._log_file:
                service._log_file.close()
