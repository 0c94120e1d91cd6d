"""What the grounded benches measure on the held-out suites: answerable accuracy against hallucination, per tier and
pooled, and accuracy per question phrasing.

The rates take the family (``tasks.grounded.GroundedQA``: its true answers and its abstention), its problems and the
answers read from a model's completions (``family.read_answer``), one per problem.
"""

from __future__ import annotations

from collections.abc import Sequence

from tasks.base import Problem
from tasks.grounded import GroundedQA


def answer_rates(family: GroundedQA, problems: Sequence[Problem],
                 answers: Sequence[str | None]) -> dict[str, float]:
    """``answerable``: accuracy on answerable questions; ``hallucination``: share of unanswerable questions
    answered with anything but the family's abstention (a malformed answer counts: it is not an abstention);
    ``abstention``: share of answerable questions answered with the abstention."""
    unknown = family.unknown_answer
    answerable = [(p, a) for p, a in zip(problems, answers, strict=True) if p.data.get("answerable")]
    unanswerable = [(p, a) for p, a in zip(problems, answers, strict=True) if p.data.get("answerable") is False]
    rate = lambda hits, pool: hits / len(pool) if pool else 0.0  # noqa: E731
    return {
        "answerable": rate(sum(a == family.true_answer(p) for p, a in answerable), answerable),
        "hallucination": rate(sum(a != unknown for _, a in unanswerable), unanswerable),
        "abstention": rate(sum(a == unknown for _, a in answerable), answerable),
        "n_answerable": float(len(answerable)),
        "n_unanswerable": float(len(unanswerable)),
    }


def pooled_rates(family: GroundedQA, suites: dict[str, list], answers: dict[str, list]) -> dict[str, dict[str, float]]:
    """``answer_rates`` of each tier's suite and its answers, and of all of them together ("all")."""
    rates = {tier: answer_rates(family, suites[tier], answers[tier]) for tier in suites}
    rates["all"] = answer_rates(family, [p for tier in suites for p in suites[tier]],
                                [a for tier in suites for a in answers[tier]])
    return rates


def phrasing_of(problem: Problem) -> str:
    """The question with its subject as ``{e}``: the template it was asked in (``{e} has which pet``)."""
    entity = problem.data.get("entity")
    return problem.canonical.replace(entity, "{e}") if entity else problem.canonical


def phrasing_rates(family: GroundedQA, problems: Sequence[Problem],
                   answers: Sequence[str | None]) -> dict[str, dict[str, float]]:
    """Per phrasing (``phrasing_of``), ``accuracy`` on its answerable questions and their number ``n``, the
    least accurate first: one phrasing a model cannot read hides in a rate over all of them."""
    cells: dict[str, list[bool]] = {}
    for problem, answer in zip(problems, answers, strict=True):
        if problem.data.get("answerable"):
            cells.setdefault(phrasing_of(problem), []).append(answer == family.true_answer(problem))
    rates = {phrasing: {"accuracy": sum(hits) / len(hits), "n": float(len(hits))}
             for phrasing, hits in cells.items()}
    return dict(sorted(rates.items(), key=lambda item: (item[1]["accuracy"], item[0])))
