"""Retrieval benchmark: the memory's FAISS index against a NumPy brute-force baseline, side by side in one run.

    nice -n 10 python bench/retrieval.py
        10k, 100k and 1M vectors of dimension 384: build time, queries per second of both, speedup, recall@10;
        ends with ``retrieval: <S>x faster than brute force at 1M, recall@10 <R>``
    python bench/retrieval.py --sizes 10000 100000 --queries 200
        a quicker run (the last size is the one the final line reports)
    nice -n 10 python bench/retrieval.py --crossover --queries 200 --threads 1
        exact (flat) against IVF search, one query at a time on one thread, by index size: where ``exact_max``
        comes from
    nice -n 10 python bench/retrieval.py --calibrate
        the cosine distributions behind the thresholds of the retrieval checks, on the grounded family's world
        (loads the bundled all-MiniLM-L6-v2)

The vectors are synthetic but clustered, like sentence embeddings and unlike uniform noise (on which every
neighbour is equally far and ANN recall means nothing): a Gaussian mixture of ``--components`` components in a
32-dimensional latent space, mapped to 384 dimensions by a fixed random projection, plus isotropic noise, then
normalized. Queries are fresh draws from the same distribution. The FAISS side is exactly what the memory builds
for that many items (``build_faiss_index``: exact below ``exact_max``, else IVF with nprobe tuned at build time
to recall@10 0.95 on the items themselves); the exact top 10 of the baseline is the reference for recall.
Where faiss sees a GPU, the GPU copy of the same index is measured too (the code falls back to the CPU).
One script, because its modes share the synthetic vectors and the index builder, and a benchmark is run whole.
"""

from __future__ import annotations

import argparse
import math
import os
import shlex
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from workers.verifier.faiss_build import (  # noqa: E402
    IndexConfig,
    build_faiss_index,
    gpu_count,
    recall_at,
    to_search_device,
)

DIM = 384


# -- data --------------------------------------------------------------------------------------------------------


class ClusteredVectors:
    """Unit vectors from a Gaussian mixture in a low-dimensional latent space, randomly projected up."""

    def __init__(self, dim: int = DIM, *, latent: int = 32, components: int = 2048, seed: int = 0) -> None:
        rng = np.random.default_rng(seed)
        self.dim, self.latent = dim, latent
        self.centers = rng.normal(size=(components, latent)).astype(np.float32)
        self.weights = rng.lognormal(sigma=1.0, size=components)
        self.weights /= self.weights.sum()
        self.projection = (rng.normal(size=(latent, dim)) / math.sqrt(latent)).astype(np.float32)

    def sample(self, n: int, seed: int, chunk: int = 100_000) -> np.ndarray:
        rng = np.random.default_rng(seed)
        out = np.empty((n, self.dim), dtype=np.float32)
        for start in range(0, n, chunk):
            m = min(chunk, n - start)
            component = rng.choice(len(self.centers), size=m, p=self.weights)
            z = self.centers[component] + rng.normal(scale=0.5, size=(m, self.latent)).astype(np.float32)
            x = z @ self.projection + rng.normal(scale=0.1, size=(m, self.dim)).astype(np.float32)
            out[start:start + m] = x / np.linalg.norm(x, axis=1, keepdims=True)
        return out


# -- the two searches ----------------------------------------------------------------------------------------------


def brute_force(base: np.ndarray, queries: np.ndarray, k: int = 10, batch: int = 64) -> np.ndarray:
    """Exact top-k by cosine with NumPy: one matrix product per batch of queries, then a partial sort."""
    out = np.empty((len(queries), k), dtype=np.int64)
    for start in range(0, len(queries), batch):
        scores = queries[start:start + batch] @ base.T
        top = np.argpartition(-scores, k, axis=1)[:, :k]
        order = np.argsort(-np.take_along_axis(scores, top, axis=1), axis=1)
        out[start:start + batch] = np.take_along_axis(top, order, axis=1)
    return out


def timed(fn, *args):
    started = time.perf_counter()
    result = fn(*args)
    return result, time.perf_counter() - started


