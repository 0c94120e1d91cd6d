"""Bus benchmark: samples per second from a producer through the store writer into SQL, beside raw consumption.

    python bench/bus.py                                     own Kafka broker in a temp dir, SQLite, 50,000 samples
    python bench/bus.py --samples 100000 --batch-size 4000
    python bench/bus.py --database-url postgresql://loop@127.0.0.1:5432/bench
    python bench/bus.py --bootstrap 127.0.0.1:9092          an existing broker (topics get a fresh prefix)

In one run, on one broker and one store:
1. stored: the benchmark produces a flood of Candidates; then the store writer starts in its own process (as the
   service does) and works through them, timed from the first record it receives to the database commit holding
   the last one;
2. raw: a plain kafka-python consumer (same fetch settings, no group, no decoding, no database) reads the same
   messages back, timed the same way, from its first record to its last: both sides read the same backlog.
3. latency: a producer paced well below the stored rate stamps each Candidate with its send time (created_at); the
   writer notes the wall clock after the database commit of the batch holding it; p50/p99 are over those gaps.
The last line is ``bus: <N> samples/s stored, <R>x of raw consume, p99 <L> ms``.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import queue
import shlex
import shutil
import statistics
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from schemas.messages import Candidate, sample_id_for  # noqa: E402
from services.settings import Settings  # noqa: E402


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--samples", type=int, default=50_000, help="Candidates in the flood (default 50000)")
    parser.add_argument("--batch-size", type=int, default=2000, help="store writer batch (default 2000)")
    parser.add_argument("--paced-rate", type=float, default=2000.0, help="paced producer, messages/s (default 2000)")
    parser.add_argument("--paced-seconds", type=float, default=10.0, help="how long to pace (default 10)")
    parser.add_argument("--bootstrap", default=None, help="use this Kafka instead of starting one")
    parser.add_argument("--database-url", default=None, help="store URL (default: SQLite in the temp dir)")
    parser.add_argument("--workdir", type=Path, default=None, help="keep files here instead of a temp dir")
    return parser


def make_candidate(i: int, phase: str) -> Candidate:
    """A Candidate of realistic size: a 5-digit addition, four answers, timings and meta."""
    a, b = 10_000 + (i * 7919) % 90_000, 10_000 + (i * 104_729) % 90_000
    problem = f"{a}+{b}=#{phase}{i}"
    return Candidate(
        sample_id=sample_id_for("arithmetic", problem), family="arithmetic", difficulty=5, problem=problem,
        answers=[str(a + b), str(a + b), str(a + b + 1), str(a + b)], adapter_id="bench-adapter",
        request_id=f"bench-{phase}", round=1, true_answer=str(a + b), meta={"bench": phase},
        timings_ms={"generate": 12.5, "queue": 0.4},
    )  # fmt: skip


# -- the store writer, in its own process ----------------------------------------------------------------------


def writer_process(settings_fields: dict, group_id: str, batch_size: int, reports: mp.Queue, stop: mp.Event) -> None:
    import logging

    from services.store.writer import StoreWriter

    logging.basicConfig(level=logging.WARNING)
    settings = Settings(**settings_fields)

    def on_stored(events, stored_at: float) -> None:
        counts: dict[str, int] = {}
        latencies = []
        for event in events:
            message = event.message
            if isinstance(message, Candidate):
                phase = message.meta.get("bench", "?")
                counts[phase] = counts.get(phase, 0) + 1
                if phase == "paced":
                    latencies.append((stored_at - message.created_at.timestamp()) * 1000.0)
        reports.put((counts, stored_at, latencies, len(events), False))

    writer = StoreWriter(settings, group_id=group_id, batch_size=batch_size, on_stored=on_stored, progress_every_s=None)
    handle = writer.handle

    def timed_handle(events) -> None:  # the first record's arrival, as the raw consumer times its own
        if not received:
            received.append(time.time())
            reports.put(({}, received[0], [], 0, True))
        handle(events)

    received: list[float] = []
    writer.handle = timed_handle  # type: ignore[method-assign]
    threading.Thread(target=lambda: (stop.wait(), writer.stop()), daemon=True).start()
    writer.run()


class WriterReports:
    """What the writer process says after each database commit, summed per phase."""

    def __init__(self, reports: mp.Queue) -> None:
        self.reports = reports
        self.stored: dict[str, int] = {}
        self.last_stored_at: dict[str, float] = {}
        self.latencies: list[float] = []
        self.batches: dict[str, int] = {}
        self.first_received_at: float | None = None

    def drain(self, timeout: float) -> None:
        try:
            counts, stored_at, latencies, size, first = self.reports.get(timeout=timeout)
        except queue.Empty:
            return
        if first:
            self.first_received_at = stored_at
            return
        for phase, count in counts.items():
            self.stored[phase] = self.stored.get(phase, 0) + count
            self.last_stored_at[phase] = stored_at
            self.batches[phase] = self.batches.get(phase, 0) + 1
        self.latencies.extend(latencies)

    def wait_for(self, phase: str, count: int, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while self.stored.get(phase, 0) < count:
            if time.monotonic() > deadline:
                raise SystemExit(f"bench: the writer stored {self.stored.get(phase, 0)} of {count} {phase} samples")
            self.drain(0.2)


# -- phases ---------------------------------------------------------------------------------------------------


def flood(settings: Settings, samples: int) -> float:
    """Produce the flood before the writer starts; returns how long producing took."""
    from services.bus import EventProducer

    with EventProducer(settings) as producer:
        started = time.time()
        for i in range(samples):
            producer.publish(make_candidate(i, "flood"))
        producer.flush()
        return time.time() - started


def raw_consume(settings: Settings, batch_size: int) -> tuple[int, float]:
    """Read loop.candidates from the beginning to its end with a bare consumer: no group, no decoding, no SQL."""
    from kafka import KafkaConsumer, TopicPartition

    consumer = KafkaConsumer(
        bootstrap_servers=settings.kafka_bootstrap, enable_auto_commit=False, group_id=None,
        max_poll_records=batch_size, fetch_max_bytes=16 * 1024 * 1024, max_partition_fetch_bytes=4 * 1024 * 1024,
    )  # fmt: skip
    try:
        topic = settings.topic("loop.candidates")
        partitions = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic)]
        consumer.assign(partitions)
        consumer.seek_to_beginning(*partitions)
        end = consumer.end_offsets(partitions)
        wanted, seen, first = sum(end.values()), 0, None
        while seen < wanted:
            for records in consumer.poll(timeout_ms=500, max_records=batch_size).values():
                if first is None:
                    first = time.time()
                seen += len(records)
        return seen, time.time() - first
    finally:
        consumer.close()


def paced(settings: Settings, rate: float, seconds: float, reports: WriterReports) -> int:
    from services.bus import EventProducer

    total = int(rate * seconds)
    with EventProducer(settings) as producer:
        started = time.monotonic()
        sent = 0
        while sent < total:
            due = min(total, int((time.monotonic() - started) * rate) + 1)
            while sent < due:
                producer.publish(make_candidate(sent, "paced"))  # created_at: now, the send time
                sent += 1
            reports.drain(0.0)
            time.sleep(0.001)
        producer.flush()
    reports.wait_for("paced", total, timeout=120)
    return total


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * len(ordered)) - 1))]


# -- main -----------------------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    print("command:", shlex.join([sys.executable, *sys.argv]) if argv is None else shlex.join(["bench/bus.py", *argv]))
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="bench-bus-"))
    workdir.mkdir(parents=True, exist_ok=True)
    own_workdir = args.workdir is None
    broker = None
    bootstrap = args.bootstrap
    if bootstrap is None:
        from services.kafka.launcher import KafkaBroker

        broker = KafkaBroker(workdir / "kafka")
        broker.start()
        bootstrap = broker.bootstrap
    try:
        return run(args, workdir, bootstrap, started_broker=broker is not None)
    finally:
        if broker is not None:
            broker.stop()
        if own_workdir:
            shutil.rmtree(workdir, ignore_errors=True)


def run(args: argparse.Namespace, workdir: Path, bootstrap: str, *, started_broker: bool) -> int:
    from sqlalchemy import func, select

    from schemas.tables import Sample
    from services.bus import create_topics
    from services.store.db import open_store

    settings = Settings(
        data_dir=workdir, kafka_bootstrap=bootstrap, topic_prefix=f"bench{uuid.uuid4().hex[:6]}.",
        database_url=args.database_url,
    )  # fmt: skip
    engine = open_store(settings)
    create_topics(settings)
    print(f"broker: {bootstrap} ({'started by this run' if started_broker else 'given'}); store: "
          f"{engine.url.render_as_string(hide_password=True)}; writer batch {args.batch_size}")  # fmt: skip

    produce_s = flood(settings, args.samples)
    context = mp.get_context("spawn")
    report_queue, stop = context.Queue(), context.Event()
    writer = context.Process(
        target=writer_process,
        args=(settings.model_dump(mode="json"), f"bench-store-{uuid.uuid4().hex[:6]}", args.batch_size, report_queue, stop),
        name="store-writer",
    )
    writer.start()
    reports = WriterReports(report_queue)
    try:
        reports.wait_for("flood", args.samples, timeout=600)
        assert reports.first_received_at is not None
        stored_s = reports.last_stored_at["flood"] - reports.first_received_at
        stored_rate = args.samples / stored_s
        print(f"stored: {args.samples} Candidates produced in {produce_s:.2f}s ({args.samples / produce_s:.0f}/s), "
              f"then stored in {stored_s:.2f}s from the writer's first record: {stored_rate:.0f} samples/s "
              f"({reports.batches['flood']} transactions, {args.samples / reports.batches['flood']:.0f} per batch)")  # fmt: skip

        raw_count, raw_s = raw_consume(settings, args.batch_size)
        raw_rate = raw_count / raw_s
        print(f"raw: a bare kafka-python consumer read the same {raw_count} messages in {raw_s:.2f}s: "
              f"{raw_rate:.0f} messages/s (no group, no decoding, no database)")  # fmt: skip

        paced_count = paced(settings, args.paced_rate, args.paced_seconds, reports)
        latencies = reports.latencies
        p50, p99, worst = percentile(latencies, 50), percentile(latencies, 99), max(latencies)
        print(f"latency: {paced_count} Candidates paced at {args.paced_rate:.0f}/s for {args.paced_seconds:.0f}s "
              f"({args.paced_rate / stored_rate:.0%} of the stored rate); send (created_at) to the writer's "
              f"database commit: p50 {p50:.1f} ms, p99 {p99:.1f} ms, max {worst:.1f} ms, mean "
              f"{statistics.fmean(latencies):.1f} ms")  # fmt: skip

        with engine.connect() as connection:
            rows = connection.execute(select(func.count()).select_from(Sample)).scalar_one()
        expected = args.samples + paced_count
        print(f"check: {rows} samples in the store, {expected} produced" + ("" if rows == expected else "  MISMATCH"))
    finally:
        stop.set()
        writer.join(timeout=30)
        if writer.is_alive():
            writer.kill()
        engine.dispose()
    print(f"bus: {stored_rate:.0f} samples/s stored, {stored_rate / raw_rate:.2f}x of raw consume, p99 {p99:.0f} ms")
    return 0 if rows == expected else 1


if __name__ == "__main__":
    sys.exit(main())
