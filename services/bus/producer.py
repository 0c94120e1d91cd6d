"""A keyed, idempotent producer: acks from every in-sync replica, no duplicates on retry."""

from __future__ import annotations

from kafka import KafkaProducer

from schemas.messages import Message
from services.bus.codec import encode_message
from services.settings import Settings


class EventProducer:
    def __init__(self, settings: Settings, *, linger_ms: int = 5, client_id: str = "loop-producer") -> None:
        self.settings = settings
        self._producer = KafkaProducer(
            bootstrap_servers=settings.kafka_bootstrap,
            client_id=client_id,
            acks="all",
            enable_idempotence=True,
            linger_ms=linger_ms,
            batch_size=256 * 1024,
            max_request_size=max(1024 * 1024, settings.max_message_bytes * 2),
        )

    def publish(self, message: Message):
        """Send one message to its topic, keyed so one entity's events keep their order; returns a future."""
        return self._producer.send(
            self.settings.topic(message.topic),
            key=message.key().encode(),
            value=encode_message(message),
        )

    def publish_raw(self, topic: str, value: bytes | None, *, key: bytes | None = None):
        """Send bytes as they are (dead letters of other producers, tests of bad input)."""
        return self._producer.send(self.settings.topic(topic), key=key, value=value)

    def flush(self, timeout: float | None = None) -> None:
        self._producer.flush(timeout=timeout)

    def close(self, timeout: float | None = 10.0) -> None:
        self._producer.close(timeout=timeout)

    def __enter__(self) -> "EventProducer":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
