"""One FAISS index with stable ids, kept in a folder and shared by several processes.

On disk, one folder per index under ``<data_dir>/indexes/<name>/``::

    items.sqlite        the truth: every item's id, vector, text and metadata, and a change counter (seq)
    g000002-s000000001234.faiss
                        a snapshot of the FAISS index at change 1234, structure generation 2
    write.lock          held while a snapshot is written (an advisory lock: snapshots are never written twice)

Several processes share an index safely. Writes go to SQLite in one transaction each (WAL mode, one writer at a
time), and each changed row gets the next ``seq``. A process's FAISS index is a *view*: the newest snapshot plus
every change after it; ``refresh()`` applies the changes made since the view's ``seq`` (one indexed query when
nothing changed), and reloads a snapshot only when the structure changed (a new generation: exact became IVF, or
the IVF was retrained). Snapshots are written to a temporary file and renamed into place, so a reader never sees
a partial file, and a crash leaves the previous snapshot and the SQLite truth intact.

Ids are the callers' strings (sample ids, passage ids); FAISS sees a 63-bit key derived from the id's SHA-256,
the same in every process and across rebuilds.

One module, because the SQLite truth, the snapshots and the view are one consistency protocol: a change to how
snapshots are named or refreshed is a change to all three.

Exact search (``IndexFlatIP``) while an index holds fewer than ``exact_max`` items; past that an IVF index
(``IndexIVFFlat``, spherical k-means), trained on the items, with ``nprobe`` tuned at build time to reach
``target_recall`` at 10 against exact search on a sample of the items. The switch size and the targets are
measured in docs/retrieval.md (``python bench/retrieval.py --crossover``). Vectors are stored at unit length, so
inner product is cosine similarity, which is the score every search reports. Where ``faiss.get_num_gpus() > 0``
searches run on a GPU copy of the index (``StandardGpuResources`` + ``index_cpu_to_gpu``), re-copied after
changes; the CPU index stays the one that is written and saved.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import logging
import os
import re
import sqlite3
import threading
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import faiss
import numpy as np

from services.sqlite_wal import enable_wal
from workers.verifier.faiss_build import (
    BuildInfo,
    IndexConfig,
    build_faiss_index,
    gpu_count,
    normalized,
    to_search_device,
)

log = logging.getLogger(__name__)

SNAPSHOT = re.compile(r"^g(\d{6})-s(\d{12})\.faiss$")
SQLITE_TIMEOUT_S = 30.0


def key_for(item_id: str) -> int:
    """The FAISS key of an id: 63 bits of its SHA-256, stable everywhere (collisions are refused on insert)."""
    return int.from_bytes(hashlib.sha256(item_id.encode()).digest()[:8], "big") & (2**63 - 1)


@dataclass(frozen=True)
class Hit:
    """One search result: the item's id, its cosine similarity to the query, and what was stored with it."""

    id: str
    score: float
    text: str | None = None
    meta: dict[str, Any] = field(default_factory=dict)


# -- one index: SQLite truth, FAISS view, snapshots ------------------------------------------------------------


@dataclass(frozen=True)
class _Snapshot:
    path: Path
    generation: int
    seq: int