def measure(size: int, queries: int, data: ClusteredVectors, config: IndexConfig) -> dict:
    base = data.sample(size, seed=1)
    probe = data.sample(queries, seed=2)
    keys = np.arange(size, dtype=np.int64)
    (index, info), build_s = timed(build_faiss_index, base, keys, config)
    truth, brute_s = timed(brute_force, base, probe)
    (distances, found), faiss_s = timed(index.search, probe, 10)
    row = {
        "size": size, "kind": info.kind, "nlist": info.nlist, "nprobe": info.nprobe, "build_s": build_s,
        "brute_qps": queries / brute_s, "faiss_qps": queries / faiss_s, "speedup": brute_s / faiss_s,
        "recall": recall_at(found, truth), "top1_cos": float(np.mean(distances[:, 0])),
    }
    if gpu_count() > 0:
        gpu_index, _resources = to_search_device(index, True)
        gpu_index.search(probe[:8], 10)  # warm-up: the first search allocates
        (_, gpu_found), gpu_s = timed(gpu_index.search, probe, 10)
        row.update(gpu_qps=queries / gpu_s, gpu_speedup=brute_s / gpu_s, gpu_recall=recall_at(gpu_found, truth))
    del base, index
    return row


def report(args: argparse.Namespace) -> None:
    config = IndexConfig(exact_max=args.exact_max)
    data = ClusteredVectors(components=args.components)
    print(f"# {shlex.join(['python', *sys.argv])}")
    print(f"# {args.queries} queries, dim {DIM}, clustered data ({args.components} components, latent 32), "
          f"exact_max {config.exact_max}, target recall@10 {config.target_recall}, "
          f"{os.cpu_count()} CPUs, {gpu_count()} GPUs")
    header = (f"{'vectors':>9} {'index':>14} {'build s':>8} {'brute q/s':>10} {'faiss q/s':>10} {'speedup':>8} "
              f"{'recall@10':>9}")
    print(header + ("  gpu q/s  gpu speedup  gpu recall" if gpu_count() > 0 else ""))
    last = None
    for size in args.sizes:
        row = measure(size, args.queries, data, config)
        kind = row["kind"] if row["kind"] == "exact" else f"ivf{row['nlist']}/p{row['nprobe']}"
        line = (f"{size:>9} {kind:>14} {row['build_s']:>8.1f} {row['brute_qps']:>10.1f} {row['faiss_qps']:>10.1f} "
                f"{row['speedup']:>7.1f}x {row['recall']:>9.3f}")
        if "gpu_qps" in row:
            line += f" {row['gpu_qps']:>8.0f} {row['gpu_speedup']:>11.1f}x {row['gpu_recall']:>11.3f}"
        print(line, flush=True)
        last = row
    label = _size_label(last["size"])
    print(f"retrieval: {last['speedup']:.1f}x faster than brute force at {label}, recall@10 {last['recall']:.3f}")
    if "gpu_qps" in last:
        print(f"retrieval (gpu): {last['gpu_speedup']:.1f}x faster than brute force at {label}, "
              f"recall@10 {last['gpu_recall']:.3f}")


def _size_label(size: int) -> str:
    if size % 1_000_000 == 0:
        return f"{size // 1_000_000}M"
    if size % 1000 == 0:
        return f"{size // 1000}k"
    return str(size)


# -- where exact search stops paying ---------------------------------------------------------------------------


def crossover(args: argparse.Namespace) -> None:
    """Exact and IVF latency one query at a time (how a verifier searches), and what building the IVF costs."""
    data = ClusteredVectors(components=args.components)
    probe = data.sample(args.queries, seed=2)
    print(f"# {shlex.join(['python', *sys.argv])}")
    print(f"{'vectors':>8} {'exact ms/q':>10} {'ivf ms/q':>9} {'ivf/exact':>9} {'nlist':>6} {'nprobe':>6} "
          f"{'recall@10':>9} {'ivf build s':>11}")
    for size in args.crossover_sizes:
        base = data.sample(size, seed=1)
        keys = np.arange(size, dtype=np.int64)
        exact, _ = build_faiss_index(base, keys, IndexConfig(exact_max=size + 1))
        (ivf, info), build_s = timed(build_faiss_index, base, keys, IndexConfig(exact_max=1))
        rows = {}
        for name, index in (("exact", exact), ("ivf", ivf)):
            started = time.perf_counter()
            found = np.stack([index.search(probe[i:i + 1], 10)[1][0] for i in range(len(probe))])
            rows[name] = ((time.perf_counter() - started) * 1000 / len(probe), found)
        recall = recall_at(rows["ivf"][1], rows["exact"][1])
        print(f"{size:>8} {rows['exact'][0]:>10.3f} {rows['ivf'][0]:>9.3f} {rows['ivf'][0] / rows['exact'][0]:>9.2f} "
              f"{info.nlist:>6} {info.nprobe:>6} {recall:>9.3f} {build_s:>11.2f}", flush=True)
        del base, exact, ivf


# -- the thresholds of the retrieval checks ---------------------------------------------------------------------


