"""Adapters through the API: the listing with metrics, one adapter, promote and roll back (published on
loop.adapters and applied by a real store writer), and the cases that must be refused."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.kafka


def current(client) -> str | None:
    return client.get("/api/overview").json()["current_adapter"]["id"]


def test_listing_shows_metrics_heldout_accuracy_and_the_current_adapter(client, standard):
    body = client.get("/api/adapters").json()
    assert body["total"] == 4
    by_id = {a["id"]: a for a in body["items"]}
    assert [a["id"] for a in body["items"]] == ["a4", "a3", "a2", "a1"]  # newest first
    assert [by_id[i]["current"] for i in ("a1", "a2", "a3", "a4")] == [False, True, False, False]
    assert [by_id[i]["round"] for i in ("a1", "a2", "a3", "a4")] == [1, 2, 3, 4]
    assert [by_id[i]["status"] for i in ("a1", "a2", "a3", "a4")] == ["promoted", "promoted", "trained", "rejected"]
    a2 = by_id["a2"]
    assert a2["parent_id"] == "a1" and a2["snapshot_id"] == "s2" and a2["path"] == "/data/adapters/a2"
    assert a2["metrics"] == {"final_loss": 0.2, "examples": 3.0} and a2["config"] == {"lora": {"r": 8}}
    assert [(s["difficulty"], s["accuracy"]) for s in a2["heldout"]] == [(1, 0.97), (2, 0.85), (3, 0.4)]
    assert a2["mean_accuracy"] == pytest.approx((0.97 + 0.85 + 0.4) / 3)
    assert by_id["a3"]["heldout"] == [] and by_id["a3"]["mean_accuracy"] is None
    assert [a["id"] for a in client.get("/api/adapters", params={"status": "promoted"}).json()["items"]] == ["a2", "a1"]
    assert client.get("/api/adapters", params={"status": "great"}).status_code == 422


def test_one_adapter_and_an_unknown_one(client, standard):
    assert client.get("/api/adapters/a3").json()["parent_id"] == "a2"
    response = client.get("/api/adapters/nope")
    assert response.status_code == 404 and response.json()["detail"] == "adapter 'nope' not found"


def test_promote_publishes_and_the_store_follows(client, standard, store_writer, wait_until, auth):
    response = client.post("/api/adapters/a3/promote", headers=auth)
    assert response.status_code == 202, response.text
    assert response.json() == {
        "current_before": "a2",
        "current_after": "a3",
        "events": [{"adapter_id": "a3", "status": "promoted"}],
    }
    wait_until(lambda: current(client) == "a3", 30, "the store writer to apply the promotion")
    a3 = client.get("/api/adapters/a3").json()
    # Only the status changed: lineage, path, metrics and config are the trainer's and stay.
    assert (a3["status"], a3["parent_id"], a3["snapshot_id"], a3["path"]) == (
        "promoted",
        "a2",
        "s2",
        "/data/adapters/a3",
    )
    assert a3["metrics"] == {"final_loss": 0.3, "examples": 3.0} and a3["config"] == {"lora": {"r": 8}}


def test_promote_refuses_what_it_cannot_do(client, standard, topics, auth):
    assert client.post("/api/adapters/nope/promote", headers=auth).status_code == 404
    response = client.post("/api/adapters/a2/promote", headers=auth)
    assert response.status_code == 409 and "already the current adapter" in response.json()["detail"]
    response = client.post("/api/adapters/a4/promote", headers=auth)
    assert response.status_code == 409 and "rejected by the promotion gate" in response.json()["detail"]
    assert client.post("/api/adapters/a4/promote", headers=auth, json={"force": True}).status_code == 202
    assert client.post("/api/adapters/a3/promote", headers=auth, json={"force": "perhaps"}).status_code == 422
    assert client.post("/api/adapters/a3/promote", headers=auth, json={"unknown": 1}).status_code == 422


def test_roll_back_returns_to_the_parent_then_to_the_base_model(client, standard, store_writer, wait_until, auth):
    response = client.post("/api/adapters/rollback", headers=auth)
    assert response.status_code == 202, response.text
    assert response.json() == {
        "current_before": "a2",
        "current_after": "a1",
        "events": [{"adapter_id": "a2", "status": "rolled_back"}, {"adapter_id": "a1", "status": "promoted"}],
    }
    wait_until(lambda: current(client) == "a1", 30, "the roll back to a1")
    assert client.get("/api/adapters/a2").json()["status"] == "rolled_back"

    response = client.post("/api/adapters/rollback", headers=auth, json={})  # a1 has no parent: the base model
    assert response.json()["current_after"] is None
    wait_until(lambda: client.get("/api/adapters/a1").json()["status"] == "rolled_back", 30, "the roll back to base")
    assert current(client) is None

    response = client.post("/api/adapters/rollback", headers=auth)
    assert response.status_code == 409 and "already use the base model" in response.json()["detail"]


def test_roll_back_to_a_named_adapter(client, standard, store_writer, wait_until, auth):
    assert client.post("/api/adapters/rollback", headers=auth, json={"to": "nope"}).status_code == 404
    response = client.post("/api/adapters/rollback", headers=auth, json={"to": "a2"})
    assert response.status_code == 409 and "is the current adapter" in response.json()["detail"]
    response = client.post("/api/adapters/rollback", headers=auth, json={"to": "a3"})
    assert response.status_code == 409 and "never promoted" in response.json()["detail"]
    response = client.post("/api/adapters/rollback", headers=auth, json={"to": "base"})
    assert response.status_code == 202 and response.json()["current_after"] is None
    wait_until(lambda: current(client) is None, 30, "the roll back to the base model")
    assert client.post("/api/adapters/rollback", headers=auth, json={"to": 5}).status_code == 422
