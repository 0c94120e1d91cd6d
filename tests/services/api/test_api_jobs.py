"""Jobs through the API: a retraining runs in a real Celery worker (a stand-in of the training job, see
jobs_for_api_tests.py) and its progress shows; cancel; the listing; and what is refused."""

from __future__ import annotations

import time

import pytest

pytestmark = pytest.mark.kafka
TERMINAL = {"succeeded", "failed", "cancelled"}


def watch(client, job_id: str, timeout: float = 90.0) -> list[dict]:
    """Poll the job until it ends; returns each change of (state, progress) seen."""
    seen: list[dict] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        response = client.get(f"/api/jobs/{job_id}")
        assert response.status_code == 200, response.text
        job = response.json()
        if not seen or (seen[-1]["state"], seen[-1]["progress"]) != (job["state"], job["progress"]):
            seen.append(job)
        if job["state"] in TERMINAL:
            return seen
        time.sleep(0.05)
    raise AssertionError(f"job {job_id} did not end in {timeout}s: {seen[-3:]}")


def test_a_retraining_runs_in_the_worker_and_reports_progress(job_client, job_stack, wait_until, auth):
    overrides = {"steps": 5, "step_s": 0.3, "families": ["arithmetic"], "lora": {"steps": 7}}
    response = job_client.post("/api/jobs/retrain", headers=auth, json={"overrides": overrides})
    assert response.status_code == 202, response.text
    accepted = response.json()
    job_id = accepted["job_id"]
    assert accepted["kind"] == "api_test_retrain" and accepted["status_url"] == f"/api/jobs/{job_id}"
    seen = watch(job_client, job_id)
    assert seen[-1]["state"] == "succeeded", (seen, job_stack.log()[-3000:])
    assert any(0.0 < (job["progress"] or 0) < 1.0 for job in seen), seen  # progress showed on the way
    assert seen[-1]["progress"] == 1.0
    assert seen[-1]["result"]["overrides"] == {"families": ["arithmetic"], "lora": {"steps": 7}}

    def listed() -> bool:
        items = job_client.get("/api/jobs", params={"kind": "api_test_retrain", "state": "succeeded"}).json()["items"]
        return job_id in [job["id"] for job in items]

    wait_until(listed, 30, "the store writer to list the job")
    response = job_client.post(f"/api/jobs/{job_id}/cancel", headers=auth)
    assert response.status_code == 409 and "already ended" in response.json()["detail"]


def test_a_running_retraining_can_be_cancelled(job_client, job_stack, auth):
    job_id = job_client.post(
        "/api/jobs/retrain", headers=auth, json={"overrides": {"steps": 600, "step_s": 0.1}}
    ).json()["job_id"]
    deadline = time.monotonic() + 60
    while job_client.get(f"/api/jobs/{job_id}").json()["state"] not in ("progress", *TERMINAL):
        assert time.monotonic() < deadline, job_stack.log()[-3000:]
        time.sleep(0.1)
    assert job_client.post(f"/api/jobs/{job_id}/cancel").status_code == 401
    response = job_client.post(f"/api/jobs/{job_id}/cancel", headers=auth)
    assert response.status_code == 202 and response.json() == {"job_id": job_id, "cancel_requested": True}
    seen = watch(job_client, job_id, timeout=60)
    assert seen[-1]["state"] == "cancelled" and seen[-1]["progress"] < 1.0


def test_retrain_defaults_the_parent_to_the_current_adapter(client, standard, topics, auth):
    body = client.post("/api/jobs/retrain", headers=auth).json()
    assert body["kwargs"] == {"parent_id": "a2", "parent_path": "/data/adapters/a2"}
    explicit = client.post("/api/jobs/retrain", headers=auth, json={"overrides": {"parent_id": None}}).json()
    assert explicit["kwargs"] == {"parent_id": None}
    status = client.get(f"/api/jobs/{body['job_id']}").json()
    assert status["state"] == "queued" and status["kind"] == "api_test_retrain"  # no worker in this test


def test_jobs_listing_filters_and_refusals(client, standard, auth):
    items = client.get("/api/jobs").json()["items"]
    assert [job["id"] for job in items] == ["job-running", "job-done"]
    assert [job["id"] for job in client.get("/api/jobs", params={"state": "succeeded"}).json()["items"]] == ["job-done"]
    assert client.get("/api/jobs", params={"state": "sleeping"}).status_code == 422
    assert client.get("/api/jobs/no-such-job").status_code == 404
    assert client.post("/api/jobs/no-such-job/cancel", headers=auth).status_code == 404
    assert client.post("/api/jobs/retrain", headers=auth, json={"overrides": [1, 2]}).status_code == 422
    assert client.post("/api/jobs/retrain", headers=auth, json={"steps": 3}).status_code == 422  # not under overrides
    assert (
        client.post(
            "/api/jobs/retrain",
            headers=auth,
            content=b"{not json",
        ).status_code
        == 422
    )
