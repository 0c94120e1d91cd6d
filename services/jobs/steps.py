"""A worker step that calls its ``tick(worker)`` on the worker's timer, every ``interval`` seconds."""

from __future__ import annotations

from typing import Any

from celery import bootsteps


class TimedStep(bootsteps.StartStopStep):
    """Subclasses set ``interval`` and define ``tick(worker)``."""

    requires: set[str] = {"celery.worker.components:Timer"}
    interval: float = 10.0

    def __init__(self, worker: Any, **kwargs: Any) -> None:
        super().__init__(worker, **kwargs)
        self.tref: Any = None

    def start(self, worker: Any) -> None:
        self.tref = worker.timer.call_repeatedly(self.interval, self.tick, (worker,), priority=10)

    def stop(self, worker: Any) -> None:
        if self.tref is not None:
            self.tref.cancel()
            self.tref = None

    def tick(self, worker: Any) -> None:
        raise NotImplementedError
