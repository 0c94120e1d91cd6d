"""Addition of d-digit numbers: the headline family, label-free by default.

Difficulty is the number of digits of the longer operand; the other has any length up to it. The model-facing text (digit order, padding,
position hints) lives in ``tasks.arithmetic_format``; here the canonical problem is plain
``a+b`` and the canonical answer plain decimal digits.
"""

from __future__ import annotations

import copy
import functools
import random
from collections.abc import Collection

from tasks.base import Example, Problem, Relation, TaskFamily
from tasks.registry import register_family
from tasks import arithmetic_format as fmt


@register_family("arithmetic")
class Arithmetic(TaskFamily):
    def __init__(
        self, *, eval_seed: int = 20_250_101, eval_size: int = 200, easy_digits: int = 4, max_extra_width: int = 2,
        hint_shift: int = 1, scarce_digits: int = 0, scarce_count: int = 0, scarce_share: float = 0.0,
        scarce_seed: int = 7, zero_fill: int = 2, even_replay: bool = False,
    ) -> None:
        """``easy_digits``: the labelled range the base model was trained on (replayed every round);
        ``max_extra_width`` and ``hint_shift``: the training augmentation of the recipe (docs/recipe.md), which
        self-labelled examples get too, so that each round shows the model the next digit's hint letter;
        ``scarce_*``: the few labelled problems of longer lengths the base also had (``scarce_problems``);
        ``zero_fill``: self-labelled examples are written with 0..zero_fill trailing zeros on both operands and
        the sum, so the model's own label of a t-digit sum also teaches it t+1 and t+2 digits (docs/recipe.md);
        ``even_replay``: replay every easy length equally often, as a round does (``for_target``), where the
        bootstrap weights longer lengths up.
        The defaults describe the default builtin model (``workers.model.builtin.BuiltinConfig``)."""
        self.eval_seed = eval_seed
        self.eval_size = eval_size
        self.easy_digits = easy_digits
        self.max_extra_width = max_extra_width
        self.hint_shift = hint_shift
        self.scarce_digits = scarce_digits
        self.scarce_count = scarce_count
        self.scarce_share = scarce_share
        self.scarce_seed = scarce_seed
        self.zero_fill = zero_fill
        self.even_replay = even_replay

    @staticmethod
    def problem(a: int, b: int) -> Problem:
        return Problem("arithmetic", fmt.digit_count(a, b), f"{a}+{b}", {"a": a, "b": b})

    def _draw(self, difficulty: int, count: int, rng: random.Random, exclude: Collection[str]) -> list[Problem]:
        if difficulty < 1:
            raise ValueError(f"difficulty is a digit count, at least 1; got {difficulty}")
        problems: dict[str, Problem] = {}
        count = min(count, self.capacity(difficulty) - len(exclude))
        while len(problems) < count:
            p = self.problem(*fmt.random_problem(difficulty, rng))
            if p.sample_id not in exclude:
                problems.setdefault(p.sample_id, p)
        return list(problems.values())

    def make_problems(self, difficulty: int, count: int, rng: random.Random) -> list[Problem]:
        return self._draw(difficulty, count, rng, self._eval_ids(difficulty))

    @staticmethod
    def capacity(difficulty: int) -> int:
        """How many distinct problems a difficulty holds (pairs whose longer operand has that many digits)."""
        return 10 ** (2 * difficulty) - (10 ** (2 * difficulty - 2) if difficulty > 1 else 0)

    @functools.cache
    def eval_suite(self, difficulty: int) -> list[Problem]:
        # At most a quarter of a small difficulty is held out, so that training still sees most of it.
        rng = random.Random(self.eval_seed * 1000 + difficulty)
        return self._draw(difficulty, min(self.eval_size, self.capacity(difficulty) // 4), rng, set())

    @functools.cache
    def _eval_ids(self, difficulty: int) -> frozenset[str]:
        return frozenset(p.sample_id for p in self.eval_suite(difficulty))

    @staticmethod
    def width(problem: Problem) -> int:
        return fmt.default_width(problem.data["a"], problem.data["b"])

    def prompt(self, problem: Problem) -> str:
        return fmt.format_prompt(problem.data["a"], problem.data["b"], self.width(problem))

    def renderings(self, problem: Problem) -> list[str]:
        """a+b and b+a: the sum is the same, the digits sit in other places (docs/recipe.md: at the frontier,
        agreement of both orders keeps far fewer of the wrong labels than samples of one order)."""
        a, b = problem.data["a"], problem.data["b"]
        return [self.prompt(problem), fmt.format_prompt(b, a, self.width(problem))]

    relation_names = ("split",)

    def relations(self, problem: Problem) -> list[Relation]:
        """``split``: a + b of d digits is the sum of its low parts (the last d - 1 digits of each operand) plus its
        top digits, shifted into place; the model answers both parts, which are problems of the lengths it has
        mastered (d - 1 digits and one digit), and the label must equal their sum by place value. A unanimous wrong sum
        at the frontier (a units digit one too high in every sample and both orders) is a frontier-length error: the
        parts are answered right, and contradict it. Measured on a round's agreeing answers, the split rejected every
        wrong label and no right one, where a shifted pair (a + x, b - x) and a neighbour (a + 1, b), which keep the
        frontier's length, repeated the error (docs/verification.md)."""
        a, b = problem.data["a"], problem.data["b"]
        if problem.difficulty < 2:
            return []
        place = 10 ** (problem.difficulty - 1)
        low, top = self.problem(a % place, b % place), self.problem(a // place, b // place)

        def agrees(label: str, answers: tuple[str, ...]) -> bool:
            low_sum, top_sum = answers
            return label.isdigit() and int(label) == int(top_sum) * place + int(low_sum)

        return [Relation("split", (low, top), agrees,
                         lambda label: f"{low.canonical} and {top.canonical} summing to {label} by place value",
                         f"the low {problem.difficulty - 1} digits and the top digit")]

    def read_answer(self, problem: Problem, completion: str) -> str | None:
        value = fmt.parse_answer(completion, self.width(problem))
        return None if value is None else str(value)

    def read_label(self, problem: Problem, completion: str) -> str | None:
        """The sum the format's places hold, whatever the model wrote after them. A model one length past what it
        was trained on writes a carry into the top place right and then goes on writing places (``h1i8j9``), as it
        has never seen that place hold a 1 and the answer end; read strictly, those answers never agree, so the
        loop never keeps such a sum and the model never learns to stop there (measured: every 7-digit sum with a
        carry out, 25 of 200, stayed wrong over three rounds). Its trained example ends where the format ends. The
        evaluation reads strictly (``read_answer``): an answer that does not stop is wrong there."""
        value = fmt.parse_answer(completion, self.width(problem), rest=True)
        return None if value is None else str(value)

    def write_answer(self, problem: Problem, answer: str) -> str:
        return fmt.format_answer(int(answer), self.width(problem))

    def for_target(self, target: int) -> "Arithmetic":
        """A round aimed at ``target`` digits shifts the hint letters of its training examples (self-labelled and
        replayed) one letter further per digit past the easy range: the letters of the next length then hold real
        digits often enough to give the model a foothold there (docs/recipe.md: with the base's shift, 0-1% one
        digit past a new length; one letter further, 70%).

        Its replay gives every easy length the same share: weighted to longer lengths, as the bootstrap draws them,
        one-digit sums written the way the evaluation asks are about one example in 500 of a 7-digit round's
        batches, and an adapter retrained on the same round's snapshot wrote 0 + 1, 1 + 1 and 2 + 1 with an extra
        top digit 1 (7 of the 100 one-digit sums wrong; evenly replayed: none, docs/recipe.md)."""
        shifted = copy.copy(self)
        shifted.hint_shift = self.hint_shift + max(0, target - self.easy_digits)
        shifted.even_replay = True
        return shifted

    def training_example(self, problem: Problem, answer: str, rng: random.Random) -> Example:
        """A self-labelled sample as it is trained on: the recipe's augmentation plus the trailing zeros."""
        return self._written(problem, answer, rng, self.zero_fill)

    def replayed_example(self, problem: Problem, rng: random.Random) -> Example:
        """A labelled problem as it is replayed: the recipe's augmentation, no trailing zeros, so that longer
        numbers reach the model only through its own answers (docs/recipe.md)."""
        return self._written(problem, self.true_answer(problem), rng, 0)

    def _written(self, problem: Problem, answer: str, rng: random.Random, zeros: int) -> Example:
        example = fmt.training_example(problem.data["a"], problem.data["b"], rng, total=int(answer),
                                       max_extra_width=self.max_extra_width, hint_shift=self.hint_shift,
                                       max_zeros=zeros)
        return Example(example.prompt, example.answer)

    def replay_examples(self, rng: random.Random, count: int) -> list[Example]:
        """The base's labelled data: easy problems, longer lengths weighted up as the bootstrap draws them (every
        length alike with ``even_replay``), the evaluation suite excluded; and ``scarce_share`` of them drawn from the
        few labelled longer problems."""
        lengths = list(range(1, self.easy_digits + 1))
        scarce = self.scarce_problems()
        examples: list[Example] = []
        while len(examples) < count:
            if scarce and rng.random() < self.scarce_share:
                problem = rng.choice(scarce)
            else:
                weights = None if self.even_replay else lengths
                problem = self.problem(*fmt.random_problem(rng.choices(lengths, weights=weights)[0], rng))
                if problem.sample_id in self._eval_ids(problem.difficulty):
                    continue
            examples.append(self.replayed_example(problem, rng))
        return examples

    @functools.cache
    def scarce_problems(self) -> tuple[Problem, ...]:
        """The few labelled problems past the easy range that a weak base is given: ``scarce_count`` of each length
        ``easy_digits + 1 .. scarce_digits``, fixed by ``scarce_seed``, none from the evaluation suite. The base
        learns those lengths only partly from them; the loop has to do the rest (docs/recipe.md)."""
        rng = random.Random(self.scarce_seed)
        return tuple(p for digits in range(self.easy_digits + 1, self.scarce_digits + 1)
                     for p in self.make_problems(digits, self.scarce_count, rng))

    def answer_budget(self, problem: Problem) -> int:
        return len(fmt.format_answer(0, self.width(problem))) + 2

    def true_answer(self, problem: Problem) -> str:
        return str(problem.data["a"] + problem.data["b"])

    def plausible(self, problem: Problem, answer: str) -> tuple[bool, str]:
        """A label-free range check: a sum is at least the larger operand and at most twice it. It catches
        the typical error one digit past the mastered range (the top digit written as the carry alone)."""
        if not answer.isdigit():
            return False, f"answer {answer!r} is not a number"
        a, b = problem.data["a"], problem.data["b"]
        if not fmt.plausible(a, b, int(answer)):
            return False, f"{answer} is outside [{max(a, b)}, {2 * max(a, b)}], where a sum of {a} and {b} must lie"
        return True, f"{answer} lies between the larger operand and twice it"

    def parse_problem(self, canonical: str, difficulty: int = 0, data: dict | None = None) -> Problem:
        a, plus, b = canonical.partition("+")
        if not plus or not a.isdigit() or not b.isdigit():
            raise ValueError(f"not an addition problem: {canonical!r}")
        return self.problem(int(a), int(b))

