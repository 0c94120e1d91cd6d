"""Keeping the memory current: the accepted-samples index from the topics, the reference indexes from the
families, and a Celery job that rebuilds any index.

    python -m workers.verifier.index_updater
        consume loop.candidates and loop.verdicts (group ``index-updater``): every accepted sample's problem goes
        into ``accepted-<family>``; a sample whose verdict turns to rejected leaves it
    python -m services.jobs submit rebuild_index --kwargs '{"name": "accepted-grounded"}'
        rebuild one index as a job (queue ``default``): ``accepted-*`` from the SQL store's accepted samples,
        ``eval-*`` and ``corpus-*`` from the family; then a new structure generation (exact or IVF by size,
        IVF retrained) that every verifier picks up at its next refresh

A verdict does not carry the problem text, and the two topics are not ordered with respect to each other, so the
updater joins them in ``<data_dir>/indexes/pending.sqlite``: whichever of a sample's candidate and verdict comes
second completes it. Everything it does is an upsert keyed by sample id, durable before the offsets are
committed, so a re-delivered batch changes nothing.
"""

from __future__ import annotations

import argparse
import logging
import sqlite3
import sys
from collections import defaultdict
from collections.abc import Iterable
from pathlib import Path

from schemas.messages import CONSUMER_GROUPS, Candidate, Verdict
from services.bus.consumer import Event, EventConsumer
from services.jobs import JobContext, job_task
from services.settings import Settings, get_settings
from services.sqlite_wal import enable_wal
from tasks import get_family
from tasks.registry import policy_family_options
from workers.verifier.memory import Memory, RetrievalSettings, index_name
from workers.verifier.retrieval_checks import sync_reference_indexes
from workers.verifier.vector_index import SQLITE_TIMEOUT_S

log = logging.getLogger(__name__)

DEFAULT_GROUP_ID = "index-updater"


# -- the accepted samples, from the topics ------------------------------------------------------------------------


class PendingSamples:
    """The join of candidates and verdicts: what arrived first waits here for the other half."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(path, timeout=SQLITE_TIMEOUT_S, isolation_level=None, check_same_thread=False)
        enable_wal(self._db, SQLITE_TIMEOUT_S)
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS pending (sample_id TEXT PRIMARY KEY, family TEXT, text TEXT, "
            "accepted INTEGER, label TEXT)"
        )

    def candidate(self, sample_id: str, family: str, text: str) -> tuple[bool | None, str | None]:
        """Record a candidate's text; returns the verdict that was waiting for it (accepted, label), if any."""
        self._db.execute(
            "INSERT INTO pending (sample_id, family, text) VALUES (?, ?, ?) ON CONFLICT(sample_id) DO UPDATE SET "
            "family = excluded.family, text = excluded.text", (sample_id, family, text),
        )
        accepted, label = self._db.execute(
            "SELECT accepted, label FROM pending WHERE sample_id = ?", (sample_id,)
        ).fetchone()
        return (None if accepted is None else bool(accepted)), label

    def verdict(self, sample_id: str, family: str, accepted: bool, label: str | None) -> str | None:
        """Record a verdict; returns the candidate text that was waiting for it, if any."""
        self._db.execute(
            "INSERT INTO pending (sample_id, family, accepted, label) VALUES (?, ?, ?, ?) ON CONFLICT(sample_id) "
            "DO UPDATE SET accepted = excluded.accepted, label = excluded.label",
            (sample_id, family, int(accepted), label),
        )
        row = self._db.execute("SELECT text FROM pending WHERE sample_id = ?", (sample_id,)).fetchone()
        return row[0] if row else None

    def done(self, sample_ids: Iterable[str]) -> None:
        """Forget samples whose effect on the index is durable."""
        self._db.executemany("DELETE FROM pending WHERE sample_id = ?", [(s,) for s in sample_ids])

    def __len__(self) -> int:
        return int(self._db.execute("SELECT COUNT(*) FROM pending").fetchone()[0])

    def close(self) -> None:
        self._db.close()


