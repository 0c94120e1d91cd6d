"""The store against the log: what the topics say happened, and whether the store holds exactly that.

Every distinct candidate key in ``loop.candidates`` must be one row of the store (none missing: lost; none without a
candidate: doubled), the last verdict of each key must be its row's status, and every adapter event's last status must
be the adapter's. ``loopctl audit`` prints it; ``bench/faults.py`` and ``scripts/compose_smoke.sh`` check it after
their faults. Read it once the store writer has caught up (its lag 0), or recent messages count as lost.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from kafka import KafkaConsumer, TopicPartition
from sqlalchemy.engine import Engine
from sqlmodel import Session, select

from schemas.messages import AdapterEvent, Candidate, Message, Verdict
from schemas.tables import Adapter, Sample
from services.bus.codec import UndecodableMessage, decode_message
from services.settings import Settings


def read_topic(settings: Settings, topic: str) -> list:
    """Every record of a topic (its logical name), from the beginning to its end as it is now."""
    consumer = KafkaConsumer(bootstrap_servers=settings.kafka_bootstrap, enable_auto_commit=False)
    try:
        name = settings.topic(topic)
        partitions = [TopicPartition(name, p) for p in sorted(consumer.partitions_for_topic(name) or ())]
        consumer.assign(partitions)
        consumer.seek_to_beginning(*partitions)
        ends = consumer.end_offsets(partitions)
        records: list = []
        while any((consumer.position(tp, timeout_ms=30_000) or 0) < ends[tp] for tp in partitions):
            for batch in consumer.poll(timeout_ms=1000, max_records=5000).values():
                records.extend(batch)
        return records
    finally:
        consumer.close()


def decoded(settings: Settings, topic: str) -> list[Message]:
    """The messages of a topic that decode (what the dead-letter topic holds is not among them)."""
    messages = []
    for record in read_topic(settings, topic):
        try:
            messages.append(decode_message(topic, record.value, max_bytes=settings.max_message_bytes))
        except UndecodableMessage:
            continue
    return messages


@dataclass(frozen=True)
class Audit:
    candidates: int  # distinct keys in loop.candidates
    rows: int  # samples in the store
    lost: int  # candidates without a row
    doubled: int  # rows without a candidate
    unreflected_verdicts: int  # keys whose last verdict is not their row's status
    missing_adapters: int  # adapters whose last event's status is not the stored one

    @property
    def ok(self) -> bool:
        return not (self.lost or self.doubled or self.unreflected_verdicts or self.missing_adapters)

    def as_dict(self) -> dict:
        return asdict(self)


def audit(settings: Settings, store: Engine) -> Audit:
    candidates = {m.sample_id for m in decoded(settings, Candidate.topic) if isinstance(m, Candidate)}
    # A key's verdicts share one partition, so the last one read is the last one written.
    last_verdict = {m.sample_id: m for m in decoded(settings, Verdict.topic) if isinstance(m, Verdict)}
    adapters = {m.adapter_id: m.status for m in decoded(settings, AdapterEvent.topic) if isinstance(m, AdapterEvent)}
    with Session(store) as session:
        rows = {s.id: s.status for s in session.exec(select(Sample))}
        stored_adapters = {a.id: a.status for a in session.exec(select(Adapter))}
    unreflected = sum(1 for key, verdict in last_verdict.items()
                      if rows.get(key) != ("accepted" if verdict.accepted else "rejected"))
    return Audit(
        candidates=len(candidates), rows=len(rows), lost=len(candidates - rows.keys()),
        doubled=len(rows.keys() - candidates), unreflected_verdicts=unreflected,
        missing_adapters=sum(1 for key, status in adapters.items() if stored_adapters.get(key) != status),
    )
