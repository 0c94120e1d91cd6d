"""The FAISS memory: save and reload, removal, the exact -> IVF switch, and two processes sharing one index."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from workers.verifier.faiss_build import IndexConfig, recall_at, to_search_device
from workers.verifier.vector_index import VectorIndex, key_for

REPO = Path(__file__).resolve().parents[3]
DIM = 32


def clustered(n: int, seed: int, dim: int = DIM, components: int = 16) -> np.ndarray:
    """Unit vectors around a few fixed centres, like embeddings (uniform noise makes ANN recall meaningless)."""
    centres = np.random.default_rng(99).normal(size=(components, dim))
    rng = np.random.default_rng(seed)
    x = centres[rng.integers(components, size=n)] + rng.normal(scale=0.4, size=(n, dim))
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def results(index: VectorIndex, queries: np.ndarray, k: int = 5) -> list[list[tuple[str, float]]]:
    return [[(hit.id, round(hit.score, 5)) for hit in hits] for hits in index.search(queries, k)]


@pytest.mark.parametrize("exact_max", [10_000, 200], ids=["exact", "ivf"])
def test_an_index_survives_save_and_reload_with_the_same_results(tmp_path, exact_max):
    config = IndexConfig(exact_max=exact_max)
    index = VectorIndex(tmp_path / "accepted-x", dim=DIM, model="m", config=config)
    vectors = clustered(500, seed=1)
    index.add([f"s{i}" for i in range(500)], vectors, [f"text {i}" for i in range(500)], [{"i": i} for i in range(500)])
    assert index.info.kind == ("exact" if exact_max > 500 else "ivf")
    queries = clustered(20, seed=2)
    before = results(index, queries)
    snapshot = index.save()
    index.close()

    reopened = VectorIndex(tmp_path / "accepted-x", dim=DIM, model="m", config=config)
    assert results(reopened, queries) == before
    assert len(reopened) == 500 and reopened.generation == int(snapshot.name[1:7])
    hit = reopened.search(vectors[7:8], 1)[0][0]
    assert (hit.id, hit.text, hit.meta, hit.score) == ("s7", "text 7", {"i": 7}, pytest.approx(1.0, abs=1e-5))


def test_removed_items_are_never_found_again_and_can_come_back(tmp_path):
    index = VectorIndex(tmp_path / "eval-x", dim=DIM)
    vectors = clustered(100, seed=3)
    ids = [f"e{i}" for i in range(100)]
    index.add(ids, vectors)
    gone = ids[:10]

    assert index.remove(gone + ["never-added"]) == 10
    assert index.remove(gone) == 0  # removing twice is a no-op
    assert len(index) == 90 and "e0" not in index and "e10" in index
    found = {hit.id for hits in index.search(vectors[:10], 20) for hit in hits}
    assert not found & set(gone)
    index.close()

    reopened = VectorIndex(tmp_path / "eval-x", dim=DIM)
    assert len(reopened) == 90 and not {h.id for hs in reopened.search(vectors[:10], 20) for h in hs} & set(gone)
    assert reopened.add(["e0"], vectors[:1]) == 1 and reopened.search(vectors[:1], 1)[0][0].id == "e0"
    assert reopened.add(["e0"], vectors[:1]) == 0  # an unchanged item is not written again


def test_past_exact_max_the_index_turns_ivf_with_tuned_recall(tmp_path):
    config = IndexConfig(exact_max=1000, target_recall=0.9)
    index = VectorIndex(tmp_path / "corpus-x", dim=DIM, config=config)
    vectors = clustered(3000, seed=4)
    index.add([f"c{i}" for i in range(900)], vectors[:900])
    assert index.info.kind == "exact" and index.generation == 0
    index.add([f"c{i}" for i in range(900, 3000)], vectors[900:])
    assert index.info.kind == "ivf" and index.generation == 1 and index.info.nprobe < index.info.nlist

    queries = clustered(100, seed=5)
    exact = np.argsort(-(queries @ vectors.T), axis=1)[:, :10]
    found = np.array([[int(hit.id[1:]) for hit in hits] for hits in index.search(queries, 10)])
    assert recall_at(found, exact) >= 0.85


def test_ids_map_to_stable_keys_and_a_different_model_is_refused(tmp_path):
    digest = hashlib.sha256(b"abc").digest()
    assert key_for("abc") == int.from_bytes(digest[:8], "big") & (2**63 - 1)  # the same in every process
    assert 0 <= key_for("anything") < 2**63
    VectorIndex(tmp_path / "accepted-x", dim=DIM, model="model-a").close()
    with pytest.raises(ValueError, match="rebuild it"):
        VectorIndex(tmp_path / "accepted-x", dim=DIM * 2, model="model-a")
    with pytest.raises(ValueError, match="model-a"):
        VectorIndex(tmp_path / "accepted-x", dim=DIM, model="model-b")


def test_without_a_gpu_the_search_index_is_the_cpu_index(tmp_path):
    index = VectorIndex(tmp_path / "accepted-x", dim=DIM)
    index.add(["a"], clustered(1, seed=6))
    device_index, resources = to_search_device(index._index, use_gpu=True)
    assert device_index is index._index and resources is None


# -- two processes ------------------------------------------------------------------------------------------------

WRITER = textwrap.dedent(
    """
    import json, sys, time
    from pathlib import Path
    import numpy as np
    from workers.verifier.faiss_build import IndexConfig
    from workers.verifier.vector_index import VectorIndex

    name, directory, out = sys.argv[1], Path(sys.argv[2]), Path(sys.argv[3])
    config = IndexConfig(exact_max=300, snapshot_min_changes=50)
    index = VectorIndex(directory / "accepted-shared", dim=32, model="m", config=config)
    rng = np.random.default_rng(0 if name == "a" else 1)
    centres = np.random.default_rng(99).normal(size=(16, 32))
    def batch(n):
        x = centres[rng.integers(16, size=n)] + rng.normal(scale=0.4, size=(n, 32))
        return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)
    for start in range(0, 400, 20):
        ids = [f"{name}-{i}" for i in range(start, start + 20)]
        index.add(ids, batch(20), ids)
        index.remove(ids[::5])                      # every fifth of its own, right after adding it
        index.refresh()                             # and sees the other's writes meanwhile
    (directory / f"{name}.done").write_text("")
    other = "b" if name == "a" else "a"
    while not (directory / f"{other}.done").exists():
        time.sleep(0.05)
    index.refresh()
    queries = np.random.default_rng(7).normal(size=(25, 32)).astype(np.float32)
    found = [[(h.id, round(h.score, 5)) for h in hits] for hits in index.search(queries, 8)]
    out.write_text(json.dumps({"size": len(index), "generation": index.generation, "kind": index.info.kind,
                               "results": found}))
    """
)


def test_two_processes_sharing_an_index_stay_consistent(tmp_path):
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    procs = [
        subprocess.Popen([sys.executable, "-c", WRITER, name, str(tmp_path), str(tmp_path / f"{name}.json")],
                         cwd=REPO, env=env, stderr=subprocess.PIPE, text=True)
        for name in ("a", "b")
    ]
    for proc in procs:
        _, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, err[-3000:]
    a, b = (json.loads((tmp_path / f"{name}.json").read_text()) for name in ("a", "b"))

    # 2 x 400 added, a fifth of each removed: nothing lost, nothing doubled, the same answers in both processes.
    assert a["size"] == b["size"] == 640
    assert a["kind"] == b["kind"] == "ivf" and a["generation"] == b["generation"] >= 1  # switched while shared
    assert a["results"] == b["results"]
    # A third process opening the files afterwards sees the same index.
    fresh = VectorIndex(tmp_path / "accepted-shared", dim=DIM, model="m", config=IndexConfig(exact_max=300))
    assert sorted(fresh.ids()) == sorted(f"{n}-{i}" for n in "ab" for i in range(400) if i % 5)
    queries = np.random.default_rng(7).normal(size=(25, DIM)).astype(np.float32)
    assert [[list(pair) for pair in row] for row in results(fresh, queries, 8)] == a["results"]
