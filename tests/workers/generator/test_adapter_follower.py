"""The generators' view of which adapter is promoted, read from ``loop.adapters`` on the real broker."""

import pytest

from schemas.messages import AdapterEvent
from services.bus import EventProducer, create_topics
from workers.generator.adapter_follower import AdapterFollower

pytestmark = pytest.mark.kafka


def _event(adapter_id: str, status: str, path: str = "") -> AdapterEvent:
    return AdapterEvent(adapter_id=adapter_id, base_model="builtin" if path else "", path=path, status=status)


def _refresh_until(follower: AdapterFollower, done) -> AdapterEvent | None:
    """The promoted adapter once ``done(promoted)`` holds (one fetch may return only part of what was published)."""
    for _ in range(40):
        promoted = follower.refresh(timeout_ms=250)
        if done(promoted):
            return promoted
    raise AssertionError(f"the follower stopped at {promoted}")


def test_generators_go_back_to_the_adapter_or_the_base_a_roll_back_names(settings):
    create_topics(settings)
    follower = AdapterFollower(settings)
    try:
        with EventProducer(settings) as producer:
            def publish(*events):
                for event in events:
                    producer.publish(event)
                producer.flush()

            publish(_event("a1", "trained", "/adapters/a1"), _event("a1", "promoted"),
                    _event("a2", "trained", "/adapters/a2"), _event("a2", "promoted"))
            promoted = _refresh_until(follower, lambda p: p is not None and p.adapter_id == "a2")
            assert (promoted.adapter_id, promoted.path) == ("a2", "/adapters/a2")

            publish(_event("a2", "rolled_back"), _event("a1", "promoted"))  # the API's roll back to the parent
            promoted = _refresh_until(follower, lambda p: follower.adapters["a2"].status == "rolled_back" and p is not None)
            assert (promoted.adapter_id, promoted.path) == ("a1", "/adapters/a1")

            publish(_event("a3", "trained", "/adapters/a3"), _event("a3", "rejected"))  # never generated with
            assert _refresh_until(follower, lambda p: "a3" in follower.adapters and follower.adapters["a3"].status == "rejected").adapter_id == "a1"

            publish(_event("a1", "rolled_back"))  # to the base model
            assert _refresh_until(follower, lambda p: follower.adapters["a1"].status == "rolled_back") is None
    finally:
        follower.close()
