"""Snapshot exports (JSONL and Parquet, one row per sample) and the import of a seed dataset from JSONL.

Both export formats hold the same rows (ordered by sample id) and the same fields, and load with
``datasets.load_dataset("json" | "parquet", data_files=...)``:

    id, snapshot_id, family, difficulty, round, problem, label, true_answer, answers (list of strings),
    status, adapter_id, request_id, checks (list of {name, passed, score, reason}),
    evidence (list of {id, score, text}), meta (the family's problem data, as a JSON string: its keys vary by
    family, and a column of one type is what both formats and ``datasets`` agree on), generated_at, verdict_at
    (ISO 8601 strings in UTC with microseconds, e.g. 2025-03-01T12:00:02.000000+00:00)

The import of a seed dataset (the other direction) is ``services.api.seeds``.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, select
from sqlmodel import Session, col

from schemas.tables import Sample, SnapshotMember
from services.api.errors import NotFound
from services.api.queries.snapshots import resolve_snapshot_id

FORMATS = ("jsonl", "parquet")
EXPORT_FIELDS = (
    "id",
    "snapshot_id",
    "family",
    "difficulty",
    "round",
    "problem",
    "label",
    "true_answer",
    "answers",
    "status",
    "adapter_id",
    "request_id",
    "checks",
    "evidence",
    "meta",
    "generated_at",
    "verdict_at",
)


def _iso(moment: datetime | None) -> str | None:
    if moment is None:
        return None
    moment = moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)
    # Always with microseconds: a JSON reader (pyarrow's, so datasets') turns whole-second ISO strings into
    # timestamps and leaves these as strings, which is what the Parquet file holds too.
    return moment.isoformat(timespec="microseconds")


def _float(value: Any) -> float | None:
    return None if value is None else float(value)


def sample_record(sample: Sample, *, snapshot_id: str) -> dict[str, Any]:
    """One exported row: every field present, in ``EXPORT_FIELDS`` order, with the same types in every row."""
    checks = [
        {
            "name": str(c.get("name", "")),
            "passed": bool(c.get("passed", False)),
            "score": _float(c.get("score")),
            "reason": str(c.get("reason", "")),
        }
        for c in sample.checks or []
        if isinstance(c, dict)
    ]
    evidence = [
        {"id": str(e.get("id", "")), "score": _float(e.get("score")), "text": e.get("text")}
        for e in sample.evidence or []
        if isinstance(e, dict)
    ]
    return {
        "id": sample.id,
        "snapshot_id": snapshot_id,
        "family": sample.family,
        "difficulty": int(sample.difficulty),
        "round": int(sample.round),
        "problem": sample.problem,
        "label": sample.label,
        "true_answer": sample.true_answer,
        "answers": [str(a) for a in sample.answers or []],
        "status": sample.status,
        "adapter_id": sample.adapter_id,
        "request_id": sample.request_id,
        "checks": checks,
        "evidence": evidence,
        "meta": json.dumps(sample.meta or {}, sort_keys=True, ensure_ascii=False),
        "generated_at": _iso(sample.generated_at),
        "verdict_at": _iso(sample.verdict_at),
    }


def snapshot_records(engine: Engine, *, snapshot_id: str, batch_size: int = 1000) -> Iterator[dict[str, Any]]:
    """The snapshot's samples as export rows, by sample id, read ``batch_size`` at a time."""
    after = ""
    while True:
        with Session(engine) as session:
            rows = session.exec(  # type: ignore[call-overload]  # a Core select: exec runs it and returns rows
                select(Sample)
                .join(SnapshotMember, col(SnapshotMember.sample_id) == Sample.id)
                .where(col(SnapshotMember.snapshot_id) == snapshot_id, col(Sample.id) > after)
                .order_by(col(Sample.id))
                .limit(batch_size)
            ).all()
            records = [sample_record(sample, snapshot_id=snapshot_id) for (sample,) in rows]
        yield from records
        if len(records) < batch_size:
            return
        after = records[-1]["id"]


def write_jsonl(records: Iterable[dict[str, Any]], path: Path) -> int:
    count = 0
    with open(path, "w", encoding="utf-8") as out:
        for record in records:
            out.write(json.dumps(record, ensure_ascii=False) + "\n")
            count += 1
    return count


def arrow_schema():
    import pyarrow as pa

    check = pa.struct([("name", pa.string()), ("passed", pa.bool_()), ("score", pa.float64()), ("reason", pa.string())])
    evidence = pa.struct([("id", pa.string()), ("score", pa.float64()), ("text", pa.string())])
    types = {
        "difficulty": pa.int64(),
        "round": pa.int64(),
        "answers": pa.list_(pa.string()),
        "checks": pa.list_(check),
        "evidence": pa.list_(evidence),
    }
    return pa.schema([(name, types.get(name, pa.string())) for name in EXPORT_FIELDS])


def write_parquet(records: Iterable[dict[str, Any]], path: Path, *, batch_size: int = 1000) -> int:
    import pyarrow as pa
    import pyarrow.parquet as pq

    schema = arrow_schema()
    count = 0
    with pq.ParquetWriter(path, schema) as writer:
        batch: list[dict[str, Any]] = []
        for record in records:
            batch.append(record)
            if len(batch) >= batch_size:
                writer.write_table(pa.Table.from_pylist(batch, schema=schema))
                count, batch = count + len(batch), []
        if batch or count == 0:
            writer.write_table(pa.Table.from_pylist(batch, schema=schema))
            count += len(batch)
    return count


@dataclass(frozen=True)
class ExportResult:
    snapshot_id: str
    rows: int
    files: dict[str, Path] = field(default_factory=dict)


def export_snapshot(
    engine: Engine, *, snapshot_id: str, out_dir: Path, formats: Iterable[str] = FORMATS, stem: str | None = None
) -> ExportResult:
    """Write ``<out_dir>/<snapshot id>.<format>`` for each format; ``snapshot_id`` may be ``latest``."""
    formats = list(dict.fromkeys(formats))
    unknown = [f for f in formats if f not in FORMATS]
    if unknown or not formats:
        raise ValueError(f"unknown export format(s) {', '.join(unknown) or '(none)'}; choose from {', '.join(FORMATS)}")
    with Session(engine) as session:
        resolved = resolve_snapshot_id(session, snapshot_id=snapshot_id)
    if resolved is None:
        raise NotFound(f"snapshot {snapshot_id!r} not found")
    out_dir.mkdir(parents=True, exist_ok=True)
    files, rows = {}, 0
    for fmt in formats:
        path = out_dir / f"{stem or resolved}.{fmt}"
        writer = write_jsonl if fmt == "jsonl" else write_parquet
        rows = writer(snapshot_records(engine, snapshot_id=resolved), path)
        files[fmt] = path
    return ExportResult(snapshot_id=resolved, rows=rows, files=files)
