"""Follows ``loop.adapters`` from the beginning to know which adapter is promoted now, and where it lives."""

from __future__ import annotations

from kafka import KafkaConsumer
from kafka.structs import TopicPartition

from schemas.messages import AdapterEvent
from services.bus.codec import UndecodableMessage, decode_message
from services.settings import Settings


class AdapterFollower:
    """Every process reads the whole (small, single-partition) adapter log: no consumer group, no commits."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._consumer = KafkaConsumer(bootstrap_servers=settings.kafka_bootstrap, enable_auto_commit=False,
                                       client_id="adapter-follower")
        name = settings.topic(AdapterEvent.topic)
        partitions = [TopicPartition(name, p) for p in sorted(self._consumer.partitions_for_topic(name) or {0})]
        self._consumer.assign(partitions)
        self._consumer.seek_to_beginning(*partitions)
        self.adapters: dict[str, AdapterEvent] = {}
        self.promoted: AdapterEvent | None = None

    def refresh(self, timeout_ms: int = 0) -> AdapterEvent | None:
        """Read what is new; returns the adapter promoted now (None: the base model)."""
        while True:
            records = self._consumer.poll(timeout_ms=timeout_ms, max_records=1000)
            if not records:
                return self.promoted
            for batch in records.values():
                for record in batch:
                    try:
                        event = decode_message(AdapterEvent.topic, record.value, max_bytes=self.settings.max_message_bytes)
                    except UndecodableMessage:
                        continue  # the store writer dead-letters it; here it just names no adapter
                    assert isinstance(event, AdapterEvent)  # decoded by the contract of its topic
                    self._apply(event)
            timeout_ms = 0

    def _apply(self, event: AdapterEvent) -> None:
        known = self.adapters.get(event.adapter_id)
        self.adapters[event.adapter_id] = event if known is None else known.model_copy(update={"status": event.status})
        if event.status == "promoted":
            self.promoted = self.adapters[event.adapter_id]
        elif event.status == "rolled_back" and self.promoted and self.promoted.adapter_id == event.adapter_id:
            self.promoted = None  # the controller promotes the adapter it rolls back to right after

    def path_of(self, adapter_id: str) -> str | None:
        event = self.adapters.get(adapter_id)
        return event.path if event else None

    def close(self) -> None:
        self._consumer.close()