class VectorIndex:
    """One named index in ``directory``: add, remove, search, refresh, save, rebuild. Safe across processes."""

    def __init__(self, directory: Path, *, dim: int, model: str = "", config: IndexConfig | None = None) -> None:
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.name = self.directory.name
        self.dim = dim
        self.config = config or IndexConfig()
        self._lock = threading.RLock()
        self._db = sqlite3.connect(
            self.directory / "items.sqlite", timeout=SQLITE_TIMEOUT_S, isolation_level=None, check_same_thread=False
        )
        enable_wal(self._db, SQLITE_TIMEOUT_S)
        self._db.execute("PRAGMA synchronous=FULL")  # a write is on disk before the caller commits its offsets
        self._init_schema(model)
        self._index: faiss.Index | None = None
        self._search_copy: tuple[faiss.Index, Any] | None = None
        self._seq = 0
        self._generation = -1
        self._snapshot_seq = 0
        self.info = BuildInfo("exact", 0)

    # -- schema ---------------------------------------------------------------------------------------------
    def _init_schema(self, model: str) -> None:
        with self._write():
            self._db.execute(
                "CREATE TABLE IF NOT EXISTS items (key INTEGER PRIMARY KEY, id TEXT NOT NULL UNIQUE, "
                "seq INTEGER NOT NULL, created_seq INTEGER NOT NULL, deleted INTEGER NOT NULL DEFAULT 0, "
                "digest TEXT NOT NULL, vector BLOB NOT NULL, text TEXT, meta TEXT)"
            )
            self._db.execute("CREATE INDEX IF NOT EXISTS items_seq ON items(seq)")
            self._db.execute("CREATE TABLE IF NOT EXISTS info (name TEXT PRIMARY KEY, value TEXT NOT NULL)")
            for name, value in (("dim", str(self.dim)), ("model", model)):
                self._db.execute("INSERT OR IGNORE INTO info VALUES (?, ?)", (name, value))
            stored = dict(self._db.execute("SELECT name, value FROM info WHERE name IN ('dim', 'model')").fetchall())
        if int(stored["dim"]) != self.dim or (model and stored["model"] and stored["model"] != model):
            raise ValueError(
                f"index {self.name} holds {stored['dim']}-dimensional vectors of model {stored['model']!r}, not "
                f"{self.dim}-dimensional vectors of {model!r}; rebuild it (or use another data directory)"
            )

    @contextlib.contextmanager
    def _write(self) -> Iterator[None]:
        """One SQLite write transaction; ``BEGIN IMMEDIATE`` takes the write lock first, so seqs never interleave."""
        self._db.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")

    def _next_seq(self) -> int:
        return int(self._db.execute("SELECT COALESCE(MAX(seq), 0) FROM items").fetchone()[0]) + 1

    # -- writes ---------------------------------------------------------------------------------------------
    def add(
        self,
        ids: Sequence[str],
        vectors: np.ndarray,
        texts: Sequence[str | None] | None = None,
        meta: Sequence[dict[str, Any] | None] | None = None,
    ) -> int:
        """Insert or update items by id (unchanged items are skipped); returns how many changed."""
        vectors = normalized(vectors)
        if len(ids) != len(vectors) or vectors.shape[1] != self.dim:
            raise ValueError(f"{len(ids)} ids need {len(ids)} vectors of dimension {self.dim}, got {vectors.shape}")
        texts = list(texts) if texts is not None else [None] * len(ids)
        meta = list(meta) if meta is not None else [None] * len(ids)
        rows: dict[int, tuple] = {}
        for item_id, vector, text, extra in zip(ids, vectors, texts, meta, strict=True):
            blob = vector.tobytes()
            meta_json = json.dumps(extra, sort_keys=True) if extra else None
            digest = hashlib.sha256(blob + (text or "").encode() + (meta_json or "").encode()).hexdigest()[:32]
            rows[key_for(item_id)] = (item_id, digest, blob, text, meta_json)  # the last of a repeated id wins
        changed = 0
        with self._lock, self._write():
            existing = self._existing(list(rows))
            seq = self._next_seq()
            for key, (item_id, digest, blob, text, meta_json) in rows.items():
                old = existing.get(key)
                if old is not None and old[0] != item_id:
                    raise ValueError(f"ids {old[0]!r} and {item_id!r} share the key {key}; rename one")
                if old is not None and old[1] == digest and not old[2]:
                    continue
                self._db.execute(
                    "INSERT INTO items (key, id, seq, created_seq, deleted, digest, vector, text, meta) "
                    "VALUES (?, ?, ?, ?, 0, ?, ?, ?, ?) ON CONFLICT(key) DO UPDATE SET seq = excluded.seq, "
                    "deleted = 0, digest = excluded.digest, vector = excluded.vector, text = excluded.text, "
                    "meta = excluded.meta",
                    (key, item_id, seq, seq, digest, blob, text, meta_json),
                )
                seq += 1
                changed += 1
        if changed:
            self._after_write()
        return changed

    def remove(self, ids: Iterable[str]) -> int:
        """Delete items by id (unknown ids are ignored); returns how many were removed."""
        keys = list({key_for(item_id) for item_id in ids})
        removed = 0
        with self._lock, self._write():
            live = [key for key, row in self._existing(keys).items() if not row[2]]
            seq = self._next_seq()
            for key in live:
                self._db.execute(
                    "UPDATE items SET deleted = 1, seq = ?, vector = x'', text = NULL, meta = NULL WHERE key = ?",
                    (seq, key),
                )
                seq += 1
                removed += 1
        if removed:
            self._after_write()
        return removed

    def _existing(self, keys: list[int]) -> dict[int, tuple[str, str, int]]:
        found: dict[int, tuple[str, str, int]] = {}
        for chunk in _chunks(keys, 500):
            marks = ",".join("?" * len(chunk))
            for key, item_id, digest, deleted in self._db.execute(
                f"SELECT key, id, digest, deleted FROM items WHERE key IN ({marks})", chunk
            ):
                found[key] = (item_id, digest, deleted)
        return found

    # -- the view -------------------------------------------------------------------------------------------
    def refresh(self) -> int:
        """Bring this process's view up to date with every process's writes; returns the changes applied."""
        with self._lock:
            if self._index is None:
                self._open_view()
            newest = self._newest_snapshot()
            if newest is not None and newest.generation > self._generation:
                self._load_snapshot(newest)  # restructured elsewhere (exact -> IVF, or retrained)
            return self._apply_changes()

    def _view(self) -> faiss.Index:
        """This view's index, which ``refresh`` opens."""
        assert self._index is not None, "the view is not open: refresh() opens it"
        return self._index

    def _apply_changes(self) -> int:
        top = int(self._db.execute("SELECT COALESCE(MAX(seq), 0) FROM items").fetchone()[0])
        if top <= self._seq:
            return 0
        rows = self._db.execute(
            "SELECT key, created_seq, deleted, vector, seq FROM items WHERE seq > ? ORDER BY seq", (self._seq,)
        ).fetchall()
        if not rows:
            return 0
        stale = np.array([key for key, created, *_ in rows if created <= self._seq], dtype=np.int64)
        if len(stale):
            self._view().remove_ids(faiss.IDSelectorBatch(stale))
        live = [(key, vector) for key, _created, deleted, vector, _seq in rows if not deleted]
        if live:
            keys = np.array([key for key, _ in live], dtype=np.int64)
            vectors = np.frombuffer(b"".join(v for _, v in live), dtype=np.float32).reshape(len(live), self.dim)
            self._view().add_with_ids(vectors, keys)
        self._seq = max(row[4] for row in rows)
        self._search_copy = None
        return len(rows)

    def _open_view(self) -> None:
        newest = self._newest_snapshot()
        if newest is not None and self._load_snapshot(newest):
            return
        # No snapshot yet: build one from the truth, once for all processes (the others wait and load it).
        with self._file_lock(blocking=True):
            newest = self._newest_snapshot()
            if newest is not None and self._load_snapshot(newest):
                return
            self._build_view(generation=0, save=True)

    def _build_view(self, *, generation: int, save: bool) -> None:
        with self._read():
            seq = int(self._db.execute("SELECT COALESCE(MAX(seq), 0) FROM items").fetchone()[0])
            rows = self._db.execute("SELECT key, vector FROM items WHERE deleted = 0").fetchall()
        keys = np.array([key for key, _ in rows], dtype=np.int64)
        vectors = np.frombuffer(b"".join(v for _, v in rows), dtype=np.float32).reshape(len(rows), self.dim)
        index, info = build_faiss_index(vectors, keys, self.config)
        log.info("index %s: built %s over %d items in %.1fs (nlist %d, nprobe %d, estimated recall@10 %.3f)",
                 self.name, info.kind, info.size, info.seconds, info.nlist, info.nprobe, info.estimated_recall)
        self._index, self._seq, self._generation, self.info = index, seq, generation, info
        self._search_copy = None
        if save:
            self._save_view()

    def _load_snapshot(self, snapshot: _Snapshot) -> bool:
        try:
            index = faiss.read_index(str(snapshot.path))
        except (RuntimeError, OSError):
            return False  # deleted by a newer snapshot's cleanup meanwhile: the caller takes the next newest
        if index.d != self.dim:
            raise ValueError(f"snapshot {snapshot.path} holds {index.d}-dimensional vectors, not {self.dim}")
        self._index, self._seq, self._generation = index, snapshot.seq, snapshot.generation
        self._snapshot_seq = snapshot.seq
        self._search_copy = None
        stored = self._db.execute("SELECT value FROM info WHERE name = ?", (f"generation.{snapshot.generation}",))
        row = stored.fetchone()
        self.info = BuildInfo(**json.loads(row[0])) if row else BuildInfo(
            "ivf" if isinstance(index, faiss.IndexIVF) else "exact", index.ntotal
        )
        return True

    @contextlib.contextmanager
    def _read(self) -> Iterator[None]:
        self._db.execute("BEGIN")  # one read transaction: the rows and the seq belong to one moment
        try:
            yield
        finally:
            self._db.execute("COMMIT")

    # -- snapshots and restructuring ------------------------------------------------------------------------
    def _after_write(self) -> None:
        """Apply the write to this view, then restructure or snapshot when due (in this process, if free to)."""
        with self._lock:
            self.refresh()
            size = self._view().ntotal
            if self._needs_restructure(size):
                with self._file_lock(blocking=False) as locked:
                    if locked:
                        self._restructure()
                return
            newest = self._newest_snapshot()
            if newest is not None and newest.generation == self._generation:
                self._snapshot_seq = max(self._snapshot_seq, newest.seq)  # another process may have saved since
            due = max(self.config.snapshot_min_changes, int(self.config.snapshot_fraction * size))
            if self._seq - self._snapshot_seq >= due:
                with self._file_lock(blocking=False) as locked:
                    if locked:
                        self._save_view()

    def _needs_restructure(self, size: int) -> bool:
        if self.info.kind == "exact":
            return size >= self.config.exact_max
        return size < self.config.exact_max // 2 or size >= self.config.retrain_growth * max(self.info.size, 1)

    def _restructure(self) -> None:
        """Under the file lock: build a new generation from the truth and save it (unless another process did)."""
        newest = self._newest_snapshot()
        if newest is not None and newest.generation > self._generation:
            self._load_snapshot(newest)
            self._apply_changes()
            if not self._needs_restructure(self._view().ntotal):
                return
        generation = max(self._generation, newest.generation if newest else 0) + 1
        self._build_view(generation=generation, save=True)

    def _save_view(self) -> Path:
        """Write this view as a snapshot (temporary file, fsync, rename), record its build, drop old snapshots."""
        path = self.directory / f"g{self._generation:06d}-s{self._seq:012d}.faiss"
        if not path.exists():
            tmp = self.directory / f".tmp-{os.getpid()}-{threading.get_ident()}.faiss"
            faiss.write_index(self._view(), str(tmp))
            with open(tmp, "rb") as handle:
                os.fsync(handle.fileno())
            os.replace(tmp, path)
            _fsync_dir(self.directory)
        with self._write():
            self._db.execute(
                "INSERT OR REPLACE INTO info VALUES (?, ?)",
                (f"generation.{self._generation}", json.dumps(self.info.__dict__)),
            )
        self._snapshot_seq = self._seq
        for old in self._snapshots()[self.config.keep_snapshots:]:
            with contextlib.suppress(FileNotFoundError):
                old.path.unlink()
        return path

    def _snapshots(self) -> list[_Snapshot]:
        found = []
        for path in self.directory.iterdir():
            match = SNAPSHOT.match(path.name)
            if match:
                found.append(_Snapshot(path, int(match.group(1)), int(match.group(2))))
        return sorted(found, key=lambda s: (s.generation, s.seq), reverse=True)

    def _newest_snapshot(self) -> _Snapshot | None:
        snapshots = self._snapshots()
        return snapshots[0] if snapshots else None

    @contextlib.contextmanager
    def _file_lock(self, *, blocking: bool) -> Iterator[bool]:
        with open(self.directory / "write.lock", "a+") as handle:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | (0 if blocking else fcntl.LOCK_NB))
            except BlockingIOError:
                yield False
                return
            try:
                yield True
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    def save(self) -> Path:
        """Snapshot this view now (after a refresh); the next process to open the index starts from it."""
        with self._lock:
            self.refresh()
            with self._file_lock(blocking=True):
                return self._save_view()

    def rebuild(self) -> BuildInfo:
        """Build a new generation from the truth (exact or IVF by size, IVF retrained) and save it."""
        with self._lock, self._file_lock(blocking=True):
            if self._index is None:
                self._open_view()
            newest = self._newest_snapshot()
            generation = max(self._generation, newest.generation if newest else 0) + 1
            self._build_view(generation=generation, save=True)
            return self.info

    # -- reads ----------------------------------------------------------------------------------------------
    def search(self, vectors: np.ndarray, k: int = 10) -> list[list[Hit]]:
        """The ``k`` nearest items of each query vector in this view, best first (call ``refresh`` to see
        other processes' writes)."""
        queries = normalized(vectors)
        with self._lock:
            if self._index is None:
                self.refresh()
            size = self._view().ntotal
            if size == 0 or k < 1:
                return [[] for _ in range(len(queries))]
            index = self._search_index()
            scores, keys = index.search(queries, min(k, size))
            found = self._describe({int(key) for key in keys.ravel() if key >= 0})
        return [
            [Hit(found[key][0], round(float(score), 6), found[key][1], found[key][2])
             for key, score in zip(row_keys.tolist(), row_scores) if key in found]
            for row_keys, row_scores in zip(keys, scores)
        ]

    def _search_index(self) -> faiss.Index:
        if not (self.config.use_gpu and gpu_count() > 0):
            return self._view()
        if self._search_copy is None:
            self._search_copy = to_search_device(self._view(), True)
        return self._search_copy[0]

    def _describe(self, keys: set[int]) -> dict[int, tuple[str, str | None, dict[str, Any]]]:
        found = {}
        for chunk in _chunks(sorted(keys), 500):
            marks = ",".join("?" * len(chunk))
            for key, item_id, text, meta in self._db.execute(
                f"SELECT key, id, text, meta FROM items WHERE key IN ({marks})", chunk
            ):
                found[key] = (item_id, text, json.loads(meta) if meta else {})
        return found

    def __len__(self) -> int:
        """Items in this view."""
        with self._lock:
            if self._index is None:
                self.refresh()
            return int(self._view().ntotal)

    def __contains__(self, item_id: str) -> bool:
        """Whether the id is live in the truth (not only in this view)."""
        with self._lock:
            row = self._db.execute("SELECT deleted FROM items WHERE key = ?", (key_for(item_id),)).fetchone()
        return row is not None and not row[0]

    def ids(self) -> list[str]:
        """Every live id in the truth."""
        with self._lock:
            return [row[0] for row in self._db.execute("SELECT id FROM items WHERE deleted = 0 ORDER BY key")]

    def items(self) -> dict[str, tuple[str | None, dict[str, Any]]]:
        """Every live id in the truth with its text and metadata."""
        with self._lock:
            rows = self._db.execute("SELECT id, text, meta FROM items WHERE deleted = 0").fetchall()
        return {item_id: (text, json.loads(meta) if meta else {}) for item_id, text, meta in rows}

    @property
    def seq(self) -> int:
        """The last change this view includes."""
        return self._seq

    @property
    def generation(self) -> int:
        return self._generation

    def close(self) -> None:
        with self._lock:
            self._db.close()
            self._index = None
            self._search_copy = None


def _chunks(items: list, size: int) -> Iterator[list]:
    for start in range(0, len(items), size):
        yield items[start:start + size]


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
