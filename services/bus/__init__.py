"""The event bus: topics, a keyed idempotent producer, and the consumer base every worker uses."""

from services.bus.codec import UndecodableMessage, decode_message, encode_message
from services.bus.consumer import Event, EventConsumer, Interrupted
from services.bus.producer import EventProducer
from services.bus.topics import create_topics, topic_names

__all__ = [
    "Event",
    "EventConsumer",
    "EventProducer",
    "Interrupted",
    "UndecodableMessage",
    "create_topics",
    "decode_message",
    "encode_message",
    "topic_names",
]
