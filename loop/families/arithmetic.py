"""Addition of d-digit numbers: the headline family, label-free by default.

Difficulty is the number of digits of both operands. The model-facing text (digit order, padding,
position hints) lives in ``workers.model.arithmetic_format``; here the canonical problem is plain
``a+b`` and the canonical answer plain decimal digits.
"""

from __future__ import annotations

import functools
import random

from loop.families.base import Problem, TaskFamily
from loop.families.registry import register_family
from workers.model import arithmetic_format as fmt


@register_family("arithmetic")
class Arithmetic(TaskFamily):
    def __init__(self, *, eval_seed: int = 20_250_101, eval_size: int = 200) -> None:
        self.eval_seed = eval_seed
        self.eval_size = eval_size

    @staticmethod
    def problem(a: int, b: int) -> Problem:
        return Problem("arithmetic", fmt.digit_count(a, b), f"{a}+{b}", {"a": a, "b": b})

    @staticmethod
    def _operand(difficulty: int, rng: random.Random) -> int:
        low = 0 if difficulty == 1 else 10 ** (difficulty - 1)
        return rng.randrange(low, 10**difficulty)

    def _draw(self, difficulty: int, count: int, rng: random.Random, exclude: set[str]) -> list[Problem]:
        if difficulty < 1:
            raise ValueError(f"difficulty is a digit count, at least 1; got {difficulty}")
        problems: dict[str, Problem] = {}
        capacity = (10**difficulty - (10 ** (difficulty - 1) if difficulty > 1 else 0)) ** 2
        count = min(count, capacity - len(exclude))
        while len(problems) < count:
            p = self.problem(self._operand(difficulty, rng), self._operand(difficulty, rng))
            if p.sample_id not in exclude:
                problems.setdefault(p.sample_id, p)
        return list(problems.values())

    def make_problems(self, difficulty: int, count: int, rng: random.Random) -> list[Problem]:
        return self._draw(difficulty, count, rng, self._eval_ids(difficulty))

    @functools.cache
    def eval_suite(self, difficulty: int) -> list[Problem]:
        rng = random.Random(self.eval_seed * 1000 + difficulty)
        return self._draw(difficulty, self.eval_size, rng, set())

    @functools.cache
    def _eval_ids(self, difficulty: int) -> frozenset[str]:
        return frozenset(p.sample_id for p in self.eval_suite(difficulty))

    @staticmethod
    def width(problem: Problem) -> int:
        return fmt.default_width(problem.data["a"], problem.data["b"])

    def prompt(self, problem: Problem) -> str:
        return fmt.format_prompt(problem.data["a"], problem.data["b"], self.width(problem))

    def read_answer(self, problem: Problem, completion: str) -> str | None:
        value = fmt.parse_answer(completion, self.width(problem))
        return None if value is None else str(value)

    def write_answer(self, problem: Problem, answer: str) -> str:
        return fmt.format_answer(int(answer), self.width(problem))

    def true_answer(self, problem: Problem) -> str:
        return str(problem.data["a"] + problem.data["b"])

    def plausible(self, problem: Problem, answer: str) -> tuple[bool, str]:
        if not answer.isdigit():
            return False, f"answer {answer!r} is not a number"
        longest = max(len(str(problem.data["a"])), len(str(problem.data["b"])))
        if not longest <= len(answer) <= longest + 1:
            return False, f"a sum of {longest}-digit numbers has {longest} or {longest + 1} digits, not {len(answer)}"
        return True, f"{len(answer)} digits, as a sum of {longest}-digit numbers should"

    @staticmethod
    def problem_from(canonical: str) -> Problem:
        a, _, b = canonical.partition("+")
        return Arithmetic.problem(int(a), int(b))
