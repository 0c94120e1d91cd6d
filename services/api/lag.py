"""Kafka consumer lag per group, for the metrics endpoint: one shared monitor, cached briefly, never an error page.

The dashboard polls every few seconds from every open tab; a two-second cache keeps that to one round of Kafka
requests. When Kafka cannot be reached the report says so (``available: false``) instead of failing the request.
"""

from __future__ import annotations

import logging
import socket
import threading
import time
from typing import TYPE_CHECKING

from services.api.models import GroupLag, LagReport
from services.settings import Settings
from schemas.messages import CONSUMER_GROUPS

if TYPE_CHECKING:
    from services.bus.lag import LagMonitor

log = logging.getLogger(__name__)


RETRIES = 5
CONNECT_TIMEOUT_S = 2.0


def _check_reachable(bootstrap: str) -> None:
    """Fail in seconds when no bootstrap server accepts a connection (the Kafka client would wait 30 s)."""
    errors = []
    for server in bootstrap.split(","):
        host, _sep, port = server.strip().rpartition(":")
        try:
            socket.create_connection((host.strip("[]"), int(port)), timeout=CONNECT_TIMEOUT_S).close()
            return
        except OSError as exc:
            errors.append(f"{server.strip()}: {exc}")
    raise ConnectionError("no Kafka bootstrap server answers (" + "; ".join(errors) + ")")


class LagReporter:
    def __init__(self, settings: Settings, *, cache_s: float = 2.0) -> None:
        self.settings = settings
        self.cache_s = cache_s
        self._monitor: LagMonitor | None = None
        self._lock = threading.Lock()
        self._cached: tuple[float, LagReport] | None = None

    def report(self) -> LagReport:
        with self._lock:
            now = time.monotonic()
            if self._cached is not None and now - self._cached[0] < self.cache_s:
                return self._cached[1]
            report = self._measure()
            self._cached = (time.monotonic(), report)
            return report

    def _measure(self) -> LagReport:
        from services.bus.lag import LagMonitor  # kafka-python is imported only when lag is asked for

        try:
            if self._monitor is None:
                _check_reachable(self.settings.kafka_bootstrap)
                self._monitor = LagMonitor(self.settings)
            groups = [
                GroupLag(group=group, topic=topic, lag=self._lag(group, topic))
                for group, topics in CONSUMER_GROUPS.items()
                for topic in topics
            ]
            return LagReport(available=True, groups=groups)
        except Exception as exc:  # noqa: BLE001 - any Kafka failure is reported, and the next call reconnects
            log.warning("could not read consumer lag: %s", exc)
            self._close_monitor()
            groups = [
                GroupLag(group=group, topic=topic, lag=None) for group, topics in CONSUMER_GROUPS.items() for topic in topics
            ]
            return LagReport(available=False, error=f"{type(exc).__name__}: {exc}"[:500], groups=groups)

    def _lag(self, group: str, topic: str) -> int:
        # A broker whose offsets topic is still being created (a fresh cluster, before any group has committed)
        # answers "coordinator not available" for a moment: retriable, so retry briefly before reporting it.
        assert self._monitor is not None  # _measure connects first
        for attempt in range(RETRIES):
            try:
                return self._monitor.lag(group, topic)
            except Exception as exc:
                if not getattr(exc, "retriable", False) or attempt == RETRIES - 1:
                    raise
                time.sleep(0.2 * (attempt + 1))
        raise AssertionError("unreachable")

    def _close_monitor(self) -> None:
        if self._monitor is not None:
            try:
                self._monitor.close()
            except Exception:  # noqa: BLE001 - it is being replaced anyway
                pass
            self._monitor = None

    def close(self) -> None:
        with self._lock:
            self._close_monitor()
