"""Held-out evaluation: greedy exact-match accuracy on a family's fixed evaluation suites."""

from __future__ import annotations

from collections.abc import Iterable

from loop.families.base import Problem, TaskFamily
from loop.policy import mastered as mastered_difficulty  # noqa: F401 - the one definition, re-exported
from schemas.messages import EvalScore
from workers.generator.engine import GenerationEngine, SamplingSpec


def heldout_answers(
    engine: GenerationEngine, family: TaskFamily, difficulty: int, *, max_new_tokens: int | None = None
) -> tuple[list[Problem], list[str | None]]:
    """The suite of one difficulty and the active model's greedy answers to it, read back (None: malformed)."""
    suite = family.eval_suite(difficulty)
    if not suite:
        return [], []
    budget = max_new_tokens or max(family.answer_budget(p) for p in suite)
    completions = engine.generate([family.prompt(p) for p in suite],
                                  SamplingSpec(k=1, greedy_first=True, max_new_tokens=budget))
    return suite, [family.read_answer(p, c[0]) for p, c in zip(suite, completions, strict=True)]


def evaluate_family(
    engine: GenerationEngine, family: TaskFamily, difficulties: Iterable[int], *, max_new_tokens: int | None = None
) -> list[EvalScore]:
    """One score per difficulty; the engine's active adapter is the one measured."""
    scores = []
    for difficulty in difficulties:
        suite, answers = heldout_answers(engine, family, difficulty, max_new_tokens=max_new_tokens)
        if not suite:
            continue
        right = sum(a == family.true_answer(p) for p, a in zip(suite, answers, strict=True))
        scores.append(EvalScore(family=family.name, difficulty=difficulty, accuracy=right / len(suite), n=len(suite)))
    return scores
