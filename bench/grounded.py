"""The loop on the grounded QA family, in one process: does the evidence check teach the model to answer what the
corpus says, and to say "I do not know" where it says nothing?

    python bench/grounded.py                        # cached grounded base model (trained on first use)
    python bench/grounded.py --ablation             # same training steps on the easy tier's QA only
    python bench/grounded.py --rounds 6 --problems 300 --k 6 --temperature 1.0 --steps 600 --missing-share 0

The base model has read the whole corpus and was taught the QA format on the first tier only
(``bench/grounded_base.py``). Each round asks questions about every tier (training phrasings, held-out
facts excluded), samples k closed-book answers per question (half to the question as written, half with the
answer begun by its subject: ``GroundedQA.renderings``), and runs the retrieval chain (evidence, format,
self-consistency, novelty, decontamination: ``workers.verifier.retrieval_checks``; the evidence check picks,
among the k answers, the one the corpus supports, and at least ``--agreement`` of them must say it; a question the
corpus does not answer is labelled "I do not know" whatever the model said) against a FAISS
memory in the output directory; accepted samples go into the memory's accepted index (so later rounds see
them for novelty) and into training. A LoRA adapter is trained from the base on everything accepted so far plus
replay of the easy tier, and the held-out suites (facts and phrasings training never uses, answerable and
unanswerable) are answered greedily. Beside the model's own answers, each round reports them answered only when
sure (``SURE_MODES``): below a probability calibrated on training questions (``--calibration`` per tier, at most
``--max-hallucination`` of each kind of unanswerable one answered), an answer becomes "I do not know";
``--remeasure DIR`` measures a finished run's adapters again without training. And each round reports the model's
answers checked against its own recitation (``workers.evaluator.recitation_checked``): prompted with the subject's
name, the model recites what it read about the person, closed-book, and an answer stands only where the
recitation states it; otherwise it becomes "I do not know" (``--no-check``: not measured). Prints a table per
round (with the held-out phrasing the model's own answers get least right: ``grounded_rates.phrasing_rates``), writes
a plot, and ends with one line:
    grounded: answerable <A0> -> <A1>, hallucination on unanswerable <H0> -> <H1>
(answerable: held-out accuracy on answerable questions, all tiers; hallucination: share of unanswerable
held-out questions answered with anything but "I do not know"; of the checked answers, or with ``--no-check``
of the model's answers as they are, which are also printed on the line before).

One script, because a round's training, its measurements and its report share the run's state and are run whole;
the base, the rates and the breakdown it uses live in their own ``bench/grounded_*`` modules.
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

from bench.grounded_base import GroundedConfig, ensure_grounded  # noqa: E402
from bench.grounded_rates import phrasing_rates, pooled_rates  # noqa: E402
from tasks.grounded import UNKNOWN, GroundedQA  # noqa: E402
from schemas.messages import Candidate  # noqa: E402
from services.settings import get_settings  # noqa: E402
from workers.evaluator import abstention_threshold, recitation_checked, scored_answers  # noqa: E402
from workers.generator import GenerationEngine, SamplingSpec  # noqa: E402
from workers.trainer import LoraTrainingConfig, train_lora  # noqa: E402
from workers.verifier.embeddings import get_embedder  # noqa: E402
from workers.verifier.memory import Memory, RetrievalSettings, index_name  # noqa: E402
from workers.verifier.retrieval_checks import retrieval_chain, sync_reference_indexes  # noqa: E402


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, default=None, help="a model directory (default: the grounded base)")
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--minutes", type=float, default=30.0, help="budget for the rounds (bootstrap not counted)")
    parser.add_argument("--problems", type=int, default=300, help="questions per tier per round")
    parser.add_argument("--k", type=int, default=6, help="answers per question (the first greedy)")
    parser.add_argument("--temperature", type=float, default=1.0)
    parser.add_argument("--agreement", type=float, default=0.3,
                        help="share of the k answers that must say the accepted answer")
    parser.add_argument("--majority", action="store_true",
                        help="judge only the majority answer (default: the evidence picks the supported one)")
    parser.add_argument("--model-abstentions-only", action="store_true",
                        help="accept 'I do not know' only where the model said it (default: the evidence check labels "
                             "every question the corpus does not answer with it)")
    parser.add_argument("--no-guesses", action="store_true",
                        help="ask each question only as written (default: also with the answer begun by its subject, "
                             "GroundedQA.renderings)")
    parser.add_argument("--unanswerable-share", type=float, default=0.25,
                        help="share of each round's questions the corpus does not answer (GroundedQA)")
    parser.add_argument("--missing-share", type=float, default=0.0,
                        help="share of those that ask about an attribute a known person lacks; the rest ask about "
                             "strangers (GroundedQA; taught to abstain on missing attributes, the model also abstains "
                             "on facts it knows but was never asked about: docs/retrieval.md)")
    parser.add_argument("--steps", type=int, default=600, help="LoRA steps per round")
    parser.add_argument("--rank", type=int, default=16)
    parser.add_argument("--lr", type=float, default=2e-3)
    parser.add_argument("--replay-share", type=float, default=0.25)
    parser.add_argument("--ablation", action="store_true", help="train on the easy tier's QA only, same steps")
    parser.add_argument("--max-hallucination", type=float, default=0.05,
                        help="also answer only when sure: abstain below the probability at which at most this share "
                             "of the calibration questions the corpus does not answer get an answer, strangers and "
                             "missing attributes each (negative: off)")
    parser.add_argument("--calibration", type=int, default=400,
                        help="calibration questions per tier (training phrasings and facts, new strangers, half "
                             "unanswerable; never the held-out suite)")
    parser.add_argument("--no-check", action="store_true",
                        help="report the model's answers as they are (default: also checked against its own "
                             "recitation, workers.evaluator.recitation_checked, and the final line reports those)")
    parser.add_argument("--remeasure", type=Path, default=None,
                        help="train nothing: measure the base and each round's adapter (round-NNN) of an earlier "
                             "run's output directory again, e.g. with other --max-hallucination or --calibration")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--seed", type=int, default=0)
    return parser.parse_args(argv)


def verify_round(engine, family: GroundedQA, memory: Memory, chain, problems, spec: SamplingSpec,
                 accepted: dict, rng: random.Random) -> dict:
    """Generate, verify and keep one round's questions; returns what was kept and how right it was."""
    completions = engine.generate_renderings([family.renderings(p) for p in problems], spec)
    kept = right = abstained = 0
    new_ids, new_texts, new_meta = [], [], []
    for problem, answers in zip(problems, completions, strict=True):
        truth = family.true_answer(problem)
        candidate = Candidate(sample_id=problem.sample_id, family=family.name, difficulty=problem.difficulty,
                              problem=problem.canonical, answers=answers, true_answer=truth)
        verdict = chain.verify(candidate, problem)
        if not verdict.accepted:
            continue
        accepted[problem.sample_id] = family.training_example(problem, verdict.label, rng)
        kept += 1
        right += verdict.label == truth
        abstained += verdict.label == UNKNOWN
        new_ids.append(problem.sample_id)
        new_texts.append(problem.canonical)
        new_meta.append({"label": verdict.label, "difficulty": problem.difficulty})
        if len(new_ids) >= 64:  # later questions of the round see these for novelty
            memory.add(index_name("accepted", family.name), new_ids, new_texts, new_meta)
            new_ids, new_texts, new_meta = [], [], []
    if new_ids:
        memory.add(index_name("accepted", family.name), new_ids, new_texts, new_meta)
    return {"kept": kept, "label_accuracy": right / kept if kept else None, "abstentions": abstained}


