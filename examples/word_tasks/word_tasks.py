"""An example task family written only against selfloop's public API (``tasks``): spell a word backwards.

    pip install -e examples/word_tasks          # registers the entry point "reverse-words"
    loopctl tasks                                # lists it
    echo '{"family": "reverse-words"}' > policy.json && loopctl up --policy policy.json

Copy this file to start your own family. What a family supplies: problems by difficulty (here, the word length),
the prompt, how an answer is read from a completion and written for training, the true answer (for measurement
only), a cheap plausibility filter, a held-out suite (fixed seed, never trained on), labelled examples to replay,
and, optionally, its own checker (``check_answer``, run as the ``checker`` check of its verifier chain).
"""

from __future__ import annotations

import functools
import random
import string

from tasks import Example, Problem, TaskFamily

LETTERS = string.ascii_lowercase


class ReverseWords(TaskFamily):
    name = "reverse-words"
    answer_checks = ("checker",)  # run check_answer on every label, beside self-consistency
    chat = True  # prompts are a user's message: a model with a chat template gets it around them

    def __init__(self, *, eval_seed: int = 1234, eval_size: int = 20, easy_length: int = 3) -> None:
        self.eval_seed, self.eval_size, self.easy_length = eval_seed, eval_size, easy_length

    @property
    def difficulties(self) -> range:
        return range(1, 9)

    def _problem(self, word: str) -> Problem:
        return Problem(self.name, len(word) - 2, word, {"word": word})

    def _draw(self, difficulty: int, count: int, rng: random.Random, exclude: frozenset[str]) -> list[Problem]:
        found: dict[str, Problem] = {}
        for _ in range(count * 20):
            if len(found) >= count:
                break
            word = "".join(rng.choice(LETTERS) for _ in range(difficulty + 2))
            if word not in exclude:
                found.setdefault(word, self._problem(word))
        return list(found.values())

    def make_problems(self, difficulty: int, count: int, rng: random.Random) -> list[Problem]:
        return self._draw(difficulty, count, rng, self._held_out(difficulty))

    @functools.cache
    def eval_suite(self, difficulty: int) -> list[Problem]:
        return self._draw(difficulty, self.eval_size, random.Random(self.eval_seed + difficulty), frozenset())

    @functools.cache
    def _held_out(self, difficulty: int) -> frozenset[str]:
        return frozenset(p.canonical for p in self.eval_suite(difficulty))

    def prompt(self, problem: Problem) -> str:
        return f"Spell {problem.canonical} backwards:"

    def read_answer(self, problem: Problem, completion: str) -> str | None:
        words = completion.strip().split()
        return words[0].lower() if words and words[0].isalpha() else None

    def write_answer(self, problem: Problem, answer: str) -> str:
        return f" {answer}"

    def true_answer(self, problem: Problem) -> str:
        return problem.canonical[::-1]

    def plausible(self, problem: Problem, answer: str) -> tuple[bool, str]:
        same = sorted(answer) == sorted(problem.canonical)
        return same, f"{answer!r} {'uses' if same else 'does not use'} the letters of {problem.canonical!r}"

    def check_answer(self, problem: Problem, answer: str) -> tuple[bool, float, str]:
        """This family can check a label exactly: spelling it backwards again must give the word back."""
        back = answer[::-1]
        return back == problem.canonical, float(back == problem.canonical), f"{answer!r} backwards is {back!r}"

    def replay_examples(self, rng: random.Random, count: int) -> list[Example]:
        problems = [p for _ in range(count) for p in self.make_problems(rng.randint(1, self.easy_length - 2 or 1), 1, rng)]
        return [Example(self.prompt(p), self.write_answer(p, self.true_answer(p))) for p in problems[:count]]

    def answer_budget(self, problem: Problem) -> int:
        return len(problem.canonical) + 8
