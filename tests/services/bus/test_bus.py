"""The bus against a real broker: every topic round-trips, a group shares partitions, bad input is dead-lettered.

One module, because its tests share one broker, one set of topics and the helpers that produce and read them.
"""

from __future__ import annotations

import base64
import contextlib
import json
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import datetime, timezone

import pytest

from schemas.messages import (
    MESSAGES,
    AdapterEvent,
    Candidate,
    DeadLetter,
    EvalResult,
    EvalScore,
    GenerateRequest,
    JobEvent,
    Message,
    Verdict,
)
from services.bus import Event, EventConsumer, EventProducer, create_topics, encode_message
from services.bus.consumer import _AssignmentListener
from services.settings import Settings

pytestmark = pytest.mark.kafka

T0 = datetime(2025, 1, 2, 3, 4, 5, tzinfo=timezone.utc)


class Collector(EventConsumer):
    """Keeps every event it is handed; ``poison`` problems make the handler fail."""

    def __init__(self, settings: Settings, topics: list[str], *, group_id: str | None = None, **options) -> None:
        super().__init__(
            settings, topics=topics, group_id=group_id or f"test-{uuid.uuid4().hex[:8]}", poll_timeout_ms=100, **options
        )
        self.events: list[Event] = []
        self._lock = threading.Lock()

    def handle(self, events: list[Event]) -> None:
        if any(getattr(event.message, "problem", None) == "poison" for event in events):
            raise ValueError("this problem poisons the handler")
        with self._lock:
            self.events.extend(events)

    def messages(self) -> list[Message]:
        with self._lock:
            return [event.message for event in self.events]

    def assigned_count(self) -> int:
        return len(self.assigned)


@contextlib.contextmanager
def running(*consumers: EventConsumer) -> Iterator[None]:
    threads = [threading.Thread(target=consumer.run, daemon=True) for consumer in consumers]
    for thread in threads:
        thread.start()
    try:
        yield
    finally:
        for consumer in consumers:
            consumer.stop()
        for thread in threads:
            thread.join(timeout=30)
        assert not any(thread.is_alive() for thread in threads), "a consumer did not stop"


def wait_until(condition: Callable[[], bool], *, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.05)


def candidate(i: int, problem: str | None = None) -> Candidate:
    return Candidate(
        sample_id=f"s{i:05d}", family="arithmetic", difficulty=2, problem=problem or f"{i}+1=", answers=[str(i + 1)],
        created_at=T0,
    )  # fmt: skip


def one_of_each() -> list[Message]:
    messages = [
        GenerateRequest(request_id="r1", family="arithmetic", difficulty=3, count=8, created_at=T0),
        candidate(1),
        Verdict(sample_id="s00001", family="arithmetic", accepted=True, label="2", created_at=T0),
        AdapterEvent(adapter_id="a1", base_model="builtin", path="/a1", status="trained", created_at=T0),
        EvalResult(adapter_id="a1", suite="heldout", scores=[EvalScore(family="arithmetic", difficulty=3, accuracy=1.0, n=5)],
                   created_at=T0),  # fmt: skip
        JobEvent(job_id="j1", kind="train_adapter", state="progress", progress=0.5, created_at=T0),
        DeadLetter(source_topic="loop.candidates", partition=0, offset=3, consumer_group="g", raw_b64="", raw_size=0,
                   error="not JSON", created_at=T0),  # fmt: skip
    ]
    assert {type(m).topic for m in messages} == set(MESSAGES)
    return messages


def test_every_topic_round_trips_a_message(settings):
    create_topics(settings)
    sent = one_of_each()
    with EventProducer(settings) as producer:
        where = {m.topic: producer.publish(m).get(timeout=30) for m in sent}
    collector = Collector(settings, list(MESSAGES))
    with running(collector):
        wait_until(lambda: len(collector.events) >= len(sent), timeout=60, what="one message from every topic")
    received = {event.topic: event for event in collector.events}
    assert len(collector.events) == len(sent)
    for message in sent:
        event = received[message.topic]
        assert event.message == message and type(event.message) is type(message)
        assert event.key == message.key().encode()
        assert (event.partition, event.offset) == (where[message.topic].partition, where[message.topic].offset)
    assert collector.dead_lettered == 0


def test_two_consumers_of_one_group_share_the_partitions_and_see_each_message_once(settings):
    create_topics(settings)
    group = f"test-group-{uuid.uuid4().hex[:8]}"
    first, second = (Collector(settings, ["loop.candidates"], group_id=group) for _ in range(2))
    total = 400
    with running(first, second):
        wait_until(lambda: first.assigned_count() and second.assigned_count() and first.assigned_count() + second.assigned_count() == 8,
                   timeout=150, what="both consumers to own partitions")  # fmt: skip
        with EventProducer(settings) as producer:
            for i in range(total):
                producer.publish(candidate(i))
        wait_until(lambda: len(first.events) + len(second.events) >= total, timeout=150, what="every message")
    seen = Counter(m.sample_id for m in first.messages() + second.messages())
    assert len(seen) == total and max(seen.values()) == 1
    partitions = [{event.partition for event in consumer.events} for consumer in (first, second)]
    assert partitions[0] and partitions[1] and not partitions[0] & partitions[1]