# Answering only when sure, by the rendering asked: the question as written; the answer begun by its subject (the
# last rendering), where the model always states what it recalls and only its probability decides whether it is said.
SURE_MODES = {"sure": 0, "sure_begun": -1}


def calibration_questions(per_tier: int, seed: int) -> list:
    """Training questions (training facts and phrasings, new strangers) of every tier, half of them unanswerable
    and those half strangers, half missing attributes, whatever mix the loop trains on: what the threshold
    answers for is every kind of question a user may ask."""
    family = GroundedQA(unanswerable_share=0.5, missing_share=0.5)
    return [p for tier in family.difficulties
            for p in family.make_problems(tier, per_tier, random.Random(seed + 7 * tier))]


def measure(engine, family: GroundedQA, calibration: list, max_hallucination: float, check: bool = True) -> dict:
    """The held-out rates of the model's own greedy answers ("rates"); with ``check``, of those answers checked
    against the model's own recitation of what it read about each subject ("checked_rates": an answer the
    recitation does not state becomes "I do not know"); and, where ``max_hallucination`` is not
    negative, in each of ``SURE_MODES`` the rates of its answers with those it is unsure of replaced by "I do not
    know" (``<mode>_rates``), at the threshold calibrated on ``calibration`` (``<mode>_threshold``). The model's own
    answers are the ones ``sure`` withholds from: they are generated once."""
    suites = {str(tier): family.eval_suite(tier) for tier in family.difficulties}
    own = {tier: scored_answers(engine, family, suite) for tier, suite in suites.items()}
    measured = {"rates": pooled_rates(family, suites, {t: [a for a, _ in s] for t, s in own.items()}),
                "phrasings": phrasing_rates(family, [p for suite in suites.values() for p in suite],
                                            [a for s in own.values() for a, _ in s])}
    if check:
        measured["checked_rates"] = pooled_rates(family, suites, {
            t: recitation_checked(engine, family, suites[t], [a for a, _ in s]) for t, s in own.items()})
    if max_hallucination < 0:
        return measured
    for mode, rendering in SURE_MODES.items():
        threshold = abstention_threshold(calibration, scored_answers(engine, family, calibration, rendering=rendering),
                                         family, max_hallucination, kind=family.kind)
        scored = own if rendering == 0 else {
            tier: scored_answers(engine, family, suite, rendering=rendering) for tier, suite in suites.items()}
        answers = {tier: [UNKNOWN if p < threshold else a for a, p in s] for tier, s in scored.items()}
        measured[f"{mode}_threshold"] = threshold
        measured[f"{mode}_rates"] = pooled_rates(family, suites, answers)
    return measured


