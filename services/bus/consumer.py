"""The consumer base every worker uses.

A worker subclasses ``EventConsumer`` and implements ``handle(events)``. The base polls a batch,
decodes it, sends what it cannot decode to ``loop.dlq`` with the reason, hands the rest to the
handler, and commits the offsets only after the handler has returned, that is, after its effect
is durable. A crash anywhere before the commit means the batch is delivered again, so handlers
must be idempotent (upserts keyed by id); a crash after it loses nothing.

One module, because the poll, the dead letters, the commit and the stall check that replaces a stuck client are
one delivery guarantee: each assumes what the others did to the client's positions and commits.
"""

from __future__ import annotations

import base64
import logging
import os
import signal
import threading
import time
from dataclasses import dataclass
from typing import Any, Generic, Iterable, TypeVar

from kafka import ConsumerRebalanceListener, KafkaConsumer, OffsetAndMetadata, TopicPartition
from kafka.errors import CommitFailedError, KafkaError
from sqlalchemy.exc import OperationalError

from schemas.messages import DeadLetter, Message
from services.bus.codec import UndecodableMessage, decode_message
from services.bus.producer import EventProducer
from services.settings import Settings

log = logging.getLogger(__name__)
STUCK_POLL_EXIT_CODE = 70  # EX_SOFTWARE: a client stuck inside poll (EventConsumer.stuck_poll_exit_s)


class Interrupted(Exception):
    """Raised by a handler that stops mid-batch on request: the batch stays uncommitted and is redelivered."""


M = TypeVar("M", bound=Message)


@dataclass(frozen=True)
class Event(Generic[M]):
    """A decoded message with where it came from."""

    message: M
    topic: str  # the logical name, without the settings' prefix
    partition: int
    offset: int
    key: bytes | None
    timestamp_ms: int


class _AssignmentListener(ConsumerRebalanceListener):
    def __init__(self, owner: "EventConsumer") -> None:
        self.owner = owner

    def on_partitions_revoked(self, revoked) -> None:
        self.owner.assigned = frozenset()
        self.owner._unsuspect()

    def on_partitions_assigned(self, assigned) -> None:
        self.owner.assigned = frozenset((tp.topic, tp.partition) for tp in assigned)
        self.owner._unsuspect()  # new partitions may hold a previous owner's backlog: a stall period from now
        log.info("%s: assigned %d partitions", self.owner.group_id, len(assigned))


