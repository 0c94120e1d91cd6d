"""The offline bench's ablation family: the loop's replay, written with the self-labelled examples' trailing zeros."""

from __future__ import annotations

import random

from bench.self_improve_offline import ZeroFilledReplay
from tasks.arithmetic import Arithmetic


def _operands_and_total(example) -> tuple[int, int, int]:
    """Read an example back: digits are written least significant first, each behind its hint letter."""
    number = lambda text: int("".join(ch for ch in text if ch.isdigit())[::-1])  # noqa: E731
    left, right = example.prompt.rstrip("=").split("+")
    return number(left), number(right), number(example.answer)


def test_the_ablation_replays_the_easy_data_with_trailing_zeros_in_every_round():
    family = ZeroFilledReplay(zero_fill=2)
    for replaying in (family, family.for_target(6)):  # for_target copies the family, so every round replays so
        assert isinstance(replaying, ZeroFilledReplay) and replaying.name == "arithmetic"
        written = [_operands_and_total(e) for e in replaying.replay_examples(random.Random(1), 500)]
        assert all(a + b == total for a, b, total in written)
        longest = max(max(a, b) for a, b, _ in written)
        assert 10**4 <= longest < 10**6  # the easy range of 4 digits, up to two trailing zeros past it
    loop = [_operands_and_total(e) for e in Arithmetic(zero_fill=2).replay_examples(random.Random(1), 500)]
    assert max(max(a, b) for a, b, _ in loop) < 10**4  # the loop's replay has none