class AcceptedIndexer:
    """What the updater does with a batch, without the bus: accepted samples in, flipped ones out."""

    def __init__(self, memory: Memory, pending: PendingSamples | None = None) -> None:
        self.memory = memory
        self.pending = pending or PendingSamples(memory.root / "pending.sqlite")
        self.added = 0
        self.removed = 0

    def apply(self, messages: Iterable[Candidate | Verdict]) -> None:
        adds: dict[str, dict[str, tuple[str, str | None]]] = defaultdict(dict)  # index -> sample id -> (text, label)
        removals: dict[str, set[str]] = defaultdict(set)
        completed: set[str] = set()  # both halves met: nothing left to wait for

        def decide(name: str, sample_id: str, accepted: bool, text: str | None, label: str | None) -> None:
            if accepted:
                assert text is not None  # an accepted sample's text is known: the Candidate's problem
                removals[name].discard(sample_id)
                adds[name][sample_id] = (text, label)
            else:  # rejected (or flipped to rejected): removing an absent id is a no-op
                adds[name].pop(sample_id, None)
                removals[name].add(sample_id)

        for message in messages:
            name = index_name("accepted", message.family)
            if isinstance(message, Candidate):
                accepted, label = self.pending.candidate(message.sample_id, message.family, message.problem)
                if accepted is not None:
                    decide(name, message.sample_id, accepted, message.problem, label)
                    completed.add(message.sample_id)
            elif isinstance(message, Verdict):
                text = self.pending.verdict(message.sample_id, message.family, message.accepted, message.label)
                if text is not None or not message.accepted:
                    decide(name, message.sample_id, message.accepted, text, message.label)
                if text is not None:
                    completed.add(message.sample_id)
        for name, items in adds.items():
            ids = list(items)
            self.added += self.memory.add(name, ids, [items[i][0] for i in ids],
                                          [{"label": items[i][1]} for i in ids])
        for name, gone in removals.items():
            self.removed += self.memory.remove(name, gone)
        self.pending.done(completed)  # only now is the effect durable

    def close(self) -> None:
        self.pending.close()


class IndexUpdater(EventConsumer[Candidate | Verdict]):
    """Consumes ``loop.candidates`` and ``loop.verdicts`` and keeps ``accepted-<family>`` current."""

    def __init__(self, settings: Settings, *, memory: Memory | None = None, group_id: str = DEFAULT_GROUP_ID,
                 **options) -> None:
        super().__init__(settings, topics=list(CONSUMER_GROUPS[DEFAULT_GROUP_ID]), group_id=group_id, **options)
        self.indexer = AcceptedIndexer(memory or Memory.open(settings))

    def handle(self, events: list[Event[Candidate | Verdict]]) -> None:
        self.indexer.apply(event.message for event in events)

    def close(self) -> None:
        try:
            super().close()
        finally:
            self.indexer.close()


# -- rebuilding, as a job -------------------------------------------------------------------------------------------


def accepted_from_store(settings: Settings, family: str) -> tuple[list[str], list[str], list[dict]]:
    """The accepted samples of a family in the SQL store: ids, problems, labels."""
    from sqlmodel import Session, select

    from schemas.tables import Sample
    from services.store.db import open_store

    engine = open_store(url=settings.store_url)
    try:
        with Session(engine) as session:
            rows = session.exec(
                select(Sample.id, Sample.problem, Sample.label)
                .where(Sample.family == family, Sample.status == "accepted")
                .order_by(Sample.id)
            ).all()
    finally:
        engine.dispose()
    return [r[0] for r in rows], [r[1] for r in rows], [{"label": r[2]} for r in rows]


def rebuild(memory: Memory, name: str, settings: Settings, progress=lambda fraction, message: None) -> dict:
    """Resynchronise index ``name`` with its source, then build a new generation of its structure."""
    kind, _, family_name = name.partition("-")
    if kind not in ("accepted", "eval", "corpus") or not family_name:
        raise ValueError(f"index name {name!r} is not accepted-<family>, eval-<family> or corpus-<family>")
    progress(0.05, f"reading the source of {name}")
    if kind == "accepted":
        ids, texts, meta = accepted_from_store(settings, family_name)
        progress(0.2, f"embedding {len(ids)} accepted samples")
        changed, removed = memory.sync(name, ids, texts, meta)
    else:
        options = policy_family_options(settings.policy_file).get(family_name, {})
        report = sync_reference_indexes(memory, get_family(family_name, **options))
        changed, removed = report.get(kind, (0, 0))
    progress(0.7, f"{changed} items changed, {removed} removed; building the index")
    info = memory.index(name).rebuild()
    return {"index": name, "items": info.size, "kind": info.kind, "nlist": info.nlist, "nprobe": info.nprobe,
            "estimated_recall": round(info.estimated_recall, 4), "changed": changed, "removed": removed,
            "generation": memory.index(name).generation}


@job_task(queue="default", progress_interval_s=1.0)
def rebuild_index(ctx: JobContext, *, name: str) -> dict:
    """Rebuild the memory index ``name`` (``accepted-<family>``, ``eval-<family>``, ``corpus-<family>``)."""
    memory = Memory.open(ctx.settings)
    try:
        return rebuild(memory, name, ctx.settings, ctx.progress)
    finally:
        memory.close()


# -- running ----------------------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m workers.verifier.index_updater", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--group-id", default=DEFAULT_GROUP_ID)
    parser.add_argument("--rebuild", metavar="NAME", help="rebuild one index in this process instead, and exit")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    settings = get_settings()
    if args.rebuild:
        print(rebuild(Memory.open(settings, RetrievalSettings()), args.rebuild, settings))
        return 0
    updater = IndexUpdater(settings, group_id=args.group_id)
    updater.install_signal_handlers()
    updater.run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
