"""Building FAISS structures for the verifier's memory: exact search while small, IVF past a size, with ``nprobe``
tuned at build time to a recall target against exact search (also what ``bench/retrieval.py`` measures)."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Any, Literal

import faiss
import numpy as np
from pydantic import BaseModel, Field


class IndexConfig(BaseModel):
    """How an index is structured and kept; the defaults are measured in docs/retrieval.md."""

    exact_max: int = Field(
        default=20_000, ge=1, description="Below this many items search is exact; at or above it, IVF."
    )
    target_recall: float = Field(
        default=0.95, gt=0.0, le=1.0, description="recall@10 against exact search that the IVF nprobe is tuned to."
    )
    lists_per_sqrt: float = Field(
        default=2.0, gt=0.0, description="IVF lists = this * sqrt(items), rounded to a power of two."
    )
    train_per_list: int = Field(default=40, ge=39, description="Training vectors per IVF list (k-means sample size).")
    train_iterations: int = Field(default=10, ge=1, description="k-means iterations when an IVF index is trained.")
    retrain_growth: float = Field(
        default=4.0, gt=1.0, description="An IVF index is retrained once it holds this many times its training size."
    )
    snapshot_min_changes: int = Field(default=1000, ge=1, description="Changes before a writer saves a snapshot...")
    snapshot_fraction: float = Field(default=0.1, ge=0.0, description="...and at least this share of the items.")
    keep_snapshots: int = Field(default=2, ge=1, description="Snapshots kept on disk; older ones are deleted.")
    use_gpu: bool = Field(default=True, description="Search on a GPU copy where faiss sees a GPU.")
    seed: int = 1234


@dataclass(frozen=True)
class BuildInfo:
    kind: Literal["exact", "ivf"]
    size: int
    nlist: int = 0
    nprobe: int = 0
    estimated_recall: float = 1.0
    seconds: float = 0.0


def nlist_for(size: int, config: IndexConfig) -> int:
    """``lists_per_sqrt * sqrt(size)`` as a power of two, small enough that every list gets its training points."""
    target = 2 ** round(math.log2(max(config.lists_per_sqrt * math.sqrt(max(size, 1)), 1)))
    while target > 1 and target * config.train_per_list > size:
        target //= 2
    return int(max(1, target))


def build_faiss_index(vectors: np.ndarray, keys: np.ndarray, config: IndexConfig) -> tuple[faiss.Index, BuildInfo]:
    """The index the memory uses for these vectors: exact below ``exact_max`` items, else IVF with tuned nprobe."""
    started = time.perf_counter()
    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    keys = np.ascontiguousarray(keys, dtype=np.int64)
    size, dim = vectors.shape
    if size < config.exact_max:
        exact = faiss.IndexIDMap2(faiss.IndexFlatIP(dim))
        if size:
            exact.add_with_ids(vectors, keys)
        return exact, BuildInfo("exact", size, seconds=time.perf_counter() - started)
    nlist = nlist_for(size, config)
    rng = np.random.default_rng(config.seed)
    train = vectors[rng.choice(size, size=min(size, nlist * config.train_per_list), replace=False)]
    index = faiss.IndexIVFFlat(faiss.IndexFlatIP(dim), dim, nlist, faiss.METRIC_INNER_PRODUCT)
    index.cp.niter = config.train_iterations
    index.cp.seed = config.seed
    index.cp.max_points_per_centroid = config.train_per_list  # the sample above is the training set, as drawn
    index.train(train)
    index.add_with_ids(vectors, keys)
    nprobe, recall = tune_nprobe(index, vectors, keys, config)
    index.nprobe = nprobe
    return index, BuildInfo("ivf", size, nlist, nprobe, recall, time.perf_counter() - started)




def tune_nprobe(
    index: faiss.IndexIVF, vectors: np.ndarray, keys: np.ndarray, config: IndexConfig, queries: int = 500
) -> tuple[int, float]:
    """The smallest nprobe (1, 2, 3, 4, 6, 8, 12 ...) whose estimated recall@10 against exact search reaches
    ``target_recall`` plus a margin of 0.01 for the estimate's own error.

    Leave-one-out: the queries are stored vectors, and each one's own entry is dropped from both answers, so a
    query is a fresh point from the distribution of the items (the memory is queried with texts like its own).
    """
    rng = np.random.default_rng(config.seed + 1)
    chosen = rng.choice(len(vectors), size=min(queries, len(vectors)), replace=False)
    probes = np.ascontiguousarray(vectors[chosen])
    _, rows = faiss.knn(probes, vectors, 11, metric=faiss.METRIC_INNER_PRODUCT)  # brute force, no copy
    truth = _drop_self(keys[rows], keys[chosen])
    goal = min(1.0, config.target_recall + 0.01)
    for nprobe in _nprobe_steps(index.nlist):
        index.nprobe = nprobe
        _, found = index.search(probes, 11)
        recall = recall_at(_drop_self(found, keys[chosen]), truth)
        if recall >= goal:
            break
    return nprobe, recall


def _nprobe_steps(nlist: int) -> list[int]:
    steps, power = [], 1
    while power < nlist:
        steps += [power, power * 3 // 2] if power >= 2 else [power]
        power *= 2
    return sorted({s for s in steps if s < nlist} | {nlist})


def _drop_self(found: np.ndarray, own: np.ndarray) -> np.ndarray:
    """Each row without the query's own key, cut to 10."""
    return np.stack([row[row != key][:10] if (row == key).any() else row[:10] for row, key in zip(found, own)])


def recall_at(found: np.ndarray, truth: np.ndarray) -> float:
    """Mean share of each row of ``truth`` found in the same row of ``found`` (recall@k, k = truth's width)."""
    hits = sum(len(set(f.tolist()) & set(t.tolist())) for f, t in zip(found, truth))
    return hits / truth.size if truth.size else 1.0


def gpu_count() -> int:
    return faiss.get_num_gpus() if hasattr(faiss, "StandardGpuResources") else 0


def to_search_device(index: faiss.Index, use_gpu: bool) -> tuple[faiss.Index, Any]:
    """A GPU copy of ``index`` (and the resources that must outlive it) where faiss sees a GPU, else the index."""
    if use_gpu and gpu_count() > 0:
        resources = faiss.StandardGpuResources()
        return faiss.index_cpu_to_gpu(resources, 0, index), resources
    return index, None


def normalized(vectors: np.ndarray) -> np.ndarray:
    vectors = np.ascontiguousarray(np.atleast_2d(vectors), dtype=np.float32)
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return vectors / np.where(norms > 0, norms, 1.0)