def format_sure(measured: dict) -> str:
    """The checked answers' rates and each of ``SURE_MODES``'s, all tiers, where they were measured."""
    checked = measured["checked_rates"]["all"] if "checked_rates" in measured else None
    return ((f"  checked: {checked['answerable']:.3f}/{checked['hallucination']:.3f}" if checked else "")
            + "".join(f"  {mode} (p>={measured[mode + '_threshold']:.3f}): "
                      f"{measured[mode + '_rates']['all']['answerable']:.3f}/"
                      f"{measured[mode + '_rates']['all']['hallucination']:.3f}"
                      for mode in SURE_MODES if mode + "_rates" in measured))


def format_weakest(measured: dict) -> str:
    """The held-out phrasing the model's own answers get least right, all tiers."""
    phrasing, rate = next(iter(measured["phrasings"].items()))
    return f"  weakest phrasing: {phrasing} {rate['accuracy']:.2f} (n={rate['n']:.0f})"


def format_more(measured: dict) -> str:
    """What a round line shows after its rates: checked, sure and the weakest phrasing."""
    return format_sure(measured) + format_weakest(measured)


def format_rates(rates: dict) -> str:
    tiers = " ".join(f"t{t}:{r['answerable']:.2f}/{r['hallucination']:.2f}" for t, r in rates.items() if t != "all")
    return f"{rates['all']['answerable']:>10.3f} {rates['all']['hallucination']:>13.3f}  {tiers}"


