"""Exports and imports: a snapshot written as JSONL and Parquet (by the CLI and by the API) loads with
datasets.load_dataset with the same rows and fields; a seed dataset imports as accepted samples through Kafka."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from services.api.export import EXPORT_FIELDS, export_snapshot
from services.api.seeds import SeedError, read_seed_jsonl

pytestmark = pytest.mark.kafka
REPO = Path(__file__).resolve().parents[3]


@pytest.fixture
def load(tmp_path, monkeypatch):
    """``load(kind, path)``: the rows ``datasets.load_dataset`` reads, and its column names (offline, cache in tmp)."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    import datasets

    def load_rows(kind: str, path: Path) -> tuple[list[dict], list[str]]:
        dataset = datasets.load_dataset(kind, data_files=str(path), split="train", cache_dir=str(tmp_path / "hf-cache"))
        return dataset.to_list(), list(dataset.column_names)

    return load_rows


def expected_row_of_sample_2(snapshot_id: str, sample_id: str) -> dict:
    return {
        "id": sample_id,
        "snapshot_id": snapshot_id,
        "family": "arithmetic",
        "difficulty": 3,
        "round": 0,
        "problem": "2+2",
        "label": "4",
        "true_answer": "4",
        "answers": ["4", "5", "4"],
        "status": "accepted",
        "adapter_id": None,
        "request_id": "r0",
        "checks": [
            {"name": "format", "passed": True, "score": 1.0, "reason": "digits only"},
            {"name": "self_consistency", "passed": True, "score": 0.67, "reason": "2 of 3 answers agree"},
        ],
        "evidence": [],
        "meta": '{"a": 2, "b": 2}',
        "generated_at": "2025-03-01T12:00:02.000000+00:00",
        "verdict_at": "2025-03-01T12:00:02.500000+00:00",
    }


def test_export_round_trip_through_datasets(engine, standard, tmp_path, load):
    result = export_snapshot(engine, snapshot_id="s1", out_dir=tmp_path / "out")
    assert result.rows == 3 and set(result.files) == {"jsonl", "parquet"}
    from_jsonl, jsonl_fields = load("json", result.files["jsonl"])
    from_parquet, parquet_fields = load("parquet", result.files["parquet"])
    assert jsonl_fields == parquet_fields == list(EXPORT_FIELDS)
    assert from_jsonl == from_parquet  # the same rows, in the same order, field by field
    assert [row["id"] for row in from_jsonl] == sorted(standard.s1)
    row = next(r for r in from_jsonl if r["id"] == standard.arithmetic[2])
    assert row == expected_row_of_sample_2("s1", standard.arithmetic[2])
    grounded = next(r for r in from_parquet if r["family"] == "grounded")
    assert grounded["evidence"] == [{"id": "p1", "score": 0.91, "text": "Kavo lives in Tesa, by the <b>river</b>."}]
    assert grounded["adapter_id"] == "a1" and json.loads(grounded["meta"]) == {}


def test_an_empty_snapshot_exports_empty_files_that_still_load(engine, store_data, tmp_path, load):
    store_data.snapshot("empty", [], created=10)
    result = export_snapshot(engine, snapshot_id="empty", out_dir=tmp_path)
    assert result.rows == 0 and result.files["jsonl"].read_text() == ""
    import pyarrow.parquet as pq

    assert pq.read_table(result.files["parquet"]).column_names == list(EXPORT_FIELDS)


def test_export_refuses_unknown_snapshots_and_formats(engine, standard, tmp_path):
    from services.api.errors import NotFound

    with pytest.raises(NotFound):
        export_snapshot(engine, snapshot_id="nope", out_dir=tmp_path)
    with pytest.raises(ValueError, match="csv"):
        export_snapshot(engine, snapshot_id="s1", out_dir=tmp_path, formats=["csv"])


def test_api_download_is_the_same_dataset(client, engine, standard, tmp_path, load):
    for fmt, kind in (("jsonl", "json"), ("parquet", "parquet")):
        response = client.get("/api/snapshots/latest/export", params={"format": fmt})
        assert response.status_code == 200, response.text
        assert response.headers["content-disposition"] == f'attachment; filename="s2.{fmt}"'
        path = tmp_path / f"download.{fmt}"
        path.write_bytes(response.content)
        rows, fields = load(kind, path)
        assert fields == list(EXPORT_FIELDS) and [r["id"] for r in rows] == sorted(standard.s2)
        assert next(r for r in rows if r["id"] == standard.arithmetic[2]) == expected_row_of_sample_2(
            "s2", standard.arithmetic[2]
        )
    assert client.get("/api/snapshots/nope/export").status_code == 404
    assert client.get("/api/snapshots/s1/export", params={"format": "csv"}).status_code == 422