def test_unreadable_messages_go_to_the_dlq_with_a_reason_and_consuming_goes_on(settings):
    settings = settings.model_copy(update={"max_message_bytes": 2048, "dlq_raw_bytes": 64})
    create_topics(settings)
    good = json.loads(encode_message(candidate(0)))
    bad = {
        "not JSON": b"\x00\x9f\xfe random bytes \xff" * 10,
        "does not match Candidate": json.dumps({"schema_version": 1, "sample_id": 5, "answers": "no"}).encode(),
        "unknown schema_version 3": json.dumps({**good, "schema_version": 3}).encode(),
        "exceeds the cap of 2048 bytes": json.dumps({**good, "problem": "x" * 3000}).encode(),
    }
    with EventProducer(settings) as producer:
        # One key, so one partition: the good messages come before and after the bad ones, in that order.
        key = b"one-partition"
        first = producer.publish_raw("loop.candidates", encode_message(candidate(1)), key=key).get(timeout=30)
        where = {reason: producer.publish_raw("loop.candidates", raw, key=key).get(timeout=30) for reason, raw in bad.items()}
        last = producer.publish_raw("loop.candidates", encode_message(candidate(2)), key=key).get(timeout=30)

    consumer = Collector(settings, ["loop.candidates"])
    letters = Collector(settings, ["loop.dlq"])
    with running(consumer, letters):
        wait_until(lambda: len(consumer.events) == 2 and len(letters.events) == len(bad), timeout=60,
                   what="the good messages handled and the bad ones dead-lettered")  # fmt: skip
    assert [m.sample_id for m in consumer.messages()] == ["s00001", "s00002"]
    assert [e.offset for e in consumer.events] == [first.offset, last.offset]
    assert consumer.dead_lettered == len(bad) and letters.dead_lettered == 0

    by_offset = {letter.offset: letter for letter in letters.messages()}
    for reason, raw in bad.items():
        letter = by_offset[where[reason].offset]
        assert isinstance(letter, DeadLetter)
        assert reason in letter.error, (reason, letter.error)
        assert (letter.source_topic, letter.partition) == ("loop.candidates", where[reason].partition)
        assert letter.source_key == key.decode() and letter.consumer_group == consumer.group_id
        assert letter.raw_size == len(raw) and base64.b64decode(letter.raw_b64) == raw[:64]


def test_a_message_that_fails_the_handler_is_dead_lettered_alone(settings):
    create_topics(settings)
    sent = [candidate(i) for i in range(10)]
    sent[6] = candidate(6, problem="poison")
    with EventProducer(settings) as producer:
        for message in sent:
            producer.publish_raw("loop.candidates", encode_message(message), key=b"k")
    consumer = Collector(settings, ["loop.candidates"])
    letters = Collector(settings, ["loop.dlq"])
    with running(consumer, letters):
        wait_until(lambda: len(consumer.events) == 9 and len(letters.events) == 1, timeout=60,
                   what="nine handled and the poisonous one dead-lettered")  # fmt: skip
    [letter] = letters.messages()
    assert "handler failed: ValueError: this problem poisons the handler" in letter.error
    assert letter.offset == next(e.offset for e in consumer.events if e.message.sample_id == "s00005") + 1
    assert [m.sample_id for m in consumer.messages()] == [m.sample_id for m in sent if m.problem != "poison"]


def test_lag_counts_what_a_group_has_not_committed_and_knows_a_group_that_never_consumed(settings):
    from services.bus.lag import LagMonitor

    create_topics(settings)
    with EventProducer(settings) as producer:
        for i in range(5):
            producer.publish(candidate(i))
    monitor = LagMonitor(settings)
    try:
        group = f"test-{uuid.uuid4().hex[:8]}"
        assert not monitor.consumed(group)
        assert monitor.lag(group, "loop.candidates") == 5  # from the beginning: everything is still to do
        collector = Collector(settings, ["loop.candidates"], group_id=group)
        with running(collector):
            wait_until(lambda: monitor.consumed(group) and monitor.lag(group, "loop.candidates") == 0, timeout=60,
                       what="the group's commits")
        assert len(collector.messages()) == 5
    finally:
        monitor.close()