def plot(rows: list[dict], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 4.5))
    rounds = [r["round"] for r in rows]
    for i, tier in enumerate(rows[0]["rates"]):
        name = "all tiers" if tier == "all" else f"tier {tier}"
        style = {"color": f"C{i}", "linewidth": 2.5 if tier == "all" else 1, "alpha": 1.0 if tier == "all" else 0.7}
        ax.plot(rounds, [r["rates"][tier]["answerable"] for r in rows], marker="o", label=f"answerable, {name}",
                **style)
        ax.plot(rounds, [r["rates"][tier]["hallucination"] for r in rows], marker="x", linestyle="--",
                label=f"hallucination, {name}", **style)
    if "checked_rates" in rows[0]:
        for measure_name, marker, linestyle in (("answerable", "o", "-"), ("hallucination", "x", "--")):
            ax.plot(rounds, [r["checked_rates"]["all"][measure_name] for r in rows], color="black", marker=marker,
                    linestyle=linestyle, linewidth=2.5, label=f"{measure_name}, all tiers, checked by recitation")
    ax.set_xticks(rounds)
    ax.axhline(0.8, color="green", linestyle=":", linewidth=0.8)
    ax.axhline(0.05, color="red", linestyle=":", linewidth=0.8)
    ax.set_xlabel("round")
    ax.set_ylabel("held-out share")
    ax.set_ylim(-0.02, 1.02)
    ax.set_title(title)
    ax.legend(ncol=2, fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv: list[str] | None = None) -> str:
    args = parse_args(argv)
    print("command: python " + shlex.join(["bench/grounded.py", *(sys.argv[1:] if argv is None else argv)]))
    if args.threads:
        torch.set_num_threads(args.threads)
    settings = get_settings()
    family = GroundedQA(guesses=not args.no_guesses, unanswerable_share=args.unanswerable_share,
                        missing_share=args.missing_share)
    model_dir = args.model or ensure_grounded(settings.data_dir / "models" / "grounded", GroundedConfig())
    calibration = calibration_questions(args.calibration, args.seed)
    if args.remeasure:
        return remeasure(args, family, model_dir, calibration)
    mode = "ablation" if args.ablation else "loop"
    out = args.out or settings.data_dir / "bench" / f"grounded-{mode}-{int(time.time())}"
    out.mkdir(parents=True, exist_ok=True)
    memory = Memory(out / "memory", embedder=get_embedder(), config=RetrievalSettings().index_config())
    sync_reference_indexes(memory, family)
    chain = retrieval_chain(family, memory, agreement=args.agreement, sync_reference=False,
                            choose_supported=not args.majority,
                            abstain_unsupported=not args.model_abstentions_only)
    engine = GenerationEngine(model_dir)
    spec = SamplingSpec(k=args.k, temperature=args.temperature, max_new_tokens=family.answer_budget(
        family.eval_suite(1)[0]))
    lora = LoraTrainingConfig(rank=args.rank, alpha=2 * args.rank, steps=args.steps, lr=args.lr,
                              replay_share=args.replay_share, batch_size=64)
    rng = random.Random(args.seed)
    print(f"model {model_dir}, {len(family.corpus())} passages, tiers {list(family.difficulties)} "
          f"(QA taught on tier 1..{family.easy_tiers}), mode {mode}, output {out}")
    print(f"{'round':>5} {'asked':>6} {'kept':>5} {'label_acc':>9} {'kept_idk':>8} {'answerable':>10} "
          f"{'hallucination':>13}  per tier answerable/hallucination  [minutes]")
    rows = [{"round": 0, **measure(engine, family, calibration, args.max_hallucination, not args.no_check)}]
    print(f"{0:>5} {'-':>6} {'-':>5} {'-':>9} {'-':>8} {format_rates(rows[0]['rates'])}{format_more(rows[0])}",
          flush=True)
    accepted: dict = {}
    started = time.monotonic()
    for round_no in range(1, args.rounds + 1):
        if (time.monotonic() - started) / 60 > args.minutes:
            print(f"time budget of {args.minutes:.0f} min spent; stopping before round {round_no}")
            break
        lap = time.monotonic()
        problems = [p for tier in family.difficulties for p in family.make_problems(tier, args.problems, rng)
                    if p.sample_id not in accepted]
        kept = {"kept": 0, "label_accuracy": None, "abstentions": 0}
        if not args.ablation:
            kept = verify_round(engine, family, memory, chain, problems, spec, accepted, rng)
        name = f"round-{round_no:03d}"
        train_lora(base_model=model_dir, examples=list(accepted.values()), out_dir=out / name,
                   config=lora.model_copy(update={"seed": args.seed + round_no}), snapshot_id=f"grounded-{round_no}",
                   replay=family.replay_examples)
        engine.use_adapter(name, out / name)
        measured = measure(engine, family, calibration, args.max_hallucination, not args.no_check)
        minutes = (time.monotonic() - lap) / 60
        rows.append({"round": round_no, "asked": len(problems), **kept, **measured, "minutes": round(minutes, 2)})
        label = "-" if kept["label_accuracy"] is None else f"{kept['label_accuracy']:.3f}"
        print(f"{round_no:>5} {len(problems) if not args.ablation else 0:>6} {kept['kept']:>5} {label:>9} "
              f"{kept['abstentions']:>8} {format_rates(measured['rates'])}  [{minutes:.1f}]{format_more(measured)}",
              flush=True)
    (out / "rounds.json").write_text(json.dumps(rows, indent=2))
    plot(rows, out / "grounded.png", f"held-out answerable accuracy and hallucination ({mode})")
    print(f"plot: {out / 'grounded.png'}")
    return summarize(rows, args.max_hallucination)


