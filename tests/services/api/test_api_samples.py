"""Samples through the API: filters, sorting, pagination, one sample with its lineage, and bad input."""

from __future__ import annotations

import pytest

from schemas.messages import Verdict
from tasks import get_family
from tasks.arithmetic import Arithmetic

from .conftest import arithmetic_sample

FAMILY = get_family("arithmetic")

pytestmark = pytest.mark.kafka  # the settings fixture brings a broker; these tests do not publish


def ids(response) -> list[str]:
    assert response.status_code == 200, response.text
    return [item["id"] for item in response.json()["items"]]


def test_listing_filters_combine(client, standard):
    a = standard.arithmetic
    assert set(ids(client.get("/api/samples", params={"limit": 500}))) == set(a) | set(standard.grounded)
    assert set(ids(client.get("/api/samples", params={"family": "grounded"}))) == set(standard.grounded)
    accepted = {a[i] for i in range(12) if i % 2 == 0}
    assert set(ids(client.get("/api/samples", params={"family": "arithmetic", "status": "accepted"}))) == accepted
    assert set(ids(client.get("/api/samples", params={"status": "pending"}))) == {a[3], a[7], a[11]}
    assert set(ids(client.get("/api/samples", params={"family": "arithmetic", "difficulty": 2}))) == {
        a[i] for i in (1, 4, 7, 10)
    }
    assert set(ids(client.get("/api/samples", params={"difficulty_min": 3, "family": "arithmetic"}))) == {
        a[i] for i in (2, 5, 8, 11)
    }
    assert set(ids(client.get("/api/samples", params={"round": 2}))) == {a[i] for i in (8, 9, 10, 11)}
    assert set(ids(client.get("/api/samples", params={"adapter": "base"}))) == {a[i] for i in range(4)}
    assert set(ids(client.get("/api/samples", params={"adapter": "a1", "family": "arithmetic"}))) == {
        a[i] for i in range(4, 8)
    }
    assert set(ids(client.get("/api/samples", params={"q": "kavo"}))) == {standard.grounded[0]}
    assert set(ids(client.get("/api/samples", params={"q": "10+"}))) == {a[10]}
    assert set(ids(client.get("/api/samples", params={"q": "20"}))) == {a[10]}  # the label "20"
    assert set(ids(client.get("/api/samples", params={"snapshot": "s2"}))) == set(standard.s2)
    assert ids(client.get("/api/samples", params={"q": "%"})) == []  # LIKE wildcards are literal
    assert ids(client.get("/api/samples", params={"family": "nope"})) == []


def test_listing_sorts_and_paginates(client, standard):
    a = standard.arithmetic
    params = {"family": "arithmetic", "sort": "generated_at", "limit": 5}
    first = client.get("/api/samples", params=params).json()
    assert (first["total"], first["limit"], first["offset"]) == (12, 5, 0)
    assert [item["id"] for item in first["items"]] == a[:5]
    second = ids(client.get("/api/samples", params={**params, "offset": 5}))
    last = ids(client.get("/api/samples", params={**params, "offset": 10}))
    assert second == a[5:10] and last == a[10:]
    assert ids(client.get("/api/samples", params={**params, "sort": "-generated_at", "limit": 3})) == a[::-1][:3]
    by_difficulty = client.get("/api/samples", params={"family": "arithmetic", "sort": "-difficulty"}).json()["items"]
    assert [s["difficulty"] for s in by_difficulty] == sorted((s["difficulty"] for s in by_difficulty), reverse=True)
    assert ids(client.get("/api/samples", params={**params, "offset": 100})) == []
    summary = first["items"][0]
    assert summary["answer_count"] == 3 and "answers" not in summary and summary["status"] == "accepted"