def calibrate(args: argparse.Namespace) -> None:
    """Cosine distributions on the grounded family's world, the thresholds they give, and the evidence check's
    decisions end to end (the bundled all-MiniLM-L6-v2; a few thousand short texts)."""
    import random
    import tempfile

    from tasks.grounded import UNKNOWN, GroundedQA
    from tasks.grounded_questions import HELDOUT_TEMPLATES, TRAIN_TEMPLATES
    from tasks.world import RELATIONS, sentence
    from schemas.messages import Candidate
    from workers.verifier.embeddings import get_embedder
    from workers.verifier.memory import Memory, RetrievalSettings
    from workers.verifier.retrieval_checks import relation_view, retrieval_chain

    print(f"# {shlex.join(['python', *sys.argv])}")
    rng = random.Random(args.seed)
    family = GroundedQA()
    world = family.world
    embedder = get_embedder()
    encode = embedder.encode
    templates = {r: TRAIN_TEMPLATES[r] + HELDOUT_TEMPLATES[r] for r in RELATIONS}
    rewordings = (lambda q: f"tell me {q}", lambda q: f"{q} please", lambda q: q[:1].upper() + q[1:] + "?",
                  lambda q: f"{q} now")

    # 1. Near-duplicates: which pairs of questions reach which cosine.
    pairs: dict[str, list[tuple[str, str]]] = {k: [] for k in (
        "rewording (same question, small edit)", "paraphrase (same fact, other phrasing)",
        "same person, other attribute", "same phrasing, other person")}
    names = list(world.names)
    for _ in range(args.pairs):
        e, e2 = rng.sample(names, 2)
        r, r2 = rng.sample(list(RELATIONS), 2)
        t1, t2 = rng.sample(templates[r], 2)
        q = t1.format(e=e)
        keys = list(pairs)
        pairs[keys[0]].append((q, rng.choice(rewordings)(q)))
        pairs[keys[1]].append((q, t2.format(e=e)))
        pairs[keys[2]].append((q, rng.choice(templates[r2]).format(e=e)))
        pairs[keys[3]].append((q, t1.format(e=e2)))
    cosines = {}
    for kind, items in pairs.items():
        a = encode([x for x, _ in items])
        b = encode([y for _, y in items])
        cosines[kind] = np.sum(a * b, axis=1)
    thresholds = [0.70, 0.75, 0.80, 0.85, 0.90, 0.95]
    print(f"\n1. question pairs ({args.pairs} each): share at or above each cosine threshold; percentiles")
    print(f"{'pair':<40}" + "".join(f"{t:>7.2f}" for t in thresholds) + "     p1    p5   p50   p95   p99")
    for kind, values in cosines.items():
        shares = "".join(f"{np.mean(values >= t):>7.3f}" for t in thresholds)
        pct = " ".join(f"{v:5.3f}" for v in np.percentile(values, [1, 5, 50, 95, 99]))
        print(f"{kind:<40}{shares}  {pct}")

    # 2. Relevance: does a sentence about the person answer the question? Relation views, names masked.
    positive, negative = [], []
    for e in rng.sample(names, min(len(names), args.pairs // 4)):
        facts = world.people[e]
        relations = list(facts)
        sentences = encode([relation_view(sentence(e, r, v), e) for r, v in facts.items()])
        asked = [(r, t.format(e=e)) for r in RELATIONS for t in templates[r]]
        views = encode([relation_view(q, e) for _, q in asked]) @ sentences.T
        for (r, _), row in zip(asked, views):
            if r in relations:
                positive.append(row[relations.index(r)])
            others = [row[i] for i, rr in enumerate(relations) if rr != r]
            if others:
                negative.append(max(others))
    positive, negative = np.array(positive), np.array(negative)
    print(f"\n2. relevance of a person's sentences to a question about them (relation views): answering sentence "
          f"(n={len(positive)}) vs the best non-answering one (n={len(negative)})")
    for t in (0.15, 0.20, 0.22, 0.23, 0.24, 0.25, 0.26, 0.27, 0.28, 0.29, 0.30, 0.35):
        print(f"   threshold {t:.2f}: answering sentences below it {np.mean(positive < t):.4f}, "
              f"non-answering at or above it {np.mean(negative >= t):.4f}")
    print(f"   answering min {positive.min():.3f} p1 {np.percentile(positive, 1):.3f}; "
          f"non-answering p99 {np.percentile(negative, 99):.3f} max {negative.max():.3f}")

    # 3. Passage retrieval: is the person's passage among the top k for a question about them?
    passages = encode([p.text for p in world.passages])
    asked = [(e, rng.choice(templates[rng.choice(list(RELATIONS))]).format(e=e)) for e in rng.sample(names, 200)]
    order = np.argsort(-(encode([q for _, q in asked]) @ passages.T), axis=1)
    ids = [p.entity for p in world.passages]
    recall = {k: np.mean([e in {ids[j] for j in row[:k]} for (e, _), row in zip(asked, order)]) for k in (1, 3, 5, 10)}
    print("\n3. the person's passage among the top k passages for a question (200 questions): "
          + ", ".join(f"k={k}: {v:.3f}" for k, v in recall.items()))

    # 4. The evidence check end to end, at the default thresholds.
    settings = RetrievalSettings()
    with tempfile.TemporaryDirectory() as directory:
        memory = Memory(Path(directory), embedder)
        chain = retrieval_chain(family, memory, settings)
        evidence = next(c for c in chain.checks if c.name == "evidence")
        outcomes: dict[str, list[bool]] = {}
        wrong_values = {"home": world.towns, "job": ("baker", "miner", "poet"), "color": ("red", "blue", "gray"),
                        "pet": ("cat", "owl", "frog"), "age": ("19", "44", "80")}
        problems = [p for d in family.difficulties for p in family.make_problems(d, args.pairs // 3, rng)]
        problems += [p for d in family.difficulties for p in family.eval_suite(d)]
        for problem in problems:
            truth = problem.data["answer"]
            wrong = rng.choice([v for v in wrong_values[problem.data["relation"]] if v != truth])
            if problem.data["answerable"]:
                cases = [("answerable: true answer accepted", truth, True),
                         ("answerable: wrong answer rejected", wrong, False),
                         ("answerable: 'I do not know' rejected", UNKNOWN, False)]
            else:
                cases = [("unanswerable: 'I do not know' accepted", UNKNOWN, True),
                         ("unanswerable: an answer rejected", wrong, False)]
            for case, answer, expected in cases:
                candidate = Candidate(sample_id=problem.sample_id, family=family.name, difficulty=problem.difficulty,
                                      problem=problem.canonical, answers=[family.write_answer(problem, answer)])
                reading = chain.read(candidate, problem)
                result, _ = evidence.check_with_evidence(reading)
                outcomes.setdefault(f"{case} ({problem.data['phrasing']})", []).append(result.passed == expected)
        print(f"\n4. the evidence check at relevance {settings.relevance_threshold}, k {settings.evidence_k}: "
              "share of right decisions")
        for case, right in sorted(outcomes.items()):
            print(f"   {case:<58} {np.mean(right):.3f}  (n={len(right)})")
        memory.close()

    started = time.perf_counter()
    for i in range(50):
        embedder.encode([f"what pet does Zz{i} have"])
    print(f"\nembedding one question: {(time.perf_counter() - started) * 1000 / 50:.1f} ms")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    parser.add_argument("--queries", type=int, default=500, help="queries per size (default 500)")
    parser.add_argument("--components", type=int, default=2048, help="mixture components of the synthetic data")
    parser.add_argument("--exact-max", type=int, default=IndexConfig().exact_max,
                        help="index size from which the memory builds IVF (default: the memory's)")
    parser.add_argument("--crossover", action="store_true", help="measure exact vs IVF latency by size instead")
    parser.add_argument("--crossover-sizes", type=int, nargs="+",
                        default=[5_000, 10_000, 20_000, 50_000, 100_000, 200_000])
    parser.add_argument("--calibrate", action="store_true", help="measure the check thresholds instead")
    parser.add_argument("--threads", type=int, default=None,
                        help="CPU threads for FAISS and NumPy (default: all; 1: how a verifier searches on a busy box)")
    parser.add_argument("--pairs", type=int, default=600, help="question pairs per kind in --calibrate")
    parser.add_argument("--seed", type=int, default=0)
    return parser


def limit_threads(threads: int) -> None:
    """FAISS's OpenMP pool, NumPy's BLAS pool (through threadpoolctl, a dependency of sentence-transformers), torch."""
    import faiss

    faiss.omp_set_num_threads(threads)
    try:
        from threadpoolctl import threadpool_limits

        threadpool_limits(threads)
    except ImportError:
        print("# threadpoolctl is not installed: NumPy keeps its own thread count", file=sys.stderr)
    try:
        import torch

        torch.set_num_threads(threads)
    except ImportError:
        pass


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.threads:
        limit_threads(args.threads)
    if args.crossover:
        crossover(args)
    elif args.calibrate:
        calibrate(args)
    else:
        report(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
