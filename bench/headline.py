"""The headline, run after run: independent `loopctl up --minutes 30` runs, each from a fresh bootstrap of the builtin
model with its own seed, and the kept labels' precision in every round of every run.

    python bench/headline.py --runs 3                      # seeds 1, 2, 3; data in data/bench/headline/seed-N
    python bench/headline.py --runs 1 --minutes 10 --seeds 7
    python bench/headline.py --report data/bench/headline   # the summary of finished runs, nothing run
    python bench/headline.py --runs 3 --policy P.json       # the same under another policy

Each run prints its rounds (target, kept, kept labels right, agreeing answers a relative contradicted, mastered) and
what each verifier check caught: among the candidates whose answers agreed (format and self-consistency passed), how
many labels were wrong, and for each metamorphic check the wrong ones it rejected (its catch rate) and the right ones
it rejected (its cost). The truth is read from the store for measurement; it decided nothing. Ends with one line:
    headline: 4 -> <min>/<median>/<max> digits in 30 min over <N> runs, kept precision at the frontier >= <P>
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import statistics
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tasks import get_family  # noqa: E402


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--seeds", type=int, nargs="*", default=None, help="bootstrap seeds (default 1..runs)")
    parser.add_argument("--minutes", type=float, default=30.0, help="the budget of each loopctl up")
    parser.add_argument("--out", type=Path, default=ROOT / "data" / "bench" / "headline")
    parser.add_argument("--policy", type=Path, default=None, help="a policy file for every run (default: the loop's)")
    parser.add_argument("--report", type=Path, default=None, help="summarise the runs under this folder; run nothing")
    return parser.parse_args(argv)


def run_one(seed: int, data_dir: Path, minutes: float, policy: Path | None = None) -> None:
    env = {**os.environ, "LOOP_DATA_DIR": str(data_dir)}
    model = data_dir / "models" / "builtin"
    if not (model / "config.json").exists():
        started = time.monotonic()
        subprocess.run([sys.executable, "-m", "workers.model.builtin", "--out", str(model), "--seed", str(seed)],
                       cwd=ROOT, env=env, check=True, stdout=subprocess.DEVNULL)
        print(f"seed {seed}: bootstrapped in {(time.monotonic() - started) / 60:.1f} min", flush=True)
    if (data_dir / "loop" / "rounds.jsonl").exists():
        print(f"seed {seed}: {data_dir} already holds a run; reporting it as it is", flush=True)
        return
    with (data_dir / "up.log").open("w") as log:
        options = ["--policy", str(policy.resolve())] if policy else []
        subprocess.run([sys.executable, "-m", "loop.cli", "up", "--minutes", str(minutes), "--api-port", "0", *options],
                       cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, check=False)


def read_run(data_dir: Path) -> dict:
    rounds = [json.loads(line) for line in (data_dir / "loop" / "rounds.jsonl").read_text().splitlines() if line]
    base = next((r["mastered"] for r in rounds if r["adapter_id"] is None), 0)
    return {"rounds": rounds, "base": base, "final": max((r["mastered"] for r in rounds), default=base),
            "checks": check_figures(data_dir)}


def check_figures(data_dir: Path) -> dict:
    """Among the agreeing candidates: labels wrong and right, and per metamorphic check how many of each it rejected."""
    from sqlmodel import Session, create_engine, select

    from schemas.tables import Sample

    family = get_family("arithmetic")
    engine = create_engine(f"sqlite:///{data_dir / 'store.sqlite'}")
    figures: Counter = Counter()
    with Session(engine) as session:
        for sample in session.exec(select(Sample).where(Sample.family == family.name, Sample.status != "pending")):
            passed = {c["name"]: c["passed"] for c in sample.checks or []}
            if not (passed.get("format") and passed.get("self_consistency")) or sample.true_answer is None:
                continue
            problem = family.parse_problem(sample.problem)
            said = Counter(a for a in (family.read_label(problem, c) for c in sample.answers or []) if a is not None)
            right = said.most_common(1)[0][0] == sample.true_answer
            kind = "right" if right else "wrong"
            figures[kind] += 1
            for relation in family.relation_names:
                figures[f"{relation}:{kind}"] += not passed.get(relation, True)
            figures[f"any:{kind}"] += not all(passed.get(r, True) for r in family.relation_names)
    return dict(figures)


def print_run(seed: int, run: dict) -> None:
    print(f"\nseed {seed}: {run['base']} -> {run['final']} digits")
    print(f"{'round':>5} {'target':>6} {'init':>6} {'kept':>6} {'right':>6} {'contra':>6} {'mastered':>8} {'minutes':>7}  "
          "decision")
    for r in run["rounds"]:
        if r["adapter_id"] is None:
            continue
        right = "-" if r.get("kept_right") is None else f"{r['kept_right']:.3f}"
        contra = "-" if r.get("contradicted") is None else f"{r['contradicted']:.3f}"
        print(f"{r['round']:>5} {r['target']:>6} {r.get('init') or '-':>6} {r['accepted']:>6} {right:>6} {contra:>6} {r['mastered']:>8} "
              f"{r['minutes']:>7.1f}  {'promoted' if r['promoted'] else 'rejected'}: {r['reason']}")
    f = run["checks"]
    wrong, right = f.get("wrong", 0), f.get("right", 0)
    print(f"agreeing candidates: {right} right labels, {wrong} wrong")
    for name in (*get_family("arithmetic").relation_names, "any"):
        caught, cost = f.get(f"{name}:wrong", 0), f.get(f"{name}:right", 0)
        print(f"  {name:<13} rejects {caught}/{wrong} wrong ({caught / wrong if wrong else 0:.2f}), "
              f"{cost}/{right} right ({cost / right if right else 0:.2f})")


def plot(runs: dict[int, dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (reach, kept) = plt.subplots(1, 2, figsize=(11, 4))
    for seed, run in runs.items():
        rows = [r for r in run["rounds"] if r["adapter_id"]]
        reach.step([0] + [r["minutes"] for r in rows], [run["base"]] + [r["mastered"] for r in rows], where="post",
                   marker="o", label=f"seed {seed}")
        kept.plot([r["round"] for r in rows if r.get("kept_right") is not None],
                  [r["kept_right"] for r in rows if r.get("kept_right") is not None], marker="o", label=f"seed {seed}")
    reach.set(xlabel="minutes", ylabel="digits mastered (>= 95% held-out)", title="loopctl up, fresh bootstraps")
    kept.axhline(0.95, color="grey", linestyle="--", linewidth=0.8)
    kept.set(xlabel="round", ylabel="kept labels right", title="kept precision per round (measurement)",
             ylim=(0.5, 1.01))
    for ax in (reach, kept):
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    print("command:", shlex.join(["python", "bench/headline.py", *(argv if argv is not None else sys.argv[1:])]))
    out = args.report or args.out
    if args.report:
        seeds = sorted(int(p.name.split("-")[1]) for p in out.glob("seed-*") if (p / "loop" / "rounds.jsonl").exists())
    else:
        seeds = args.seeds or list(range(1, args.runs + 1))
        for seed in seeds:
            (out / f"seed-{seed}").mkdir(parents=True, exist_ok=True)
            run_one(seed, out / f"seed-{seed}", args.minutes, args.policy)
            print_run(seed, read_run(out / f"seed-{seed}"))
    runs = {seed: read_run(out / f"seed-{seed}") for seed in seeds}
    if args.report:
        for seed, run in runs.items():
            print_run(seed, run)
    if not runs:
        print("headline: no finished runs")
        return 1
    plot(runs, out / "headline.png")
    finals = sorted(run["final"] for run in runs.values())
    kept = [r["kept_right"] for run in runs.values() for r in run["rounds"] if r.get("kept_right") is not None]
    bases = sorted({run["base"] for run in runs.values()})
    print(f"plot: {out / 'headline.png'}")
    print(f"headline: {'/'.join(map(str, bases))} -> {finals[0]}/{statistics.median_low(finals)}/{finals[-1]} digits in "
          f"{args.minutes:g} min over {len(runs)} runs, kept precision at the frontier >= "
          f"{min(kept) if kept else float('nan'):.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
