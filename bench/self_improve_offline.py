"""Self-improvement in one process (no Kafka): the baseline the services are compared against.

    python bench/self_improve_offline.py                       # label-free rounds on the cached builtin model
    python bench/self_improve_offline.py --ablation            # same training steps on the easy data only
    python bench/self_improve_offline.py --init parent         # continue the parent adapter instead of the base
    python bench/self_improve_offline.py --model /path/to/hf-dir --minutes 30 --rounds 10

Prints a table per round (difficulty, problems, kept, label accuracy of kept samples against the
true answers, held-out accuracy per length), writes a plot of held-out accuracy per length over
rounds, and ends with one line:
    offline: base <B> digits -> <F> digits at >=95% in <M> min, label-free
"""

from __future__ import annotations

import argparse
import json
import random
import shlex
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

from tasks import get_family  # noqa: E402
from bench.offline import OfflineConfig, RoundReport, run_offline  # noqa: E402
from loop.policy import RECIPE_LORA, RECIPE_PROBLEMS  # noqa: E402
from services.settings import get_settings  # noqa: E402
from tasks.arithmetic import Arithmetic  # noqa: E402
from tasks.base import Example, Problem  # noqa: E402
from workers.generator import SamplingSpec  # noqa: E402
from workers.model.builtin import labelled_options  # noqa: E402
from workers.model.resolve import ensure_builtin  # noqa: E402
from workers.trainer import LoraTrainingConfig  # noqa: E402


class ZeroFilledReplay(Arithmetic):
    """The ablation's family: the replayed easy data is written with the same 0..zero_fill trailing zeros as
    self-labelled examples (the loop replays it without), so that what the writing teaches is credited to the
    writing, not to the loop. ``for_target`` copies it, so every round replays this way."""

    def replayed_example(self, problem: Problem, rng: random.Random) -> Example:
        return self.training_example(problem, self.true_answer(problem), rng)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, default=None, help="a Hugging Face model directory (default: the builtin model)")
    parser.add_argument("--out", type=Path, default=None, help="where adapters, the table and the plot go")
    parser.add_argument("--rounds", type=int, default=12)
    parser.add_argument("--minutes", type=float, default=30.0, help="budget for the rounds (bootstrap not counted)")
    parser.add_argument("--problems", type=int, default=RECIPE_PROBLEMS, help="problems generated per round")
    parser.add_argument("--k", type=int, default=6, help="answers per problem (the first greedy)")
    parser.add_argument("--temperature", type=float, default=1.0)
    parser.add_argument("--agreement", type=float, default=1.0, help="self-consistency threshold")
    parser.add_argument("--steps", type=int, default=RECIPE_LORA["steps"], help="LoRA steps per round")
    parser.add_argument("--rank", type=int, default=16)
    parser.add_argument("--lr", type=float, default=2e-3)
    parser.add_argument("--replay-share", type=float, default=RECIPE_LORA["replay_share"])
    parser.add_argument("--init", choices=["base", "parent"], default="base")
    parser.add_argument("--ablation", action="store_true",
                        help="train on the easy data only, same steps, written with the same trailing zeros")
    parser.add_argument("--zero-fill", type=int, default=None,
                        help="trailing zeros on self-labelled examples (default: the family's, 2; 0 turns them off)")
    parser.add_argument("--oracle", action="store_true", help="accept by the true answer (not label-free)")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--seed", type=int, default=0)
    return parser.parse_args(argv)


def format_round(report: RoundReport) -> str:
    accuracy = " ".join(f"{s.difficulty}:{s.accuracy:.2f}" for s in report.scores)
    label = "-" if report.label_accuracy is None else f"{report.label_accuracy:.3f}"
    minutes = " ".join(f"{k}={v:.1f}" for k, v in report.minutes.items())
    return (f"{report.round:>5} {report.difficulty:>10} {report.problems:>8} {report.kept:>6} {label:>9} "
            f"{report.mastered:>8} {'yes' if report.promoted else 'no':>8}  {accuracy}  [{minutes}]")


def plot(reports: list[RoundReport], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    lengths = sorted({s.difficulty for r in reports for s in r.scores})
    fig, ax = plt.subplots(figsize=(8, 4.5))
    for length in lengths:
        points = [(r.round, s.accuracy) for r in reports for s in r.scores if s.difficulty == length]
        ax.plot([p[0] for p in points], [p[1] for p in points], marker="o", label=f"{length} digits")
    ax.axhline(0.95, color="grey", linestyle="--", linewidth=0.8)
    ax.set_xlabel("round")
    ax.set_ylabel("held-out accuracy")
    ax.set_title(title)
    ax.set_ylim(-0.02, 1.02)
    ax.legend(ncol=2, fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv: list[str] | None = None) -> str:
    args = parse_args(argv)
    command = "python " + shlex.join(["bench/self_improve_offline.py", *(sys.argv[1:] if argv is None else argv)])
    print(f"command: {command}")
    if args.threads:
        torch.set_num_threads(args.threads)
    settings = get_settings()
    model_dir = args.model or ensure_builtin(settings.data_dir / "models" / "builtin")
    options = labelled_options(model_dir)
    if args.zero_fill is not None:
        options["zero_fill"] = args.zero_fill
    family = ZeroFilledReplay(**options) if args.ablation else get_family("arithmetic", **options)
    easy = family.easy_digits
    mode = "ablation" if args.ablation else ("oracle" if args.oracle else "label-free")
    out = args.out or settings.data_dir / "bench" / f"offline-{mode}-{args.init}-{int(time.time())}"
    out.mkdir(parents=True, exist_ok=True)
    config = OfflineConfig(
        rounds=args.rounds, minutes=args.minutes, problems_per_round=args.problems,
        sampling=SamplingSpec(k=args.k, temperature=args.temperature, max_new_tokens=64),
        agreement=args.agreement, oracle=args.oracle, ablation=args.ablation, seed=args.seed,
        lora=LoraTrainingConfig(rank=args.rank, alpha=2 * args.rank, steps=args.steps, lr=args.lr,
                                replay_share=args.replay_share, init=args.init, batch_size=RECIPE_LORA["batch_size"]),
    )
    print(f"model {model_dir}, easy range 1-{easy} digits, mode {mode}, init {args.init}, "
          f"trailing zeros 0-{family.zero_fill}{' (replay too)' if args.ablation else ''}, output {out}")
    print(f"{'round':>5} {'difficulty':>10} {'problems':>8} {'kept':>6} {'label_acc':>9} {'mastered':>8} {'promoted':>8}  held-out accuracy per length  [minutes]")
    started = time.monotonic()
    reports = run_offline(base_model=model_dir, family=family, config=config, out_dir=out,
                          on_round=lambda r: print(format_round(r), flush=True))
    minutes = (time.monotonic() - started) / 60
    plot(reports, out / "heldout_accuracy.png", f"held-out accuracy per length ({mode}, init {args.init})")
    (out / "rounds.json").write_text(json.dumps([r.__dict__ | {"scores": [s.model_dump() for s in r.scores]} for r in reports], indent=2))
    base, final = reports[0].mastered, max(r.mastered for r in reports)
    print(f"plot: {out / 'heldout_accuracy.png'}")
    line = f"offline: base {base} digits -> {final} digits at >=95% in {minutes:.1f} min, {mode}"
    print(line)
    return line


if __name__ == "__main__":
    main()
