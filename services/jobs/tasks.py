"""The jobs the services offer on their own (training and evaluation jobs live with their workers).

``replay_store``: rebuild the SQL view from the event topics, as a job with progress and cancel::

    python -m services.jobs submit replay_store --kwargs '{"target_url": "sqlite:////data/store-rebuilt.sqlite"}'

It reads every topic the store writer reads, from the beginning, under a fresh consumer group, into
``target_url`` (default: the configured store), and ends when it has caught up with the offsets the topics
had when it started. The target must be empty unless ``allow_nonempty`` (the upserts are idempotent, so a
replay into a live store converges to the same rows, but rows move back and forth while it runs).

Adding a job elsewhere: put ``@job_task(queue="train")`` functions in ``workers/<role>/jobs.py``; every worker
imports those modules on its own (see ``services.jobs.app.discover_job_modules``).
"""

from __future__ import annotations

import logging
import time
import uuid

from kafka import KafkaConsumer, TopicPartition

from services.bus.consumer import Event
from services.jobs.lifecycle import JobCancelled, JobContext, job_task
from services.settings import Settings
from services.store.db import is_empty, open_store
from services.store.writer import DEFAULT_GROUP_ID, STORE_TOPICS, StoreWriter

log = logging.getLogger(__name__)


def topic_extent(settings: Settings, topics: tuple[str, ...]) -> dict[tuple[str, int], tuple[int, int]]:
    """(logical topic, partition) -> (first offset, end offset) right now."""
    consumer = KafkaConsumer(bootstrap_servers=settings.kafka_bootstrap, enable_auto_commit=False)
    try:
        partitions = {
            TopicPartition(settings.topic(topic), p): topic
            for topic in topics
            for p in sorted(consumer.partitions_for_topic(settings.topic(topic)) or ())
        }
        begin = consumer.beginning_offsets(list(partitions))
        end = consumer.end_offsets(list(partitions))
        return {(topic, tp.partition): (begin[tp], end[tp]) for tp, topic in partitions.items()}
    finally:
        consumer.close()


class _ReplayWriter(StoreWriter):
    """The store writer, reporting its progress towards a fixed set of end offsets and stopping there or on cancel."""

    def __init__(self, ctx: JobContext, extent: dict[tuple[str, int], tuple[int, int]], **kwargs) -> None:
        super().__init__(ctx.settings, on_stored=self._stored, progress_every_s=None, **kwargs)
        self.ctx = ctx
        self.extent = extent
        self.total = sum(end - begin for begin, end in extent.values())
        self.position = {key: begin for key, (begin, _end) in extent.items()}
        self.cancelled = False

    def caught_up(self) -> bool:
        return all(self.position[key] >= end for key, (_begin, end) in self.extent.items())

    def _stored(self, events: list[Event], _stored_at: float) -> None:
        for event in events:
            key = (event.topic, event.partition)
            if key in self.position:
                self.position[key] = max(self.position[key], event.offset + 1)
        self._report()

    def on_idle(self) -> None:
        # Dead letters and compacted gaps never reach _stored: the partitions' consumer positions say where we are.
        for (topic, partition), (_begin, end) in self.extent.items():
            tp = TopicPartition(self.settings.topic(topic), partition)
            try:
                self.position[(topic, partition)] = max(self.position[(topic, partition)], self._consumer.position(tp))
            except Exception:  # noqa: BLE001 - not assigned yet: nothing to learn
                continue
        self._report()

    def _report(self) -> None:
        done = sum(min(self.position[key], end) - begin for key, (begin, end) in self.extent.items())
        try:
            self.ctx.progress(done / self.total if self.total else 1.0, f"{done} of {self.total} events replayed")
        except JobCancelled:
            # Raising inside the consumer would dead-letter the batch; stop after it is committed instead.
            self.cancelled = True
            self.stop()
            return
        if self.caught_up():
            self.stop()


@job_task(queue="default", soft_time_limit=6 * 3600)
def replay_store(
    ctx: JobContext, *, target_url: str | None = None, allow_nonempty: bool = False, max_idle_s: float = 60.0
) -> dict:
    """Rebuild the SQL view at ``target_url`` (default: the configured store) from the event topics."""
    url = target_url or ctx.settings.store_url
    engine = open_store(url=url)
    try:
        if not allow_nonempty and not is_empty(engine):
            raise ValueError("the target store already has rows; replay into an empty database or pass allow_nonempty")
        extent = topic_extent(ctx.settings, STORE_TOPICS)
        group_id = f"{DEFAULT_GROUP_ID}-replay-{time.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:6]}"
        writer = _ReplayWriter(ctx, extent, engine=engine, group_id=group_id)
        log.info("replaying %d events into %s (group %s)", writer.total, engine.url.render_as_string(), group_id)
        if not writer.caught_up():
            # max_idle_s ends a replay whose remaining offsets never arrive (records deleted by retention meanwhile).
            writer.run(idle_timeout_s=max_idle_s)
        else:
            writer.close()
        if writer.cancelled:
            raise JobCancelled(f"cancelled after {sum(writer.rows_written.values())} rows")
        return {
            "target_url": engine.url.render_as_string(hide_password=True),
            "group_id": group_id,
            "events": writer.handled,
            "dead_lettered": writer.dead_lettered,
            "rows_written": writer.rows_written,
            "caught_up": writer.caught_up(),
        }
    finally:
        engine.dispose()