def test_one_sample_has_answers_checks_and_lineage(client, standard):
    sid = standard.arithmetic[2]  # round 0 (base model), accepted, in s1 and s2; a1 trained on s1, a2..a4 on s2
    body = client.get(f"/api/samples/{sid}").json()
    assert body["problem"] == "2+2" and body["label"] == "4" and body["true_answer"] == "4"
    assert [(a["text"], a["chosen"], a["correct"]) for a in body["answers"]] == [
        ("4", True, True),
        ("5", False, False),
        ("4", True, True),
    ]
    assert [(c["name"], c["passed"], c["score"]) for c in body["checks"]] == [
        ("format", True, 1.0),
        ("self_consistency", True, 0.67),
    ]
    assert body["checks"][1]["reason"] == "2 of 3 answers agree"
    assert body["meta"] == {"a": 2, "b": 2} and body["timings_ms"] == {"generate": 2.5}
    lineage = body["lineage"]
    assert lineage["generated_by"] == {"id": None, "status": None}
    assert lineage["snapshots"] == ["s1", "s2"]
    assert [a["id"] for a in lineage["trained_adapters"]] == ["a1", "a2", "a3", "a4"]


def test_a_grounded_sample_shows_its_evidence_and_generator(client, standard):
    body = client.get(f"/api/samples/{standard.grounded[0]}").json()
    assert body["evidence"] == [{"id": "p1", "score": 0.91, "text": "Kavo lives in Tesa, by the <b>river</b>."}]
    assert body["lineage"]["generated_by"] == {"id": "a1", "status": "promoted"}
    assert body["lineage"]["snapshots"] == ["s1"]
    assert [a["id"] for a in body["lineage"]["trained_adapters"]] == ["a1"]


def test_a_pending_sample_has_no_checks_yet(client, standard):
    body = client.get(f"/api/samples/{standard.arithmetic[3]}").json()
    assert body["status"] == "pending" and body["checks"] == [] and body["label"] is None
    assert body["lineage"]["snapshots"] == [] and body["lineage"]["trained_adapters"] == []


def test_filter_choices_list_what_exists(client, standard):
    body = client.get("/api/samples/filters").json()
    assert body == {
        "families": ["arithmetic", "grounded"],
        "difficulties": [1, 2, 3],
        "rounds": [0, 1, 2],
        "adapters": ["a1", "a2"],
    }


@pytest.mark.parametrize(
    ("params", "fragment"),
    [
        ({"status": "maybe"}, "status"),
        ({"difficulty": "two"}, "difficulty"),
        ({"difficulty": -1}, "difficulty"),
        ({"difficulty": 2**40}, "difficulty"),
        ({"limit": 0}, "limit"),
        ({"limit": 501}, "limit"),
        ({"offset": -5}, "offset"),
        ({"sort": "problem; DROP TABLE sample"}, "sort"),
        ({"q": "x" * 201}, "q"),
        ({"q": "a\x00b"}, "q"),
    ],
)
def test_bad_filters_are_422_with_a_message(client, params, fragment):
    response = client.get("/api/samples", params=params)
    assert response.status_code == 422
    body = response.json()
    assert isinstance(body["detail"], str) and fragment in body["detail"]


def test_an_unknown_sample_is_404(client, standard):
    response = client.get("/api/samples/no-such-sample")
    assert response.status_code == 404
    assert response.json() == {"detail": "sample 'no-such-sample' not found"}


def test_answers_are_compared_with_the_label_by_what_they_say(client, store_data):
    # The generator's completions in the builtin format: digits least significant first behind place letters.
    problem = Arithmetic.problem(57, 8)
    written = [FAMILY.write_answer(problem, "65"), FAMILY.write_answer(problem, "65") + "d0", "a6b6c0"]
    candidate, _ = arithmetic_sample(0)
    candidate = candidate.model_copy(update={"sample_id": problem.sample_id, "problem": problem.canonical,
                                             "difficulty": 2, "answers": written, "true_answer": "65",
                                             "meta": problem.data})
    verdict = Verdict(sample_id=problem.sample_id, family="arithmetic", accepted=True, label="65", checks=[])
    store_data.apply(candidate, verdict)
    body = client.get(f"/api/samples/{problem.sample_id}").json()
    assert [(a["chosen"], a["correct"]) for a in body["answers"]] == [(True, True), (True, True), (False, False)]
