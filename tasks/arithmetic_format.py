"""How an addition problem is written for the builtin model, and how its answer is read back.

The format is what makes length generalization learnable on a small budget (see docs/recipe.md):
- digits are written least significant first, in the operands and in the answer, so each answer digit depends only
  on digits already seen (the carry flows left to right in generation order);
- operands and answer are zero-padded to one width, one digit more than the longer operand, so every digit of
  significance i sits in every part of the sequence;
- every digit is preceded by a position hint, the letter of its significance (a = units, b = tens, ...), so an
  answer digit finds its operand digits by matching letters rather than by counting positions.

Example, 57 + 8 = 65 at width 3:  prompt "a7b5c0+a8b0c0="  answer "a5b6c0".

Training (not inference) also writes examples up to two digits wider and with the letters starting one late
("b7c5d0e0+b8c0d0e0=" "b5c6d0e0"): the model then sees the widths of longer problems and every letter it will need
one digit later holding a real digit, so it reaches one digit past its training range, and no further, because the
letter after that has never held a real digit. Self-improvement rounds move that frontier one digit per round.
"""

from __future__ import annotations

import random
import re
import string
from dataclasses import dataclass

HINTS = string.ascii_lowercase + string.ascii_uppercase
MAX_WIDTH = len(HINTS)


@dataclass(frozen=True)
class AdditionExample:
    prompt: str
    answer: str  # the completion after the prompt, without the end-of-sequence token


def digit_count(a: int, b: int) -> int:
    """The difficulty of a problem: the number of digits of its longer operand."""
    return max(len(str(a)), len(str(b)))


def default_width(a: int, b: int) -> int:
    return digit_count(a, b) + 1


def _hinted(number: int, width: int, offset: int = 0) -> str:
    digits = str(number).zfill(width)[::-1]
    if len(digits) > width or offset + width > MAX_WIDTH:
        raise ValueError(f"{number} does not fit in width {width} at hint offset {offset} (at most {MAX_WIDTH})")
    return "".join(HINTS[offset + i] + digit for i, digit in enumerate(digits))


def format_prompt(a: int, b: int, width: int | None = None, offset: int = 0) -> str:
    width = width or default_width(a, b)
    return f"{_hinted(a, width, offset)}+{_hinted(b, width, offset)}="


def format_answer(total: int, width: int, offset: int = 0) -> str:
    return _hinted(total, width, offset)


def format_example(a: int, b: int, total: int | None = None, extra_width: int = 0,
                   offset: int = 0) -> AdditionExample:
    """`total` is the sum to teach (the model's own answer in a label-free round); `extra_width` pads further.

    Training draws the first hint letter at random (`offset`) so that every letter is read with real digits in
    every role; the model then has to find an answer digit's operands by matching letters, not by memorising
    which letter holds which significance (a shortcut that left 0% one digit past the training range).
    """
    total = a + b if total is None else total
    width = default_width(a, b) + extra_width
    return AdditionExample(prompt=format_prompt(a, b, width, offset), answer=format_answer(total, width, offset))


def training_example(a: int, b: int, rng: random.Random, total: int | None = None, max_extra_width: int = 2,
                     hint_shift: int = 1, max_zeros: int = 0) -> AdditionExample:
    """The augmentation every training example gets, base or self-labelled: random extra padding and hint shift;
    and, where ``max_zeros`` is set, 0..max_zeros trailing zeros on both operands and the total.

    Trailing zeros keep a label true (10a + 10b = 10(a + b)) and make the problem longer: a self-labelled 5-digit
    sum also labels a 6- and a 7-digit one, written from the first letter like any canonical problem. A shifted
    example starts at a later letter, which the model can tell apart from a canonical prompt; a zero-filled one it
    cannot, so what it learns there carries over to real problems of that length (docs/recipe.md).
    """
    total = a + b if total is None else total
    if max_zeros:
        scale = 10 ** rng.randint(0, max_zeros)
        a, b, total = a * scale, b * scale, total * scale
    return format_example(a, b, total=total, extra_width=rng.randint(0, max_extra_width),
                          offset=rng.randint(0, hint_shift))


def renderings(a: int, b: int, extra_widths: int = 1, shifts: int = 0) -> list[tuple[str, int, int]]:
    """The same problem written several ways: (prompt, width, offset) for each padding and hint shift.

    A model that has not learnt a length makes errors that depend on where the digits sit, so its answers to
    these renderings disagree; agreement across them is a label-free check that sampling alone does not give
    (sampled answers of a confidently wrong model agree with each other). The defaults stay inside what the model
    can read one digit past its mastered length: one digit wider than canonical, no shift (a shifted rendering needs
    a letter that has not yet held a real digit, and fails even where the canonical answer is right).
    """
    out = []
    for offset in range(shifts + 1):
        for extra in range(extra_widths + 1):
            width = default_width(a, b) + extra
            out.append((format_prompt(a, b, width, offset), width, offset))
    return out


_HINTED_DIGIT = re.compile(r"(\D)(\d)")


def parse_answer(completion: str, width: int, rest: bool = False) -> int | None:
    """The number written in a completion, or None when it breaks the format.

    This is the label-free length/format filter: exactly `width` digits, each behind one hint character. Which
    character is not checked: the letters are fixed by the format and say nothing about the sum. A model writes the
    letter of a slot it has rarely filled (the carry slot of a length it has just learnt) with doubt, and a sampled
    answer with `J0` where `i0` belongs states the same sum as the greedy one; counting it malformed made the vote
    fail on letters while every digit agreed (docs/recipe.md).

    ``rest``: read the first `width` places and ignore what follows them (a model that did not stop).
    """
    text = completion.strip()
    if rest:
        head = re.match(rf"(?:\D\d){{{width}}}(?=\D|$)", text)  # the last place holds one digit, not two
        if head is None:
            return None
        text = head.group(0)
    pairs = _HINTED_DIGIT.findall(text)
    if len(pairs) != width or "".join(h + d for h, d in pairs) != text:
        return None
    return int("".join(digit for _, digit in pairs)[::-1])


def plausible(a: int, b: int, answer: int) -> bool:
    """A label-free range check: a sum of non-negative numbers is at least the larger one and at most twice it.

    It catches the base model's typical error one digit past its range, a top digit written as the carry alone
    (626470 + 8082 -> 34555), which every rendering and sample agrees on and a vote would keep.
    """
    larger = max(a, b)
    return larger <= answer <= 2 * larger


def random_operand(digits: int, rng: random.Random) -> int:
    return rng.randint(10 ** (digits - 1) if digits > 1 else 0, 10**digits - 1)


def random_problem(digits: int, rng: random.Random) -> tuple[int, int]:
    """One operand has exactly `digits` digits, the other any length up to it, in either order."""
    a = random_operand(digits, rng)
    b = random_operand(rng.randint(1, digits), rng)
    return (a, b) if rng.random() < 0.5 else (b, a)
