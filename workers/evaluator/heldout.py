"""Held-out evaluation: greedy exact-match accuracy on a family's fixed evaluation suites."""

from __future__ import annotations

import math
from collections.abc import Callable, Hashable, Iterable, Sequence

from tasks.base import Problem, TaskFamily
from schemas.messages import EvalScore
from workers.generator.engine import GenerationEngine, SamplingSpec


def heldout_answers(
    engine: GenerationEngine, family: TaskFamily, difficulty: int, *, max_new_tokens: int | None = None
) -> tuple[list[Problem], list[str | None]]:
    """The suite of one difficulty and the active model's greedy answers to it, read back (None: malformed)."""
    suite = family.eval_suite(difficulty)
    return suite, greedy_answers(engine, family, suite, max_new_tokens=max_new_tokens)


def greedy_answers(
    engine: GenerationEngine, family: TaskFamily, problems: Sequence[Problem], *, max_new_tokens: int | None = None,
    abstain_below: float | None = None, rendering: int = 0,
) -> list[str | None]:
    """The active model's greedy answers, read back. With ``abstain_below`` (for a family that has an abstention,
    ``family.unknown_answer``), any answer the model gave a probability below it is replaced by the abstention:
    answering only when sure (``abstention_threshold`` picks the probability). ``rendering``: which of
    ``family.renderings`` the model is asked (0, the prompt as written; for the grounded family, 1 begins the
    answer with its subject, so that the model states what it recalls and its probability decides)."""
    if not problems:
        return []
    if abstain_below is None and rendering == 0:
        budget = max_new_tokens or max(family.answer_budget(p) for p in problems)
        completions = engine.generate(engine.render([family.prompt(p) for p in problems], family.chat),
                                      SamplingSpec(k=1, greedy_first=True, max_new_tokens=budget,
                                                   stop=family.stop_strings))
        return [family.read_answer(p, c[0]) for p, c in zip(problems, completions, strict=True)]
    unknown = _unknown_answer(family)
    threshold = abstain_below if abstain_below is not None else 0.0
    return [unknown if probability < threshold else answer
            for answer, probability in scored_answers(engine, family, problems, max_new_tokens=max_new_tokens,
                                                      rendering=rendering)]


def scored_answers(
    engine: GenerationEngine, family: TaskFamily, problems: Sequence[Problem], *, max_new_tokens: int | None = None,
    rendering: int = 0,
) -> list[tuple[str | None, float]]:
    """(answer read back, the probability the model gave its completion) of each greedy answer to rendering
    ``rendering`` of each problem; an abstention counts as sure (probability 1.0): it is never replaced."""
    if not problems:
        return []
    unknown = _unknown_answer(family)
    budget = max_new_tokens or max(family.answer_budget(p) for p in problems)
    scored = engine.generate_scored(engine.render([family.renderings(p)[rendering] for p in problems], family.chat),
                                    budget)
    answers = [family.read_answer(p, text) for p, (text, _) in zip(problems, scored, strict=True)]
    return [(a, 1.0 if a == unknown else probability) for a, (_, probability) in zip(answers, scored, strict=True)]


def recitation_checked(
    engine: GenerationEngine, family: TaskFamily, problems: Sequence[Problem], answers: Sequence[str | None],
    *, max_new_tokens: int | None = None,
) -> list[str | None]:
    """The answers, each one the active model's own recitation does not state replaced by the abstention.

    Closed-book still: for every answered problem the model is prompted with ``family.recitation_prompt`` (for
    the grounded family, the subject's name) and recites greedily what it read; an answer stands only where
    ``family.recitation_agrees``. Two ways of recalling must agree: a model that states an attribute its passage
    never gave recites the passage without it. Abstentions and malformed answers are kept as they are; each
    prompt is recited once."""
    unknown = _unknown_answer(family)
    prompts = [family.recitation_prompt(p) if a not in (None, unknown) else None
               for p, a in zip(problems, answers, strict=True)]
    distinct = sorted({prompt for prompt in prompts if prompt is not None})
    budget = max_new_tokens or family.recitation_budget
    recited = dict(zip(distinct, (text for text, _ in engine.generate_scored(distinct, budget)), strict=True))
    return [a if prompt is None or a is None or family.recitation_agrees(p, a, recited[prompt]) else unknown
            for p, a, prompt in zip(problems, answers, prompts, strict=True)]


def abstention_threshold(
    problems: Sequence[Problem], scored: Sequence[tuple[str | None, float]], family: TaskFamily,
    max_hallucination: float, *, kind: Callable[[Problem], Hashable] | None = None,
) -> float:
    """The lowest probability to answer at such that at most ``max_hallucination`` of the unanswerable
    ``problems`` (``family.true_answer`` is the abstention) get an answer other than the abstention, from their
    ``scored_answers``: calibrated on questions with known truths, never on the suite it is then used on. With
    ``kind``, the share holds for each kind of unanswerable question apart (the highest of their thresholds), so
    that it does not depend on how the kinds are mixed."""
    if not 0.0 <= max_hallucination <= 1.0:
        raise ValueError("max_hallucination is a share in [0, 1]")
    unknown = _unknown_answer(family)
    groups: dict[Hashable, list[tuple[str | None, float]]] = {}
    for problem, (answer, probability) in zip(problems, scored, strict=True):
        if family.true_answer(problem) == unknown:
            groups.setdefault(kind(problem) if kind else None, []).append((answer, probability))
    return max((_threshold(group, unknown, max_hallucination) for group in groups.values()), default=0.0)


def _threshold(unanswerable: list[tuple[str | None, float]], unknown: str, max_hallucination: float) -> float:
    answered = sorted((p for a, p in unanswerable if a != unknown), reverse=True)
    allowed = math.floor(max_hallucination * len(unanswerable) + 1e-9)
    if len(answered) <= allowed:
        return 0.0
    return math.nextafter(answered[allowed], math.inf)  # that answer and every less sure one abstain


def _unknown_answer(family: TaskFamily) -> str:
    if family.unknown_answer is None:
        raise ValueError(f"the {family.name} family has no abstention to answer with")
    return family.unknown_answer


def evaluate_family(
    engine: GenerationEngine, family: TaskFamily, difficulties: Iterable[int], *, max_new_tokens: int | None = None,
    check_recitation: bool = True,
) -> list[EvalScore]:
    """One score per difficulty; the engine's active adapter is the one measured. With ``check_recitation``, a
    family that has an abstention is scored on its answers checked against the model's own recitation
    (``recitation_checked``), as it answers when it may say "I do not know"."""
    scores = []
    for difficulty in difficulties:
        suite, answers = heldout_answers(engine, family, difficulty, max_new_tokens=max_new_tokens)
        if not suite:
            continue
        if check_recitation and family.unknown_answer is not None:
            answers = recitation_checked(engine, family, suite, answers)
        right = sum(a == family.true_answer(p) for p, a in zip(suite, answers, strict=True))
        scores.append(EvalScore(family=family.name, difficulty=difficulty, accuracy=right / len(suite), n=len(suite)))
    return scores
