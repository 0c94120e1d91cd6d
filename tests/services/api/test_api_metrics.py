"""Metrics, the overview and dead letters through the API."""

from __future__ import annotations

import base64
from datetime import UTC, datetime, timedelta

import pytest

from schemas.messages import CONSUMER_GROUPS

pytestmark = pytest.mark.kafka


def test_accuracy_per_round_and_difficulty(client, standard):
    points = client.get("/api/metrics/accuracy").json()
    assert [(p["round"], p["adapter_id"], p["difficulty"], p["accuracy"]) for p in points] == [
        (0, "base", 1, 0.9),
        (0, "base", 2, 0.5),
        (0, "base", 3, 0.1),
        (1, "a1", 1, 0.95),
        (1, "a1", 2, 0.7),
        (1, "a1", 3, 0.2),
        (2, "a2", 1, 0.97),
        (2, "a2", 2, 0.85),
        (2, "a2", 3, 0.4),
    ]
    assert {p["adapter_status"] for p in points if p["round"] > 0} == {"promoted"}
    assert client.get("/api/metrics/accuracy", params={"suite": "other"}).json() == []
    assert client.get("/api/metrics/accuracy", params={"family": "grounded"}).json() == []


def test_throughput_counts_the_window_by_the_events_times(client, standard, store_data, make_sample):
    now = datetime.now(UTC)
    fresh = [
        make_sample(100 + i, created=now - timedelta(seconds=30)) for i in range(6)
    ]  # 3 accepted, 2 rejected, 1 pending
    store_data.apply(*[m for pair in fresh for m in pair if m is not None])
    body = client.get("/api/metrics/throughput", params={"window_s": 120}).json()
    assert (body["window_s"], body["generated"], body["verified"], body["accepted"]) == (120, 6, 5, 3)
    assert body["generated_per_min"] == pytest.approx(3.0) and body["accepted_per_min"] == pytest.approx(1.5)
    assert body["acceptance_rate"] == pytest.approx(3 / 5)
    assert body["totals"] == {"accepted": 10, "rejected": 6, "pending": 4}
    assert client.get("/api/metrics/throughput", params={"window_s": 5}).status_code == 422


def test_overview(client, standard):
    body = client.get("/api/overview").json()
    assert body["current_adapter"] == {"id": "a2", "status": "promoted"}
    assert (body["round"], body["difficulty"]) == (2, 3)
    assert (body["adapters"], body["snapshots"], body["dead_letters"], body["jobs_running"]) == (4, 2, 1, 1)
    assert body["throughput"]["totals"] == {"accepted": 7, "rejected": 4, "pending": 3}


def test_overview_names_samples_generated_off_the_promoted_adapter(client, standard, store_data, make_sample):
    assert client.get("/api/overview").json()["off_adapter"] == ""
    candidate, _ = make_sample(200, created=datetime.now(UTC) - timedelta(seconds=30))
    store_data.apply(candidate.model_copy(update={"adapter_id": "a1"}))  # a generator that kept a1 after a2's promotion
    assert client.get("/api/overview").json()["off_adapter"] == "a1 1 (promoted: a2)"
    page = client.get("/")
    assert 'id="off-adapter" class="warning">' in page.text and "a1 1 (promoted: a2)" in page.text


def test_overview_of_an_empty_store(client):
    body = client.get("/api/overview").json()
    assert body["current_adapter"] == {"id": None, "status": None}
    assert (body["round"], body["difficulty"], body["adapters"]) == (None, None, 0)
    assert body["throughput"]["acceptance_rate"] is None


def test_consumer_lag_per_group(client, topics, make_sample, start_store_writer, wait_until):
    from services.bus import EventProducer

    with EventProducer(topics) as producer:
        for i in range(5):
            producer.publish(make_sample(i)[0])
        producer.flush()

    def lag() -> dict[tuple[str, str], int | None]:
        body = client.get("/api/metrics/lag").json()
        assert body["available"] is True, body
        return {(g["group"], g["topic"]): g["lag"] for g in body["groups"]}

    before = lag()
    assert set(before) == {(g, t) for g, topics in CONSUMER_GROUPS.items() for t in topics}  # every topic of every group
    assert before[("store-writer", "loop.candidates")] == 5 and before[("verifiers", "loop.candidates")] == 5
    assert before[("generators", "loop.generate")] == 0
    start_store_writer("store-writer")  # the store writer's own group: its lag drains, the verifiers' does not
    wait_until(lambda: lag()[("store-writer", "loop.candidates")] == 0, 30, "the store writer's lag to drain", 0.5)
    assert lag()[("verifiers", "loop.candidates")] == 5


def test_consumer_lag_when_kafka_is_unreachable_is_reported_not_an_error(api_settings, engine):
    from fastapi.testclient import TestClient

    from services.api import create_app

    unreachable = api_settings.model_copy(update={"kafka_bootstrap": "127.0.0.1:1"})
    with TestClient(create_app(unreachable, engine=engine)) as client:
        response = client.get("/api/metrics/lag")
    assert response.status_code == 200
    body = response.json()
    assert body["available"] is False and body["error"] and all(g["lag"] is None for g in body["groups"])


def test_dead_letters_show_the_reason_and_the_bytes_safely(client, standard):
    body = client.get("/api/dead-letters").json()
    assert body["total"] == 1
    letter = body["items"][0]
    assert letter["id"] == "loop.candidates:3:42" and letter["consumer_group"] == "verifiers"
    assert base64.b64decode(letter["raw_b64"]) == standard.hostile_raw
    assert (letter["raw_size"], letter["raw_kept"]) == (10_000, len(standard.hostile_raw))
    text = letter["raw_text"]
    for unsafe in ("\x1b", "\x00", "\u202e", "\ufffd"):
        assert unsafe not in text
    assert "\\u001b[31m<script>" in text and "\\xff\\xfe" in text and "\\u202e" in text
    assert letter["raw_hex"].startswith("00000000  1b 5b 33 31 6d")
    assert "\x1b" not in letter["error"] and "<img" in letter["error"]  # HTML is escaped where it is shown
    assert client.get("/api/dead-letters/loop.candidates:3:42").json()["offset"] == 42
    assert client.get("/api/dead-letters", params={"source_topic": "loop.verdicts"}).json()["total"] == 0
    assert client.get("/api/dead-letters", params={"consumer_group": "verifiers"}).json()["total"] == 1
    assert client.get("/api/dead-letters/loop.candidates:3:43").status_code == 404


def test_kept_labels_right_per_round_flags_a_round_below_the_bound(client, standard, store_data, make_sample):
    rounds = {p["round"]: p for p in client.get("/api/metrics/kept").json()}
    assert rounds and all(p["precision"] == 1.0 and p["right"] == p["kept"] for p in rounds.values())
    assert 'id="kept-chart"' in client.get("/").text and 'class="below"' not in client.get("/").text
    candidate, verdict = make_sample(200)  # accepted, labelled with the truth; then planted in round 9, labelled wrong
    candidate = candidate.model_copy(update={"round": 9})
    verdict = verdict.model_copy(update={"label": str(int(candidate.true_answer) + 1)})
    store_data.apply(candidate, verdict)
    planted = {p["round"]: p for p in client.get("/api/metrics/kept", params={"family": "arithmetic"}).json()}[9]
    assert (planted["kept"], planted["right"], planted["precision"]) == (1, 0, 0.0)
    assert 'class="below"' in client.get("/").text and "round 9: 0.000 (below the bound)" in client.get("/").text
