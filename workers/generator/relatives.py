"""The model's answers to the problems related to its candidates (``TaskFamily.relations``), for the metamorphic
checks."""

from __future__ import annotations

from tasks.base import Problem, TaskFamily
from schemas.messages import RelatedAnswers
from workers.generator.engine import GenerationEngine, SamplingSpec


def ask_relatives(engine: GenerationEngine, family: TaskFamily, problems: list[Problem],
                  max_new_tokens: int) -> list[list[RelatedAnswers]]:
    """For each problem, one greedy answer per rendering of every problem of each of its relations, in one batched
    pass."""
    asked = [[(r.name, p) for r in family.relations(problem) for p in r.problems] for problem in problems]
    prompts, owners = [], []
    for i, pairs in enumerate(asked):
        for j, (_, related) in enumerate(pairs):
            for prompt in engine.render(family.renderings(related), family.chat):
                prompts.append(prompt)
                owners.append((i, j))
    completions = engine.generate(prompts, SamplingSpec(k=1, greedy_first=True, max_new_tokens=max_new_tokens,
                                                        stop=family.stop_strings))
    answers: list[list[list[str]]] = [[[] for _ in pairs] for pairs in asked]
    for (i, j), texts in zip(owners, completions, strict=True):
        answers[i][j].extend(texts)
    return [[RelatedAnswers(relation=name, problem=related.canonical, answers=said)
             for (name, related), said in zip(pairs, mine, strict=True)]
            for pairs, mine in zip(asked, answers, strict=True)]
