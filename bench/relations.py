"""What each metamorphic relation catches, measured on the agreeing answers of a finished round.

    python bench/relations.py --run data/bench/headline/seed-1 --round 1

Reads the run's store: the candidates of the round whose answers agreed (format and self-consistency passed) and
their majority label. Asks the run's base model (``--model``, default the run's builtin model; ``--adapter`` for an
adapter) the related problems of each relation below, one greedy answer per rendering, and prints for each relation
the wrong labels it rejects (its catch rate) and the right ones (its cost). The true answer is read for measurement.
Relations: ``split`` (the product's, ``Arithmetic.relations``); ``shifted_pair`` ((a + x) + (b - x), the same sum) and
``neighbour`` ((a + 1) + b, one more), which keep the frontier's length and live only here. Ends with one line per
relation: ``relation <name>: rejects <w>/<W> wrong, <r>/<R> right``.
"""

from __future__ import annotations

import argparse
import json
import random
import shlex
import sqlite3
import sys
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tasks import get_family  # noqa: E402
from tasks.arithmetic import Arithmetic  # noqa: E402
from tasks.base import Problem, Relation  # noqa: E402
from workers.generator import GenerationEngine, SamplingSpec  # noqa: E402

FAMILY = get_family("arithmetic")


def shifted_pair(problem: Problem) -> list[Relation]:
    a, b = problem.data["a"], problem.data["b"]
    rng = random.Random(problem.sample_id)
    x = rng.randint(1, 9)
    if b >= x and len(str(a + x)) == len(str(a)):
        other = Arithmetic.problem(a + x, b - x)
    elif a >= x and len(str(b + x)) == len(str(b)):
        other = Arithmetic.problem(a - x, b + x)
    else:
        return []
    return [Relation("shifted_pair", (other,), lambda label, said: said[0] == label, lambda label: label)]


def neighbour(problem: Problem) -> list[Relation]:
    a, b = problem.data["a"], problem.data["b"]
    if len(str(a + 1)) != len(str(a)):
        return []
    return [Relation("neighbour", (Arithmetic.problem(a + 1, b),),
                     lambda label, said: label.isdigit() and said[0] == str(int(label) + 1), lambda label: label)]


RELATIONS = {"split": FAMILY.relations, "shifted_pair": shifted_pair, "neighbour": neighbour}


def agreeing(store: Path, round_no: int) -> list[tuple[Problem, str, str]]:
    rows = []
    connection = sqlite3.connect(f"file:{store}?mode=ro", uri=True)
    query = "select problem, answers, true_answer, checks from sample where round = ? and status != 'pending'"
    for canonical, answers, truth, checks in connection.execute(query, (round_no,)):
        passed = {c["name"]: c["passed"] for c in json.loads(checks or "[]")}
        if not (passed.get("format") and passed.get("self_consistency")) or truth is None:
            continue
        problem = FAMILY.parse_problem(canonical)
        said = Counter(a for a in (FAMILY.read_label(problem, c) for c in json.loads(answers)) if a is not None)
        rows.append((problem, said.most_common(1)[0][0], truth))
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", type=Path, required=True, help="a loopctl up data directory")
    parser.add_argument("--round", type=int, default=1)
    parser.add_argument("--model", type=Path, default=None)
    parser.add_argument("--adapter", type=Path, default=None)
    args = parser.parse_args(argv)
    print("command:", shlex.join(["python", "bench/relations.py", *(argv if argv is not None else sys.argv[1:])]))
    engine = GenerationEngine(args.model or args.run / "models" / "builtin")
    if args.adapter:
        engine.use_adapter("measured", args.adapter)
    rows = agreeing(args.run / "store.sqlite", args.round)
    totals = Counter("right" if label == truth else "wrong" for _, label, truth in rows)
    print(f"round {args.round}: {len(rows)} agreeing candidates, {totals['wrong']} of their labels wrong")
    for name, relations_of in RELATIONS.items():
        found = [relations_of(problem) for problem, _, _ in rows]
        related = [p for relations in found for r in relations for p in r.problems]
        prompts = [prompt for p in related for prompt in FAMILY.renderings(p)]
        completions = iter(engine.generate(prompts, SamplingSpec(k=1, max_new_tokens=24)))
        answers = {id(p): [FAMILY.read_label(p, next(completions)[0]) for _ in FAMILY.renderings(p)] for p in related}
        rejected: Counter = Counter()
        for (problem, label, truth), relations in zip(rows, found, strict=True):
            ok = all(None not in said and r.agrees(label, said)
                     for r in relations for said in zip(*(answers[id(p)] for p in r.problems), strict=True))
            rejected["right" if label == truth else "wrong"] += not ok
        print(f"relation {name}: rejects {rejected['wrong']}/{totals['wrong']} wrong, "
              f"{rejected['right']}/{totals['right']} right", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
