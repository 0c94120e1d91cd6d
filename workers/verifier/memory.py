"""The verifier's memory: FAISS indexes with stable ids, kept in the data directory, shared by several processes.

Three kinds of index, one per family each (``index_name(kind, family)``): ``accepted`` (the samples the loop
accepted: novelty), ``eval`` (the held-out evaluation items: decontamination) and ``corpus`` (the reference
passages of a grounded family: evidence).

Each index is a ``workers.verifier.vector_index.VectorIndex`` (the SQLite truth, the FAISS view, snapshots); this
module names them, embeds texts for them, and reads the retrieval settings.
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from workers.verifier.faiss_build import IndexConfig
from workers.verifier.vector_index import Hit, VectorIndex

log = logging.getLogger(__name__)

IndexKind = Literal["accepted", "eval", "corpus"]


def index_name(kind: IndexKind, family: str) -> str:
    """``accepted-grounded``, ``eval-arithmetic``, ``corpus-grounded`` ..."""
    if not re.fullmatch(r"[A-Za-z0-9_.]+", family):
        raise ValueError(f"family name {family!r} cannot name an index folder")
    return f"{kind}-{family}"


# -- the memory: named indexes over texts -----------------------------------------------------------------------


class RetrievalSettings(BaseSettings):
    """Retrieval settings from ``LOOP_RETRIEVAL_*`` variables; the thresholds are measured in docs/retrieval.md."""

    model_config = SettingsConfigDict(env_prefix="LOOP_RETRIEVAL_", extra="ignore")

    embedding_model: Path | None = Field(
        default=None, description="A local sentence-transformers directory; default: the bundled all-MiniLM-L6-v2."
    )
    embedding_batch_size: int = Field(default=64, ge=1, description="Texts per forward pass of the embedding model.")
    novelty_threshold: float = Field(
        default=0.90, gt=0.0, le=1.0,
        description="A problem whose cosine to an accepted one of its family reaches this is a near-duplicate.",
    )
    contamination_threshold: float = Field(
        default=0.80, gt=0.0, le=1.0,
        description="A problem whose cosine to an evaluation item reaches this is contaminated (kept lower than "
        "novelty: leaking the evaluation set costs more than losing a sample).",
    )
    relevance_threshold: float = Field(
        default=0.27, gt=0.0, le=1.0,
        description="A corpus sentence about the question's subject answers it when the cosine of their relation "
        "views (names and numbers masked) reaches this.",
    )
    evidence_k: int = Field(default=5, ge=1, le=100, description="Passages retrieved per question.")
    exact_max: int = Field(default=20_000, ge=1, description="Index size from which search is approximate (IVF).")
    target_recall: float = Field(default=0.95, gt=0.0, le=1.0, description="recall@10 the IVF nprobe is tuned to.")
    use_gpu: bool = Field(default=True, description="Search on a GPU where faiss sees one.")

    def index_config(self) -> IndexConfig:
        return IndexConfig(exact_max=self.exact_max, target_recall=self.target_recall, use_gpu=self.use_gpu)


class Memory:
    """Named indexes of texts under one folder, embedded with one model.

        memory = Memory.open()                                   # <data_dir>/indexes, the bundled model
        memory.add("accepted-grounded", [sample_id], ["where does Kavo live"], [{"label": "Tesa"}])
        memory.search("accepted-grounded", ["which town does Kavo live in"], k=3)   # [[Hit(id, score, ...)]]
        memory.refresh()                                         # see the other processes' writes
    """

    def __init__(self, root: Path, embedder: Any = None, config: IndexConfig | None = None) -> None:
        self.root = Path(root)
        self.config = config or IndexConfig()
        self._embedder = embedder
        self._indexes: dict[str, VectorIndex] = {}
        self._lock = threading.Lock()

    @classmethod
    def open(cls, settings: Any = None, retrieval: RetrievalSettings | None = None, embedder: Any = None) -> "Memory":
        """The memory of ``settings.data_dir`` (default: the process settings) with the configured embedder."""
        from services.settings import get_settings

        settings = settings or get_settings()
        retrieval = retrieval or RetrievalSettings()
        if embedder is None:
            from workers.verifier.embeddings import get_embedder

            model = str(retrieval.embedding_model) if retrieval.embedding_model else None
            embedder = _LazyEmbedder(lambda: get_embedder(model, retrieval.embedding_batch_size))
        return cls(Path(settings.data_dir) / "indexes", embedder, retrieval.index_config())

    @property
    def embedder(self):
        if self._embedder is None:
            from workers.verifier.embeddings import get_embedder

            self._embedder = get_embedder()
        return self._embedder

    def index(self, name: str) -> VectorIndex:
        """The index ``name`` (created empty on first use), opened once per memory."""
        if not re.fullmatch(r"[A-Za-z0-9_.-]+", name):
            raise ValueError(f"index name {name!r} must be letters, digits, '.', '_' or '-'")
        with self._lock:
            if name not in self._indexes:
                self._indexes[name] = VectorIndex(
                    self.root / name, dim=self.embedder.dim, model=self.embedder.name, config=self.config
                )
            return self._indexes[name]

    def names(self) -> list[str]:
        """Every index on disk (not only the ones opened)."""
        if not self.root.is_dir():
            return []
        return sorted(p.name for p in self.root.iterdir() if (p / "items.sqlite").exists())

    def add(self, name: str, ids: Sequence[str], texts: Sequence[str],
            meta: Sequence[dict[str, Any] | None] | None = None) -> int:
        """Embed ``texts`` and upsert them under ``ids``; returns how many items changed."""
        if not ids:
            return 0
        return self.index(name).add(ids, self.embedder.encode(list(texts)), texts, meta)

    def remove(self, name: str, ids: Iterable[str]) -> int:
        return self.index(name).remove(ids)

    def search(self, name: str, texts: Sequence[str], k: int = 10) -> list[list[Hit]]:
        if not texts:
            return []
        return self.index(name).search(self.embedder.encode(list(texts)), k)

    def sync(self, name: str, ids: Sequence[str], texts: Sequence[str],
             meta: Sequence[dict[str, Any] | None] | None = None) -> tuple[int, int]:
        """Make the index hold exactly these items: embed and upsert the new or changed ones (an unchanged text
        and metadata is not embedded again), remove every other id; returns (changed, removed)."""
        index = self.index(name)
        meta = list(meta) if meta is not None else [None] * len(ids)
        stored = index.items()
        fresh = [i for i, item_id in enumerate(ids) if stored.get(item_id) != (texts[i], meta[i] or {})]
        changed = self.add(name, [ids[i] for i in fresh], [texts[i] for i in fresh], [meta[i] for i in fresh])
        removed = index.remove(set(stored) - set(ids))
        return changed, removed

    def refresh(self) -> dict[str, int]:
        """Refresh every opened index; returns the changes applied to each."""
        with self._lock:
            opened = dict(self._indexes)
        return {name: index.refresh() for name, index in opened.items()}

    def save(self) -> None:
        for index in list(self._indexes.values()):
            index.save()

    def close(self) -> None:
        with self._lock:
            for index in self._indexes.values():
                index.close()
            self._indexes.clear()


class _LazyEmbedder:
    """Loads the embedding model on first use, so that opening a memory costs nothing until it embeds."""

    def __init__(self, load) -> None:
        self._load = load
        self._embedder = None

    def _get(self):
        if self._embedder is None:
            self._embedder = self._load()
        return self._embedder

    @property
    def name(self) -> str:
        return self._get().name

    @property
    def dim(self) -> int:
        return self._get().dim

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        return self._get().encode(texts)
