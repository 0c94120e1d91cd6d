"""The store writer: the only process that writes the SQL view, from the event topics.

Each polled batch becomes one database transaction of upserts; the base consumer commits the batch's offsets only
after that transaction has committed. A crash between the two re-delivers the batch, and the upserts make the
second application a no-op, so every sample is stored exactly once.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

from sqlalchemy import Engine

from schemas.messages import CONSUMER_GROUPS, Message
from services.bus.consumer import Event, EventConsumer
from services.settings import Settings
from services.store.db import open_store
from services.store.upsert import upsert_events

log = logging.getLogger(__name__)

#: What the store writer consumes: every event topic that has a table (loop.generate is a work queue, not state).
DEFAULT_GROUP_ID = "store-writer"
STORE_TOPICS = CONSUMER_GROUPS[DEFAULT_GROUP_ID]
#: A writer that died holds its partitions until the broker gives up on it: a restarted writer of the same group
#: resumes only then. Kafka's 45 s default is long for a single writer; 10 s still rides out a GC pause.
DEFAULT_SESSION_TIMEOUT_MS = 10_000


class StoreWriter(EventConsumer[Message]):
    """Consume the event topics into the SQL store, one transaction per batch.

    ``on_stored(events, stored_at)`` (optional) is called after each batch's database commit with the wall-clock
    time (``time.time()``) of that commit; the benchmark measures produce-to-stored latency with it.
    """

    def __init__(
        self,
        settings: Settings,
        *,
        engine: Engine | None = None,
        group_id: str = DEFAULT_GROUP_ID,
        batch_size: int = 2000,
        poll_timeout_ms: int = 200,
        progress_every_s: float | None = 30.0,
        on_stored: Callable[[list[Event], float], None] | None = None,
        client_id: str | None = None,
        session_timeout_ms: int = DEFAULT_SESSION_TIMEOUT_MS,
        consumer_options: dict[str, Any] | None = None,
    ) -> None:
        self._owns_engine = engine is None
        self.engine = engine if engine is not None else open_store(settings)
        super().__init__(
            settings,
            topics=STORE_TOPICS,
            group_id=group_id,
            batch_size=batch_size,
            poll_timeout_ms=poll_timeout_ms,
            from_beginning=True,  # a new group (a fresh store, a replay) must see the whole log
            client_id=client_id,
            consumer_options={
                "session_timeout_ms": session_timeout_ms,
                "heartbeat_interval_ms": max(1000, session_timeout_ms // 3),
                **(consumer_options or {}),
            },
        )
        self.on_stored = on_stored
        self.progress_every_s = progress_every_s
        self.rows_written: dict[str, int] = {}
        self._progress_at = time.monotonic()
        self._progress_handled = 0
        self._closed = False

    def handle(self, events: list[Event]) -> None:
        with self.engine.begin() as connection:
            written = upsert_events(connection, events)
        stored_at = time.time()
        for table, count in written.items():
            self.rows_written[table] = self.rows_written.get(table, 0) + count
        if self.on_stored is not None:
            self.on_stored(events, stored_at)
        self._log_progress()

    def on_idle(self) -> None:
        self._log_progress()

    def _log_progress(self, *, force: bool = False) -> None:
        if self.progress_every_s is None:
            return
        now = time.monotonic()
        elapsed = now - self._progress_at
        if not force and elapsed < self.progress_every_s:
            return
        handled = self.handled
        rate = (handled - self._progress_handled) / elapsed if elapsed > 0 else 0.0
        log.info(
            "%s: %d events stored (%.0f/s over the last %.0fs), %d dead-lettered; rows upserted: %s",
            self.group_id, handled, rate, elapsed, self.dead_lettered,
            ", ".join(f"{table} {count}" for table, count in sorted(self.rows_written.items())) or "none",
        )  # fmt: skip
        self._progress_at, self._progress_handled = now, handled

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        try:
            super().close()
        finally:
            self._log_progress(force=True)
            if self._owns_engine:
                self.engine.dispose()