class EventConsumer(Generic[M]):
    """Consume ``topics`` in the consumer group ``group_id``; subclasses implement ``handle``, typed by the messages
    they read (``EventConsumer[Candidate]``: every ``event.message`` is a Candidate)."""

    #: Exceptions that mean "the effect could not be made durable now": the batch is retried, never dead-lettered.
    retryable: tuple[type[BaseException], ...] = (OperationalError, KafkaError, ConnectionError, TimeoutError)

    def __init__(
        self,
        settings: Settings,
        *,
        topics: Iterable[str],
        group_id: str,
        batch_size: int = 500,
        poll_timeout_ms: int = 500,
        from_beginning: bool = True,
        client_id: str | None = None,
        consumer_options: dict[str, Any] | None = None,
    ) -> None:
        """``consumer_options`` go to ``KafkaConsumer`` as they are (``session_timeout_ms``, ``group_instance_id``...)."""
        self.settings = settings
        self.topics = list(topics)
        self.group_id = group_id
        self.batch_size = batch_size
        self.poll_timeout_ms = poll_timeout_ms
        self._prefix = settings.topic_prefix
        self._stop = threading.Event()
        config: dict[str, Any] = dict(
            bootstrap_servers=settings.kafka_bootstrap,
            group_id=settings.group(group_id),
            client_id=client_id or group_id,
            enable_auto_commit=False,
            auto_offset_reset="earliest" if from_beginning else "latest",
            max_poll_records=batch_size,
            fetch_max_bytes=16 * 1024 * 1024,
            max_partition_fetch_bytes=4 * 1024 * 1024,
            # A worker killed without leaving its group holds its partitions until the session times
            # out; 30 s (not the 45 s default) bounds that stall yet tolerates a busy machine.
            session_timeout_ms=30_000,
            heartbeat_interval_ms=3_000,
        )
        config.update(consumer_options or {})
        config.setdefault("metadata_max_age_ms", 30_000)  # topics created later are seen within 30 s
        # The assignment is tracked by the rebalance callbacks, which run in the polling thread: other
        # threads read ``assigned`` without touching the client (whose calls block while it polls).
        self.assigned: frozenset[tuple[str, int]] = frozenset()
        self._config = config
        self._consumer = self._subscribed_client()
        self._poll_began: float | None = None  # while a poll runs: when it began (read by the watchdog)
        self._last_records = time.monotonic()  # when a poll last returned records (or the client was made)
        # What the stall check's first look found behind (partition -> its position and commit), and when it ended.
        self._suspect: dict[TopicPartition, tuple[int | None, int | None]] | None = None
        self._suspect_at = 0.0
        self._started_ms = int(time.time() * 1000)  # where a replacement client resumes a partition never committed
        self.fresh_clients = 0
        self._dlq = EventProducer(settings, client_id=f"{group_id}-dlq")
        self.dead_lettered = 0
        self.handled = 0

    def _subscribed_client(self) -> KafkaConsumer:
        self._consumer = KafkaConsumer(**self._config)
        self._await_topic_metadata()
        self._consumer.subscribe([self.settings.topic(t) for t in self.topics], listener=_AssignmentListener(self))
        return self._consumer

    def _await_topic_metadata(self, timeout_s: float = 30.0) -> None:
        """Know every topic's partitions before joining the group.

        A member that joins before its client has the topics' metadata is assigned nothing, and only
        the next metadata refresh makes it rejoin: asking first spares that wait.
        """
        deadline = time.monotonic() + timeout_s
        missing = list(self.topics)
        while missing and time.monotonic() < deadline:
            missing = [t for t in missing if not self._consumer.partitions_for_topic(self.settings.topic(t))]
            if missing:
                time.sleep(0.2)
        if missing:
            log.warning("%s: no metadata yet for %s; joining anyway", self.group_id, ", ".join(missing))

    # -- to implement -------------------------------------------------------------------------------
    def handle(self, events: list[Event[M]]) -> None:
        """Make the effect of ``events`` durable. Raise a ``retryable`` error to have the batch retried."""
        raise NotImplementedError

    def on_idle(self) -> None:
        """Called when a poll returned nothing; workers use it for periodic duties."""

    # -- running ------------------------------------------------------------------------------------
    def stop(self) -> None:
        """Finish the batch in hand, commit it, and leave ``run``."""
        self._stop.set()

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    def install_signal_handlers(self) -> None:
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: self.stop())

    def run(self, *, max_events: int | None = None, idle_timeout_s: float | None = None) -> None:
        """Consume until stopped (or until ``max_events`` handled, or idle for ``idle_timeout_s``)."""
        last_activity = time.monotonic()
        if threading.current_thread() is threading.main_thread() and self.stuck_poll_exit_s is not None:
            threading.Thread(target=self._watch_polls, name=f"{self.group_id}-poll-watchdog", daemon=True).start()
        try:
            while not self._stop.is_set():
                self._poll_began = time.monotonic()
                records = self._consumer.poll(timeout_ms=self.poll_timeout_ms, max_records=self.batch_size)
                self._poll_began = None
                batch = [record for partition_records in records.values() for record in partition_records]
                if not batch:
                    self._check_stall()
                    self.on_idle()
                    if idle_timeout_s is not None and time.monotonic() - last_activity > idle_timeout_s:
                        return
                    continue
                last_activity = self._last_records = time.monotonic()
                self._unsuspect()
                try:
                    self._process(batch)
                except Interrupted:
                    return  # nothing committed: the batch is delivered again, to us or to another member
                self._commit()
                self._last_records = time.monotonic()  # a long batch is no time without records
                if max_events is not None and self.handled + self.dead_lettered >= max_events:
                    return
        finally:
            self.close()

    #: A poll that has not returned after this many seconds is stuck: the process exits (code 70) so that its
    #: supervisor starts it again, and the batch it had not committed is delivered again. (kafka-python 3.0 can lose
    #: the connection a fetch needs and wait for it inside ``poll`` forever, receiving nothing while the partitions
    #: fill.) Only a consumer running in its process's main thread, a service, is watched; None: never.
    stuck_poll_exit_s: float | None = 120.0

    def _watch_polls(self) -> None:
        while not self._stop.wait(1.0):
            began = self._poll_began
            if began is not None and self.stuck_poll_exit_s is not None \
                    and time.monotonic() - began > self.stuck_poll_exit_s:
                log.error("%s: a poll has not returned in %.0f s; exiting so that the supervisor starts a fresh "
                          "client (nothing uncommitted is lost: the batch is delivered again)",
                          self.group_id, time.monotonic() - began)
                logging.shutdown()
                os._exit(STUCK_POLL_EXIT_CODE)

    #: Polls that return nothing for this many seconds while the broker holds records past the positions of the
    #: partitions assigned here, or past what the group committed there, mean a client that stopped fetching
    #: (kafka-python 3.0 can leave a partition waiting on an offset reset or a fetch that never completes, and a
    #: client's position can pass records it never handed over). A first look notes which partitions are behind and
    #: where; if ten seconds of polls later the same ones are still behind at the same positions and commits, the
    #: client is closed without committing and a fresh one joins the group and resumes from the committed offsets (a
    #: partition this group never committed resumes at the records written since this consumer started, not at the
    #: end). None: never checked.
    stall_after_s: float | None = 60.0
    _SECOND_LOOK_S = 10.0

    def _unsuspect(self) -> None:
        self._suspect = None
        self._last_records = time.monotonic()

    def _check_stall(self) -> None:
        now = time.monotonic()
        if self.stall_after_s is None or now - self._last_records < self.stall_after_s:
            return
        # With nothing assigned, other members may hold the partitions through a long batch: a whole stall period
        # without a commit before the client is replaced, so that a spare member does not disturb a busy group.
        second_look = min(self._SECOND_LOOK_S, self.stall_after_s) if self.assigned else self.stall_after_s
        if self._suspect is not None and now - self._suspect_at < second_look:
            return  # suspected: a few more polls to receive what is there before the second look
        behind = self._partitions_behind()
        if self._suspect is None:
            if behind:
                self._suspect, self._suspect_at = behind, time.monotonic()
                log.info("%s: no records for %.0f s while %d partitions are behind; looking again shortly",
                         self.group_id, now - self._last_records, len(behind))
            else:
                self._last_records = time.monotonic()  # caught up: the next look is a stall period from now
            return
        stuck = {tp for tp, where in behind.items() if tp in self._suspect and self._suspect[tp] == where}
        if not stuck:
            self._unsuspect()  # something moved, or nothing is behind any more
            return
        log.error("%s: no records for %.0f s while %d partitions stay behind at the same positions and commits; "
                  "closing the client and joining with a fresh one (nothing uncommitted is lost)",
                  self.group_id, now - self._last_records, len(stuck))
        self._fresh_client()

    def _partitions_behind(self) -> dict[TopicPartition, tuple[int | None, int | None]]:
        """The partitions whose end offset is past this client's position or past what this group committed there,
        with that position and commit (None where the client cannot settle one). The commit is read too because a
        client's position can be past records it never handed over; a group's commit moves only once a batch is
        handled. With nothing assigned (a client revoked for a rebalance that never completed, which kafka-python 3.0
        can leave waiting for good), every partition of its topics, by the group's commits alone: if those stay
        behind, no member is handling them. Bounded: one look takes at most about 30 s."""
        if self.assigned:
            partitions = [TopicPartition(topic, partition) for topic, partition in sorted(self.assigned)]
        else:
            partitions = [TopicPartition(self.settings.topic(topic), partition) for topic in self.topics
                          for partition in sorted(self._consumer.partitions_for_topic(self.settings.topic(topic)) or ())]
        try:
            ends = self._consumer.end_offsets(partitions, timeout_ms=10_000)
        except KafkaError as exc:  # the broker is away: that is no stall of this client
            log.warning("%s: could not read the end offsets (%s)", self.group_id, exc)
            return {}
        deadline = time.monotonic() + 10.0
        positions: dict[TopicPartition, int | None] = {}
        commits: dict[TopicPartition, int | None] = {}
        for tp in partitions:
            left_ms = max(int((deadline - time.monotonic()) * 1000), 100)
            positions[tp] = None
            if self.assigned:
                try:
                    positions[tp] = self._consumer.position(tp, timeout_ms=left_ms)
                except KafkaError:  # a position the client cannot settle (an offset reset that never completes)
                    pass
            try:
                committed = self._consumer.committed(tp, timeout_ms=left_ms)
                commits[tp] = committed if committed is not None else self._first_offset(tp, ends.get(tp, 0))
            except KafkaError:
                commits[tp] = None
        end = ends.get
        return {tp: (positions[tp], commits[tp]) for tp in partitions
                if (self.assigned and end(tp, 0) > (positions[tp] or 0)) or end(tp, 0) > (commits[tp] or 0)}

    def _first_offset(self, tp: TopicPartition, end: int) -> int:
        """Where this consumer starts a partition its group never committed: the log's start, or for a consumer that
        starts at the end, the first record written since it started (the end where there is none)."""
        if self._config.get("auto_offset_reset") != "latest":
            return self._consumer.beginning_offsets([tp], timeout_ms=5_000).get(tp, 0)
        found = self._consumer.offsets_for_times({tp: self._started_ms}, timeout_ms=5_000).get(tp)
        return found.offset if found else end

    def _commit_where_started(self) -> None:
        """Before a replacement: a consumer that starts at the end of new partitions (``from_beginning=False``) must
        not skip what was written while the stalled client received nothing. Where its group committed nothing yet,
        commit the first offset written since this consumer started, for the fresh client to resume from."""
        if self._config.get("auto_offset_reset") != "latest" or not self.assigned:
            return
        try:
            partitions = [TopicPartition(topic, partition) for topic, partition in sorted(self.assigned)]
            uncommitted = [tp for tp in partitions if self._consumer.committed(tp, timeout_ms=5_000) is None]
            if not uncommitted:
                return
            found = self._consumer.offsets_for_times({tp: self._started_ms for tp in uncommitted}, timeout_ms=10_000)
            ends = self._consumer.end_offsets(uncommitted, timeout_ms=10_000)
            self._consumer.commit({tp: OffsetAndMetadata(found[tp].offset if found.get(tp) else ends[tp], "", -1)
                                   for tp in uncommitted}, timeout_ms=10_000)
        except KafkaError as exc:
            log.warning("%s: could not commit where the uncommitted partitions start (%s); the fresh client starts "
                        "them at the end", self.group_id, exc)

    def _fresh_client(self) -> None:
        self._commit_where_started()
        try:
            self._consumer.close(autocommit=False)
        except Exception:  # noqa: BLE001 - a client that misbehaves may fail to close too; it is dropped anyway
            log.exception("%s: closing the stalled client failed", self.group_id)
        self.assigned = frozenset()
        self.fresh_clients += 1
        try:
            self._subscribed_client()
        except KafkaError:
            if threading.current_thread() is threading.main_thread():
                log.exception("%s: no fresh client; exiting for the supervisor to start one", self.group_id)
                logging.shutdown()
                os._exit(STUCK_POLL_EXIT_CODE)
            raise
        self._unsuspect()

    def close(self) -> None:
        self._stop.set()
        try:
            self._consumer.close(autocommit=False)
        finally:
            self._dlq.close()

    # -- internals ----------------------------------------------------------------------------------
    def _process(self, batch: list) -> None:
        dead_before = self.dead_lettered
        events, dead = [], []
        for record in batch:
            topic = record.topic[len(self._prefix):] if record.topic.startswith(self._prefix) else record.topic
            try:
                message = decode_message(topic, record.value, max_bytes=self.settings.max_message_bytes)
            except UndecodableMessage as exc:
                dead.append((record, topic, str(exc)))
                continue
            events.append(Event(message, topic, record.partition, record.offset, record.key, record.timestamp))
        for record, topic, reason in dead:
            self._send_dead_letter(record, topic, reason)
        if events:
            self._handle_with_retries(events)
        if self.dead_lettered != dead_before:
            # The dead letters must be durable before the offsets that skip them are committed.
            self._dlq.flush()

    def _handle_with_retries(self, events: list[Event]) -> None:
        delay = 0.5
        while True:
            try:
                self.handle(events)
                self.handled += len(events)
                return
            except Interrupted:
                raise
            except self.retryable as exc:
                if self._stop.is_set():
                    raise  # leave uncommitted: the batch is delivered again after restart
                log.warning("%s: effect not durable yet (%s); retrying in %.1fs", self.group_id, exc, delay)
                time.sleep(delay)
                delay = min(delay * 2, 10.0)
            except Exception as exc:  # noqa: BLE001 - one bad message must not stop the worker
                if len(events) == 1:
                    log.exception("%s: handler failed on one message; dead-lettering it", self.group_id)
                    self.dead_letter(events[0], f"handler failed: {type(exc).__name__}: {exc}")
                    return
                # Find the culprit: the rest of the batch still deserves to be handled.
                for event in events:
                    self._handle_with_retries([event])
                return

    def dead_letter(self, event: Event, reason: str) -> None:
        """Send a decoded message that cannot be processed to the dead-letter topic (handlers may call this)."""
        raw = event.message.model_dump_json().encode()
        self._publish_dead_letter(event.topic, event.partition, event.offset, event.key, raw, reason)

    def _send_dead_letter(self, record, topic: str, reason: str) -> None:
        self._publish_dead_letter(topic, record.partition, record.offset, record.key, record.value or b"", reason)

    def _publish_dead_letter(
        self, topic: str, partition: int, offset: int, key: bytes | None, raw: bytes, reason: str
    ) -> None:
        log.warning("%s: dead letter %s[%d]@%d: %s", self.group_id, topic, partition, offset, reason)
        letter = DeadLetter(
            source_topic=topic,
            partition=partition,
            offset=offset,
            source_key=key.decode(errors="replace") if key else None,
            consumer_group=self.group_id,
            raw_b64=base64.b64encode(raw[: self.settings.dlq_raw_bytes]).decode(),
            raw_size=len(raw),
            error=reason[:2000],
        )
        self._dlq.publish(letter)
        self.dead_lettered += 1

    def _commit(self) -> None:
        try:
            self._consumer.commit()
        except CommitFailedError as exc:
            # The group rebalanced while we worked; the new owner gets the batch again, and the
            # effects are idempotent, so nothing is lost or doubled.
            log.warning("%s: commit failed after a rebalance: %s", self.group_id, exc)
