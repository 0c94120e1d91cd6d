"""Snapshots through the API: the listing, one snapshot, the difference between two, and bad input."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.kafka


def test_listing_is_newest_first_with_the_adapters_trained_on_each(client, standard):
    body = client.get("/api/snapshots").json()
    assert body["total"] == 2
    assert [(s["id"], s["size"], s["adapters"]) for s in body["items"]] == [
        ("s2", 3, ["a2", "a3", "a4"]),
        ("s1", 3, ["a1"]),
    ]
    assert client.get("/api/snapshots", params={"limit": 1, "offset": 1}).json()["items"][0]["id"] == "s1"


def test_one_snapshot_by_id_or_latest(client, standard):
    assert client.get("/api/snapshots/s1").json()["adapters"] == ["a1"]
    assert client.get("/api/snapshots/latest").json()["id"] == "s2"
    assert client.get("/api/snapshots/s9").status_code == 404


def test_diff_lists_added_and_removed_with_counts(client, standard):
    a, g = standard.arithmetic, standard.grounded
    body = client.get("/api/snapshots/diff", params={"base": "s1", "target": "s2"}).json()
    assert (body["base"], body["target"], body["base_size"], body["target_size"]) == ("s1", "s2", 3, 3)
    assert (body["added_total"], body["removed_total"]) == (2, 2)
    assert {s["id"] for s in body["added"]} == {a[4], a[6]}
    assert {s["id"] for s in body["removed"]} == {a[0], g[0]}
    # s1 = {a0 (d1), a2 (d3), g0 (d1)}; s2 = {a2 (d3), a4 (d2), a6 (d1)}
    assert body["by_difficulty"] == [
        {"difficulty": 1, "base": 2, "target": 1, "added": 1, "removed": 2},
        {"difficulty": 2, "base": 0, "target": 1, "added": 1, "removed": 0},
        {"difficulty": 3, "base": 1, "target": 1, "added": 0, "removed": 0},
    ]
    assert body["by_status"] == [{"status": "accepted", "base": 3, "target": 3, "added": 2, "removed": 2}]


def test_diff_of_a_snapshot_with_itself_is_empty_and_limit_caps_the_lists(client, standard):
    same = client.get("/api/snapshots/diff", params={"base": "s2", "target": "latest"}).json()
    assert (same["added_total"], same["removed_total"], same["added"], same["removed"]) == (0, 0, [], [])
    capped = client.get("/api/snapshots/diff", params={"base": "s1", "target": "s2", "limit": 1}).json()
    assert capped["added_total"] == 2 and len(capped["added"]) == 1


def test_diff_refuses_unknown_or_missing_snapshots(client, standard):
    response = client.get("/api/snapshots/diff", params={"base": "s1", "target": "nope"})
    assert response.status_code == 404 and response.json()["detail"] == "snapshot 'nope' not found"
    response = client.get("/api/snapshots/diff", params={"base": "s1"})
    assert response.status_code == 422 and "target" in response.json()["detail"]
    assert client.get("/api/snapshots/diff", params={"base": "s1", "target": "s2", "limit": -1}).status_code == 422
