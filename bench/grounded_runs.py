"""Several finished runs of ``bench/grounded.py`` side by side: held-out answerable accuracy and hallucination per
round, of the answers checked against the model's own recitation (the bench's final line), in one plot.

    python bench/grounded_runs.py data/bench/run-a data/bench/run-b --labels "a" "b" --out runs.png

Reads each run's ``rounds.json``; measures nothing again. Prints one line per run with its rounds' figures and
how far they moved from round 2 on, and writes the plot.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from pathlib import Path


def checked(rows: list[dict]) -> list[tuple[int, float, float]]:
    """(round, answerable, hallucination) of the checked answers, all tiers; the model's own where unchecked."""
    key = "checked_rates" if "checked_rates" in rows[0] else "rates"
    return [(r["round"], r[key]["all"]["answerable"], r[key]["all"]["hallucination"]) for r in rows]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("runs", nargs="+", type=Path, help="output directories of bench/grounded.py")
    parser.add_argument("--labels", nargs="+", help="one per run (default: the directory names)")
    parser.add_argument("--out", type=Path, default=Path("grounded_runs.png"))
    args = parser.parse_args(argv)
    labels = args.labels or [run.name for run in args.runs]
    if len(labels) != len(args.runs):
        parser.error(f"{len(args.runs)} runs but {len(labels)} labels")
    print("command: python bench/grounded_runs.py " + shlex.join(sys.argv[1:] if argv is None else argv))

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 4.5))
    for i, (run, label) in enumerate(zip(args.runs, labels, strict=True)):
        path = run / "rounds.json"
        if not path.exists():
            parser.error(f"{path} does not exist: not a finished run of bench/grounded.py")
        series = checked(json.loads(path.read_text()))
        rounds = [s[0] for s in series]
        ax.plot(rounds, [s[1] for s in series], color=f"C{i}", marker="o", label=f"answerable, {label}")
        ax.plot(rounds, [s[2] for s in series], color=f"C{i}", marker="x", linestyle="--",
                label=f"hallucination, {label}")
        later = [s for s in series if s[0] >= 2]
        spread = (f", from round 2 answerable {min(s[1] for s in later):.3f}-{max(s[1] for s in later):.3f}"
                  if later else "")
        print(f"{label}: " + ", ".join(f"{a:.3f}/{h:.3f}" for _, a, h in series) + spread)
    ax.axhline(0.8, color="green", linestyle=":", linewidth=0.8)
    ax.axhline(0.05, color="red", linestyle=":", linewidth=0.8)
    ax.set_xlabel("round")
    ax.set_ylabel("held-out share, checked answers")
    ax.set_ylim(-0.02, 1.02)
    ax.legend(ncol=2, fontsize=7)
    fig.tight_layout()
    fig.savefig(args.out, dpi=120)
    plt.close(fig)
    print(f"plot: {args.out}")


if __name__ == "__main__":
    main()
