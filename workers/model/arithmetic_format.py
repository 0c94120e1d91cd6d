"""How an addition problem is written for the builtin model, and how its answer is read back.

The format is what makes length generalization learnable on a small budget (see docs/recipe.md):
- digits are written least significant first, in the operands and in the answer, so each answer digit depends only
  on digits already seen (the carry flows left to right in generation order);
- operands and answer are zero-padded to one width, one digit more than the longer operand, so every digit of
  significance i sits in every part of the sequence;
- every digit is preceded by a position hint, the letter of its significance (a = units, b = tens, ...), so an
  answer digit finds its operand digits by matching letters rather than by counting positions.

Example, 57 + 8 = 65 at width 3:  prompt "a7b5c0+a8b0c0="  answer "a5b6c0".
A model that has never read the letter of a position cannot write a digit there, which is what bounds how far the
base model reaches past its training lengths (one digit, through the letters it saw as padding) and what the
self-improvement rounds extend one letter at a time.
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


def random_offset(width: int, rng: random.Random) -> int:
    return rng.randint(0, MAX_WIDTH - width)


_HINTED_DIGIT = re.compile(r"([A-Za-z])(\d)")


def parse_answer(completion: str, width: int) -> int | None:
    """The number written in a completion, or None when it breaks the format.

    This is the label-free length/format filter: exactly `width` digits, each behind the right letter in order.
    """
    text = completion.strip()
    pairs = _HINTED_DIGIT.findall(text)
    if len(pairs) != width or "".join(h + d for h, d in pairs) != text:
        return None
    if any(hint != HINTS[i] for i, (hint, _) in enumerate(pairs)):
        return None
    return int("".join(digit for _, digit in pairs)[::-1])


def random_operand(digits: int, rng: random.Random) -> int:
    return rng.randint(10 ** (digits - 1) if digits > 1 else 0, 10**digits - 1)


def random_problem(digits: int, rng: random.Random) -> tuple[int, int]:
    """One operand has exactly `digits` digits, the other any length up to it, in either order."""
    a = random_operand(digits, rng)
    b = random_operand(rng.randint(1, digits), rng)
    return (a, b) if rng.random() < 0.5 else (b, a)
