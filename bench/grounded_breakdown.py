"""Where a grounded model fails: does it remember the corpus, can it be asked about it, does it abstain?

    python bench/grounded_breakdown.py --model data/models/grounded
    python bench/grounded_breakdown.py --model data/models/grounded --adapter DIR/round-008

Per tier, greedy and closed-book:
- passage recall: the model completes a sentence of its reading (``Kavo lives in`` -> ``Tesa``; ``Kavo is aged``
  -> ``42``, since ``Kavo is`` may go on with any of several facts), the ceiling of anything it can answer;
- answerable accuracy (and the share answered "I do not know") for facts training may ask about (asked in the
  base model's training for the easy tier only; the loop asks about every tier) and for held-out facts, each in training phrasings and in held-out phrasings: which of the two gaps (a fact never asked about, a
  phrasing never trained on) costs what;
- the share of held-out unanswerable questions answered "I do not know", strangers and missing attributes apart;
- then the held-out suite's answerable questions, all tiers, by phrasing: accuracy, and the share answered with a
  statement about another attribute (``Kavo has which pet`` -> ``Kavo lives in Tesa.``): a phrasing the model
  reads as another attribute's question.
"""

from __future__ import annotations

import argparse
import random
import shlex
import sys
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.grounded_base import READING_FORMS  # noqa: E402
from bench.grounded_rates import phrasing_of, phrasing_rates  # noqa: E402
from tasks.grounded import UNKNOWN, GroundedQA, statement  # noqa: E402
from workers.generator import GenerationEngine, SamplingSpec  # noqa: E402


def _recall_prefixes() -> dict[str, str]:
    """Per relation, the start of the first of its reading wordings (the corpus's own first) that no wording of
    another relation starts with: ``Kavo is `` could go on with any of several facts, ``Kavo is aged `` only
    with the age."""
    prefixes = {}
    for relation, forms in READING_FORMS.items():
        others = [form for r, fs in READING_FORMS.items() if r != relation for form in fs]
        starts = [form.split("{v}")[0] for form in forms]
        prefixes[relation] = next(start for start in starts if not any(o.startswith(start) for o in others))
    return prefixes


RECALL_PREFIXES = _recall_prefixes()


def answered(engine, family: GroundedQA, problems) -> tuple[float, float]:
    """(accuracy, share answered "I do not know") of greedy answers."""
    outputs = engine.generate([family.prompt(p) for p in problems], SamplingSpec(k=1, max_new_tokens=48))
    answers = [family.read_answer(p, o[0]) for p, o in zip(problems, outputs, strict=True)]
    right = sum(a == family.true_answer(p) for a, p in zip(answers, problems, strict=True))
    return right / len(problems), sum(a == UNKNOWN for a in answers) / len(problems)


def by_phrasing(engine, family: GroundedQA) -> dict[str, tuple[float, float, int]]:
    """Per held-out phrasing, (accuracy, share answered about another attribute, questions) of greedy answers to
    the held-out suite's answerable questions, all tiers."""
    problems = [p for tier in family.difficulties for p in family.eval_suite(tier) if p.data["answerable"]]
    spec = SamplingSpec(k=1, max_new_tokens=48)
    outputs = [o[0] for o in engine.generate([family.prompt(p) for p in problems], spec)]
    rates = phrasing_rates(family, problems, [family.read_answer(p, o) for p, o in zip(problems, outputs, strict=True)])
    other = Counter(phrasing_of(problem) for problem, output in zip(problems, outputs, strict=True)
                    if (said := statement(output.strip().split(".")[0])) and said[1] != problem.data["relation"])
    return {phrasing: (rate["accuracy"], other[phrasing] / rate["n"], int(rate["n"]))
            for phrasing, rate in sorted(rates.items())}


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, required=True)
    parser.add_argument("--adapter", type=Path, default=None)
    parser.add_argument("--per-cell", type=int, default=60, help="questions per cell (fewer where a pool is smaller)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    print("command: python " + shlex.join(["bench/grounded_breakdown.py", *(sys.argv[1:] if argv is None else argv)]))
    family, rng = GroundedQA(), random.Random(args.seed)
    engine = GenerationEngine(args.model)
    if args.adapter:
        engine.use_adapter(args.adapter.name, args.adapter)
    rows = []
    print("facts/phrasing: train = training may ask it, held = only the held-out suite does; each cell is accuracy and,"
          " in brackets, the share answered 'I do not know'")
    print(f"{'tier':>4} {'recall':>6}  {'train/train':>12} {'train/held':>12} {'held/train':>12} {'held/held':>12}  "
          f"{'idk strangers':>14} {'idk missing':>13}")
    for tier in family.difficulties:
        row = {"tier": tier}
        known = family.facts(tier, "known", held_out=False) + family.facts(tier, "known", held_out=True)
        sample = rng.sample(known, min(args.per_cell, len(known)))
        prompts = [RECALL_PREFIXES[r].format(e=e) for e, r in sample]
        outputs = engine.generate(prompts, SamplingSpec(k=1, max_new_tokens=12))
        row["recall"] = sum(o[0].strip().split(".")[0].split(" ")[0] == family.world.fact(e, r)
                            for o, (e, r) in zip(outputs, sample, strict=True)) / len(sample)
        for held_fact in (False, True):
            pool = family.facts(tier, "known", held_out=held_fact)
            for held_phrasing in (False, True):
                facts = rng.sample(pool, min(args.per_cell, len(pool)))
                problems = [family.ask(e, r, tier, held_out_phrasing=held_phrasing, rng=rng) for e, r in facts]
                key = f"{'held' if held_fact else 'train'}/{'held' if held_phrasing else 'train'}"
                row[key] = answered(engine, family, problems)
        for kind in ("stranger", "missing"):
            pool = family.facts(tier, kind, held_out=True)
            facts = rng.sample(pool, min(args.per_cell, len(pool)))
            problems = [family.ask(e, r, tier, held_out_phrasing=True, rng=rng) for e, r in facts]
            row[f"idk {kind}"] = (answered(engine, family, problems)[1], len(problems))
        rows.append(row)
        cells = " ".join(f"{row[k][0]:>5.2f} ({row[k][1]:.2f})" for k in ("train/train", "train/held", "held/train",
                                                                          "held/held"))
        print(f"{tier:>4} {row['recall']:>6.2f}  {cells}  {row['idk stranger'][0]:>8.2f} (n={row['idk stranger'][1]})"
              f" {row['idk missing'][0]:>6.2f} (n={row['idk missing'][1]})")
    print("held-out suite, answerable, by phrasing: accuracy, answered about another attribute, questions")
    for phrasing, (accuracy, other, count) in by_phrasing(engine, family).items():
        print(f"  {phrasing:<32} {accuracy:>5.2f} {other:>5.2f} {count:>4}")
        rows.append({"phrasing": phrasing, "accuracy": accuracy, "other_attribute": other, "questions": count})
    return rows


if __name__ == "__main__":
    main()
