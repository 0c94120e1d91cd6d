"""The model's answers to the relatives of its problems (``TaskFamily.relations``), for the metamorphic checks."""

from __future__ import annotations

from loop.families.base import Problem, TaskFamily
from schemas.messages import RelatedAnswers
from workers.generator.engine import GenerationEngine, SamplingSpec


def ask_relatives(engine: GenerationEngine, family: TaskFamily, problems: list[Problem],
                  max_new_tokens: int) -> list[list[RelatedAnswers]]:
    """For each problem, one greedy answer per rendering of each of its relatives, all in one batched pass."""
    relatives = [family.relations(p) for p in problems]
    prompts, owners = [], []
    for i, found in enumerate(relatives):
        for j, relation in enumerate(found):
            for prompt in family.renderings(relation.problem):
                prompts.append(prompt)
                owners.append((i, j))
    completions = engine.generate(prompts, SamplingSpec(k=1, greedy_first=True, max_new_tokens=max_new_tokens))
    answers: list[list[list[str]]] = [[[] for _ in found] for found in relatives]
    for (i, j), texts in zip(owners, completions, strict=True):
        answers[i][j].extend(texts)
    return [[RelatedAnswers(relation=r.name, problem=r.problem.canonical, answers=a) for r, a in zip(found, said, strict=True)]
            for found, said in zip(relatives, answers, strict=True)]
