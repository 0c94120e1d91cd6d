"""Who may change things: every mutating endpoint needs the bearer token, and none works without a configured token."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from services.api import create_app

pytestmark = pytest.mark.kafka

MUTATING = [
    ("/api/adapters/a3/promote", None),
    ("/api/adapters/rollback", None),
    ("/api/jobs/retrain", {"overrides": {}}),
    ("/api/jobs/job-running/cancel", None),
    ("/api/samples/import", {"rows": [{"family": "arithmetic", "problem": "1+1=", "label": "2"}]}),
]


def test_the_openapi_description_lists_every_endpoint_and_the_bearer_scheme(client):
    spec = client.get("/api/openapi.json").json()
    paths = spec["paths"]
    for path in (
        "/api/samples",
        "/api/samples/{sample_id}",
        "/api/snapshots",
        "/api/snapshots/diff",
        "/api/snapshots/{snapshot_id}/export",
        "/api/adapters",
        "/api/adapters/{adapter_id}/promote",
        "/api/adapters/rollback",
        "/api/jobs/retrain",
        "/api/jobs/{job_id}",
        "/api/jobs/{job_id}/cancel",
        "/api/metrics/accuracy",
        "/api/metrics/throughput",
        "/api/metrics/lag",
        "/api/overview",
        "/api/dead-letters",
        "/api/samples/import",
    ):
        assert path in paths, path
    assert spec["components"]["securitySchemes"]["HTTPBearer"]["scheme"] == "bearer"
    secured = {path for path, ops in paths.items() for op in ops.values() if op.get("security")}
    assert secured == {
        "/api/adapters/{adapter_id}/promote",
        "/api/adapters/rollback",
        "/api/jobs/retrain",
        "/api/jobs/{job_id}/cancel",
        "/api/samples/import",
    }
    assert not any(path.startswith(("/samples", "/static")) or path == "/" for path in paths)  # pages are not API


@pytest.mark.parametrize(("path", "body"), MUTATING)
def test_mutating_endpoints_need_the_token(client, standard, path, body):
    missing = client.post(path, json=body)
    assert missing.status_code == 401 and "Bearer" in missing.json()["detail"]
    assert missing.headers["www-authenticate"] == "Bearer"
    wrong = client.post(path, json=body, headers={"Authorization": "Bearer not-the-token-at-all"})
    assert wrong.status_code == 401 and wrong.json()["detail"] == "wrong bearer token"
    basic = client.post(path, json=body, headers={"Authorization": "Basic dXNlcjpwYXNz"})
    assert basic.status_code == 401


@pytest.mark.parametrize(("path", "body"), MUTATING)
def test_without_a_configured_token_mutating_endpoints_refuse_everyone(api_settings, engine, standard, path, body):
    open_settings = api_settings.model_copy(update={"api_token": None})
    with TestClient(create_app(open_settings, engine=engine)) as client:
        response = client.post(path, json=body, headers={"Authorization": "Bearer anything-at-all-123456"})
        assert response.status_code == 403 and "LOOP_API_TOKEN" in response.json()["detail"]
        assert client.get("/api/adapters").status_code == 200  # reading still works


def test_errors_are_json_with_a_sentence(client):
    response = client.get("/api/samples", params={"limit": "many"})
    assert response.status_code == 422
    body = response.json()
    assert body["detail"].startswith("query.limit: ") and body["errors"][0]["loc"] == ["query", "limit"]
    assert client.get("/api/nothing-here").json() == {"detail": "Not Found"}
    assert client.delete("/api/samples").status_code == 405


def test_health(client):
    assert client.get("/api/health").json() == {"status": "ok", "store": "ok"}


def test_text_that_is_not_unicode_is_refused_not_a_crash(client, standard, topics, auth):
    # JSON may carry lone surrogates ("\udc00"); no database driver and no Kafka message can hold them.
    headers = {**auth, "Content-Type": "application/json"}
    response = client.post("/api/adapters/rollback", headers=headers, content=b'{"to": "\\udc00"}')
    assert response.status_code == 422 and "unicode" in response.json()["detail"]
    response = client.post(
        "/api/samples/import",
        headers=headers,
        content=b'{"rows": [{"family": "a", "problem": "p", "label": "l", "meta": {"k": "\\udc00"}}]}',
    )
    assert response.status_code == 422 and "not valid Unicode" in response.json()["detail"]
    response = client.post("/api/jobs/retrain", headers=headers, content=b"\xff\xfe not json")
    assert response.status_code == 400 and response.json()["detail"] == "There was an error parsing the body"