def remeasure(args: argparse.Namespace, family: GroundedQA, model_dir: Path, calibration: list) -> str:
    """The base and every round's adapter of ``args.remeasure``, measured again; nothing is trained."""
    engine = GenerationEngine(model_dir)
    rows = [{"round": 0, **measure(engine, family, calibration, args.max_hallucination, not args.no_check)}]
    print(f"{0:>5} {format_rates(rows[0]['rates'])}{format_more(rows[0])}", flush=True)
    for adapter in sorted(args.remeasure.glob("round-[0-9][0-9][0-9]")):
        engine.use_adapter(adapter.name, adapter)
        rows.append({"round": int(adapter.name.split("-")[1]),
                     **measure(engine, family, calibration, args.max_hallucination, not args.no_check)})
        print(f"{rows[-1]['round']:>5} {format_rates(rows[-1]['rates'])}{format_more(rows[-1])}", flush=True)
    (args.remeasure / "remeasured.json").write_text(json.dumps(rows, indent=2))
    plot(rows, args.remeasure / "remeasured.png", "held-out answerable accuracy and hallucination (remeasured)")
    print(f"plot: {args.remeasure / 'remeasured.png'}")
    return summarize(rows, args.max_hallucination)


def summarize(rows: list[dict], max_hallucination: float) -> str:
    """The first and last round, answering only when sure in each of ``SURE_MODES``, the model's own answers, then
    the final line: its answers checked against its recitation where they were measured, else as they are."""
    for mode in SURE_MODES:
        if f"{mode}_rates" in rows[-1]:
            first, last = rows[0][f"{mode}_rates"]["all"], rows[-1][f"{mode}_rates"]["all"]
            print(f"{mode}: answering only when sure (at most {max_hallucination:.2f} of the unanswerable "
                  f"calibration questions of each kind answered): answerable {first['answerable']:.2f} -> "
                  f"{last['answerable']:.2f}, hallucination on unanswerable {first['hallucination']:.2f} -> "
                  f"{last['hallucination']:.2f}")
    rates = "checked_rates" if "checked_rates" in rows[-1] else "rates"
    if rates != "rates":
        first, last = rows[0]["rates"]["all"], rows[-1]["rates"]["all"]
        print(f"own answers, unchecked: answerable {first['answerable']:.2f} -> {last['answerable']:.2f}, "
              f"hallucination on unanswerable {first['hallucination']:.2f} -> {last['hallucination']:.2f}")
        print("checked against the model's own recitation (the final line):")
    first, last = rows[0][rates]["all"], rows[-1][rates]["all"]
    line = (f"grounded: answerable {first['answerable']:.2f} -> {last['answerable']:.2f}, "
            f"hallucination on unanswerable {first['hallucination']:.2f} -> {last['hallucination']:.2f}")
    print(line)
    return line


if __name__ == "__main__":
    main()