def test_a_service_whose_poll_never_returns_exits_for_its_supervisor_to_restart(settings):
    import subprocess
    import sys

    from services.bus.consumer import STUCK_POLL_EXIT_CODE

    create_topics(settings)
    script = (
        "import sys, time\n"
        "from services.bus import EventConsumer\n"
        "from services.settings import Settings\n"
        "class Worker(EventConsumer):\n"
        "    def handle(self, events): pass\n"
        "worker = Worker(Settings.model_validate_json(sys.argv[1]), topics=['loop.candidates'], group_id='stuck')\n"
        "worker.stuck_poll_exit_s = 2.0\n"
        "worker._consumer.poll = lambda **_: time.sleep(3600)  # a client stuck inside poll, as kafka-python 3.0's\n"
        "worker.run()\n"
    )
    started = time.monotonic()
    done = subprocess.run([sys.executable, "-c", script, settings.model_dump_json()], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == STUCK_POLL_EXIT_CODE, done.stderr[-2000:]
    assert "a poll has not returned" in done.stderr and time.monotonic() - started < 60


def test_a_client_that_stops_fetching_is_replaced_and_nothing_is_lost_or_doubled(settings):
    create_topics(settings)
    collector = Collector(settings, ["loop.candidates"])
    collector.stall_after_s = 2.0
    with running(collector):
        wait_until(lambda: collector.assigned_count() == 8, timeout=150, what="the partitions")
        with EventProducer(settings) as producer:
            for i in range(20):
                producer.publish(candidate(i))
        wait_until(lambda: len(collector.events) == 20, timeout=60, what="the first messages")
        # The client goes on answering polls but hands over nothing, as a kafka-python 3.0 client whose fetches
        # stopped: the records wait on the broker past the positions of its partitions.
        collector._consumer.poll = lambda **_: (time.sleep(0.1), {})[1]
        with EventProducer(settings) as producer:
            for i in range(20, 60):
                producer.publish(candidate(i))
        wait_until(lambda: len(collector.events) >= 60, timeout=120, what="the messages sent while the client stalled")
    seen = Counter(m.sample_id for m in collector.messages())
    assert len(seen) == 60 and max(seen.values()) == 1
    assert collector.fresh_clients == 1


def test_a_consumer_that_starts_at_the_end_and_stalls_before_its_first_record_misses_nothing(settings):
    # The controller's kind: a new group starts at the end of the log. Replaced before it ever committed, the fresh
    # client must still read what was written while the stalled one received nothing.
    create_topics(settings)
    collector = Collector(settings, ["loop.candidates"], from_beginning=False)
    collector.stall_after_s = 2.0
    with running(collector):
        wait_until(lambda: collector.assigned_count() == 8, timeout=150, what="the partitions")
        time.sleep(1.0)  # the positions settle at the end of the (empty) log
        collector._consumer.poll = lambda **_: (time.sleep(0.1), {})[1]
        with EventProducer(settings) as producer:
            for i in range(30):
                producer.publish(candidate(i))
        wait_until(lambda: len(collector.events) >= 30, timeout=120, what="the messages sent while the client stalled")
    assert {m.sample_id for m in collector.messages()} == {candidate(i).sample_id for i in range(30)}
    assert collector.fresh_clients == 1


def test_a_client_whose_positions_passed_records_it_never_handed_over_is_replaced(settings):
    # The client's own positions say "at the end", yet the group's commits say the records past them were never
    # handled: the commits decide, and a fresh client resumes from them.
    create_topics(settings)
    collector = Collector(settings, ["loop.candidates"])
    collector.stall_after_s = 2.0
    with running(collector):
        wait_until(lambda: collector.assigned_count() == 8, timeout=150, what="the partitions")
        with EventProducer(settings) as producer:
            for i in range(20):
                producer.publish(candidate(i))
        wait_until(lambda: len(collector.events) == 20, timeout=60, what="the first messages")
        client, real_poll, state = collector._consumer, collector._consumer.poll, {"hold": True, "skipped": False}

        def skipping_poll(**options):
            if state["hold"]:
                time.sleep(0.1)
                return {}
            if not state["skipped"]:
                client.seek_to_end()  # in the polling thread, as the client's own state would move
                state["skipped"] = True
            return real_poll(**options)

        client.poll = skipping_poll
        with EventProducer(settings) as producer:
            for i in range(20, 60):
                producer.publish(candidate(i))
        state["hold"] = False
        wait_until(lambda: len(collector.events) >= 60, timeout=120, what="the messages the client skipped")
    seen = Counter(m.sample_id for m in collector.messages())
    assert len(seen) == 60 and max(seen.values()) == 1
    assert collector.fresh_clients == 1


def test_a_client_revoked_for_a_rebalance_that_never_completes_is_replaced(settings):
    # Its partitions revoked for a rebalance, the client never joins again: it has nothing assigned, polls return
    # nothing, and the group's commits stay behind what is written. A fresh client joins and handles it all.
    create_topics(settings)
    collector = Collector(settings, ["loop.candidates"])
    collector.stall_after_s = 2.0
    with running(collector):
        wait_until(lambda: collector.assigned_count() == 8, timeout=150, what="the partitions")
        with EventProducer(settings) as producer:
            for i in range(20):
                producer.publish(candidate(i))
        wait_until(lambda: len(collector.events) == 20, timeout=60, what="the first messages")

        def revoked_poll(**_):
            if collector.assigned:
                _AssignmentListener(collector).on_partitions_revoked(collector.assigned)
            time.sleep(0.1)
            return {}

        collector._consumer.poll = revoked_poll
        with EventProducer(settings) as producer:
            for i in range(20, 50):
                producer.publish(candidate(i))
        wait_until(lambda: len(collector.events) >= 50, timeout=120, what="the messages written while no one held them")
    seen = Counter(m.sample_id for m in collector.messages())
    assert len(seen) == 50 and max(seen.values()) == 1
    assert collector.fresh_clients == 1
