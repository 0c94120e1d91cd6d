"""The audit of the store against the topics (loopctl audit): a store that holds what the log says passes, and each
kind of damage is counted as what it is."""

from __future__ import annotations

import pytest
from sqlalchemy import delete, update

from schemas.messages import AdapterEvent
from schemas.tables import Adapter, Sample
from services.bus import EventProducer, create_topics
from services.store import open_store
from services.store.audit import audit
from tests.services.store.test_writer import apply, candidate, verdict

pytestmark = pytest.mark.kafka


def test_the_audit_counts_lost_doubled_and_unreflected_rows(settings):
    create_topics(settings)
    adapter = AdapterEvent(adapter_id="a1", base_model="builtin", path="/a1", status="promoted",
                           created_at=candidate(0).created_at)
    messages = [*(candidate(i) for i in range(6)), *(verdict(i, accepted=i % 2 == 0) for i in range(6)), adapter]
    with EventProducer(settings) as producer:
        for message in messages:
            producer.publish(message)
    engine = open_store(settings)
    apply(engine, messages)  # what the store writer would have made of them

    clean = audit(settings, engine)
    assert clean.ok and (clean.candidates, clean.rows) == (6, 6)

    with engine.begin() as connection:
        connection.execute(delete(Sample).where(Sample.id == candidate(0).sample_id))
        connection.execute(update(Sample).where(Sample.id == candidate(1).sample_id).values(status="accepted"))
        connection.execute(update(Adapter).where(Adapter.id == "a1").values(status="rejected"))
    apply(engine, [candidate(99)])  # a row no candidate in the topic made
    damaged = audit(settings, engine)
    assert not damaged.ok
    # The deleted sample is lost, and its verdict is no longer reflected either; verdict 1 rejected it.
    assert (damaged.lost, damaged.doubled, damaged.unreflected_verdicts, damaged.missing_adapters) == (1, 1, 2, 1)

    import json
    import subprocess
    import sys

    from tests.loop.conftest import REPO, service_env

    result = subprocess.run([sys.executable, "-m", "loop.cli", "audit"], cwd=REPO, env=service_env(settings),
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 1, result.stdout + result.stderr
    assert result.stdout, result.stderr
    printed = json.loads(result.stdout.splitlines()[0])
    assert (printed["lost"], printed["doubled"], printed["ok"]) == (1, 1, False)