def cli(settings, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess:
    env = {
        **os.environ,
        "LOOP_DATA_DIR": str(settings.data_dir),
        "LOOP_DATABASE_URL": settings.store_url,
        "LOOP_KAFKA_BOOTSTRAP": settings.kafka_bootstrap,
        "LOOP_TOPIC_PREFIX": settings.topic_prefix,
    }
    return subprocess.run(
        [sys.executable, "-m", "services.api.cli", *args],
        cwd=REPO,
        env=env,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_cli_export_writes_both_formats(api_settings, standard, tmp_path, load):
    done = cli(api_settings, "export", "latest", "--out", str(tmp_path / "cli"))
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == [
        f"jsonl\t{tmp_path / 'cli' / 's2.jsonl'}",
        f"parquet\t{tmp_path / 'cli' / 's2.parquet'}",
    ]
    assert "snapshot s2, 3 rows" in done.stderr
    assert load("json", tmp_path / "cli" / "s2.jsonl")[0] == load("parquet", tmp_path / "cli" / "s2.parquet")[0]
    missing = cli(api_settings, "export", "nope")
    assert missing.returncode == 1 and "snapshot 'nope' not found" in missing.stderr


SEEDS = [
    {"family": "arithmetic", "problem": "123+456=", "label": "579", "difficulty": 3, "true_answer": "579"},
    {"family": "arithmetic", "problem": "1+2=", "label": "3"},
    {"family": "grounded", "problem": "who rules Tesa?", "label": "Queen Ilo", "meta": {"passage": "p7"}},
]


def test_cli_import_publishes_accepted_seed_samples(api_settings, store_writer, client, tmp_path):
    seeds = tmp_path / "seeds.jsonl"
    seeds.write_text("\n".join(json.dumps(row) for row in SEEDS) + "\n\n")
    done = cli(api_settings, "import", str(seeds), "--wait", "60")
    assert done.returncode == 0, done.stderr
    assert "published 3 samples from seeds.jsonl" in done.stdout and "all samples are in the store" in done.stdout
    rows = client.get("/api/samples", params={"status": "accepted", "sort": "difficulty"}).json()["items"]
    assert len(rows) == 3
    first = client.get(f"/api/samples/{rows[-1]['id']}").json()
    assert (first["problem"], first["label"], first["difficulty"], first["adapter_id"]) == ("123+456=", "579", 3, None)
    assert first["checks"] == [
        {"name": "seed", "passed": True, "score": 1.0, "reason": "seed: imported from seeds.jsonl"}
    ]
    assert first["answers"] == [{"index": 0, "text": "579", "chosen": True, "correct": True}]
    grounded = client.get("/api/samples", params={"family": "grounded"}).json()["items"][0]
    assert client.get(f"/api/samples/{grounded['id']}").json()["meta"] == {"passage": "p7"}


def test_cli_import_refuses_a_bad_file_whole(api_settings, tmp_path):
    seeds = tmp_path / "bad.jsonl"
    seeds.write_text(json.dumps(SEEDS[0]) + "\n" + json.dumps({"family": "arithmetic", "problem": "9+9="}) + "\n")
    done = cli(api_settings, "import", str(seeds))
    assert done.returncode == 1 and "line 2" in done.stderr and "label" in done.stderr
    assert cli(api_settings, "import", str(tmp_path / "missing.jsonl")).returncode == 1


def test_seed_rows_are_validated():
    with pytest.raises(SeedError, match="line 1"):
        read_seed_jsonl(["not json"])
    with pytest.raises(SeedError, match="line 2"):
        read_seed_jsonl(
            ['{"family": "a", "problem": "p", "label": "l"}', '{"family": "", "problem": "p", "label": "l"}']
        )
    exported = {"id": "x", "family": "a", "problem": "p", "label": "l", "meta": '{"k": 1}', "status": "accepted"}
    assert read_seed_jsonl([json.dumps(exported)])[0].meta == {"k": 1}  # an export's rows import (meta is JSON text)


def test_api_import(client, store_writer, wait_until, auth):
    response = client.post("/api/samples/import", headers=auth, json={"source": "api-test", "rows": SEEDS[:2]})
    assert response.status_code == 202, response.text
    body = response.json()
    assert body["imported"] == 2 and len(body["sample_ids"]) == 2
    wait_until(lambda: client.get("/api/samples", params={"status": "accepted"}).json()["total"] == 2, 120, "the import")
    bad = client.post("/api/samples/import", headers=auth, json={"rows": [{**SEEDS[0], "difficulty": "3"}]})
    assert bad.status_code == 422 and "rows.0.difficulty: Input should be a valid integer" in bad.json()["detail"]
    assert client.post("/api/samples/import", headers=auth, json={"rows": []}).status_code == 422
