import random

import pytest

from tasks import get_family, known_families
from tasks.arithmetic import Arithmetic


def _operands_and_total(example) -> tuple[int, int, int]:
    """Read an example back: digits are written least significant first, each behind its hint letter."""
    number = lambda text: int("".join(ch for ch in text if ch.isdigit())[::-1])  # noqa: E731
    left, right = example.prompt.rstrip("=").split("+")
    return number(left), number(right), number(example.answer)


def test_unknown_family_names_the_known_ones():
    with pytest.raises(KeyError, match="unknown task family 'algebra'; known: .*arithmetic"):
        get_family("algebra")
    assert "arithmetic" in known_families()


def test_problems_have_the_asked_number_of_digits():
    family = get_family("arithmetic")
    for difficulty in (1, 3, 7):
        for problem in family.make_problems(difficulty, 50, random.Random(difficulty)):
            assert problem.difficulty == difficulty
            assert max(len(str(problem.data["a"])), len(str(problem.data["b"]))) == difficulty


def test_the_evaluation_suite_is_fixed_and_never_drawn_for_training():
    suite = get_family("arithmetic").eval_suite(2)
    assert [p.canonical for p in suite] == [p.canonical for p in Arithmetic().eval_suite(2)]
    eval_ids = {p.sample_id for p in suite}
    drawn = get_family("arithmetic").make_problems(2, 2000, random.Random(0))
    assert not eval_ids & {p.sample_id for p in drawn}


def test_answers_round_trip_through_the_model_format():
    family = get_family("arithmetic")
    problem = Arithmetic.problem(957, 68)
    completion = family.write_answer(problem, family.true_answer(problem))
    assert family.read_answer(problem, completion) == "1025"
    assert family.read_answer(problem, completion[:-2]) is None
    assert family.read_answer(problem, "hello") is None


def test_plausible_range_filter():
    family = get_family("arithmetic")
    problem = Arithmetic.problem(957, 680)
    assert family.plausible(problem, "1637")[0]
    assert family.plausible(problem, "1000")[0]  # wrong, but no range check can tell
    ok, reason = family.plausible(problem, "637")
    assert not ok and "outside [957, 1914]" in reason
    assert not family.plausible(Arithmetic.problem(626470, 8082), "34555")[0]  # the top digit as the carry alone
    assert not family.plausible(problem, "16370")[0]


def test_a_round_past_the_easy_range_trains_with_hint_letters_shifted_further():
    family = Arithmetic(easy_digits=4, hint_shift=1, scarce_digits=0)
    assert family.for_target(4).hint_shift == 1 and family.for_target(6).hint_shift == 3
    assert family.hint_shift == 1  # the family itself is unchanged
    rng = random.Random(0)
    firsts = {e.prompt[0] for e in family.for_target(6).replay_examples(rng, 400)}
    assert firsts == {"a", "b", "c", "d"}  # the first hint letter starts up to three letters late
    assert {e.prompt[0] for e in family.replay_examples(rng, 400)} == {"a", "b"}


def test_a_round_replays_every_easy_length_alike_and_the_bootstrap_weights_longer_ones_up():
    family = Arithmetic(easy_digits=4)

    def one_digit_share(examples):
        return sum(max(_operands_and_total(e)[:2]) < 10 for e in examples) / len(examples)

    # Weights 1 of 10 and 1 of 4, less the draws that hit the 25 one-digit sums of the evaluation suite.
    assert 0.06 < one_digit_share(family.replay_examples(random.Random(0), 4000)) < 0.10
    assert 0.17 < one_digit_share(family.for_target(7).replay_examples(random.Random(0), 4000)) < 0.23
    assert not family.even_replay  # the family itself is unchanged


def test_a_weak_base_gets_a_few_fixed_labelled_problems_past_the_easy_range():
    family = Arithmetic(easy_digits=3, scarce_digits=6, scarce_count=5, scarce_share=0.5)
    scarce = family.scarce_problems()
    assert sorted(p.difficulty for p in scarce) == [4] * 5 + [5] * 5 + [6] * 5
    assert [p.sample_id for p in scarce] == [p.sample_id for p in Arithmetic(
        easy_digits=3, scarce_digits=6, scarce_count=5).scarce_problems()]  # fixed by the seed
    assert not {p.sample_id for p in scarce} & set().union(*(family.eval_ids([d]) for d in (4, 5, 6)))
    replayed = family.replay_examples(random.Random(0), 1000)
    long = [e for e in replayed if max(_operands_and_total(e)[:2]) >= 1000]
    assert 400 < len(long) < 600  # about half the replay, as scarce_share says
    assert not Arithmetic(easy_digits=3, scarce_digits=0).scarce_problems()


def test_an_addition_is_rendered_in_both_operand_orders_with_one_answer():
    family = Arithmetic()
    problem = Arithmetic.problem(957, 68)
    first, second = family.renderings(problem)
    assert first == family.prompt(problem) and second.startswith("a8b6c0d0+a7b5c9")
    assert family.read_answer(problem, family.write_answer(problem, "1025")) == "1025"  # one width for both orders


def test_a_self_labelled_sum_is_also_written_as_a_longer_one_with_trailing_zeros():
    family = Arithmetic(zero_fill=2)
    problem = Arithmetic.problem(40517, 968)
    rng = random.Random(0)
    written = [_operands_and_total(family.training_example(problem, "41485", rng)) for _ in range(300)]
    assert {(a, b, total) for a, b, total in written} == {
        (40517 * scale, 968 * scale, 41485 * scale) for scale in (1, 10, 100)}
    # The label is the model's, right or wrong: the zeros keep whatever it said, they never correct it.
    assert {total for *_, total in (_operands_and_total(family.training_example(problem, "41484", rng))
                                    for _ in range(50))} <= {41484, 414840, 4148400}
    # Every such example starts at a hint letter a canonical prompt can start at, so it reads as one.
    assert {family.training_example(problem, "41485", rng).prompt[0] for _ in range(100)} == {"a", "b"}


def test_labelled_replay_gets_no_trailing_zeros():
    rng = random.Random(1)
    replayed = [_operands_and_total(e) for e in Arithmetic(zero_fill=2).replay_examples(rng, 500)]
    assert max(max(a, b) for a, b, _ in replayed) < 10**4  # the easy range only: longer numbers come from the loop
    assert all(a + b == total for a, b, total in replayed)


def test_without_trailing_zeros_the_base_recipes_draws_are_unchanged():
    from tasks import arithmetic_format as fmt

    mine, reference = random.Random(3), random.Random(3)
    written = [fmt.training_example(57, 8, mine) for _ in range(20)]
    # The draws a base model was trained with before trailing zeros existed: padding, then hint shift.
    expected = [fmt.format_example(57, 8, extra_width=reference.randint(0, 2), offset=reference.randint(0, 1))
                for _ in range(20)]
    assert written == expected  # so a cached base model stays reproducible by its seed


def test_an_answer_is_read_from_its_digits_whatever_letter_holds_a_place():
    family = get_family("arithmetic")
    problem = Arithmetic.problem(56993, 93604450)  # width 9: the carry slot is the ninth letter, i
    assert family.read_answer(problem, "a3b4c4d1e6f6g3h9i0") == "93661443"
    assert family.read_answer(problem, "a3b4c4d1e6f6g3h9J0") == "93661443"  # a doubtful letter, the same sum
    assert family.read_answer(problem, "a3b4c4d1e6f6g3h9 0") == "93661443"
    assert family.read_answer(problem, "a3b4c4d1e6f6g3h9") is None  # a digit short: the length filter
    assert family.read_answer(problem, "a3b4c4d1e6f6g3h9i0j0") is None  # a digit long
    assert family.read_answer(problem, "a3b4c4d1e6f6g3h90") is None  # a digit without its place


def test_a_label_is_read_from_the_places_the_format_asks_for_and_the_evaluation_needs_the_stop():
    family = get_family("arithmetic")
    problem = Arithmetic.problem(9868272, 6949327)  # 16817599: width 8, the carry in the top place, h
    overrun = "a9b9c5d7e1f8g6h1i8j9"  # the right sum, then places the format does not have
    assert family.read_label(problem, overrun) == "16817599"
    assert family.read_answer(problem, overrun) is None  # the evaluation: an answer that does not stop is wrong
    assert family.read_label(problem, "a9b9c5d7e1f8g6h1") == family.read_answer(problem, "a9b9c5d7e1f8g6h1")
    assert family.read_label(problem, "a9b9c5d7e1f8g6") is None  # a place short is still malformed
    assert family.read_label(problem, "a9b9c5d7e1f8g6h16") is None  # two digits in the top place: not a sum read
    assert family.write_answer(problem, family.read_label(problem, overrun)) == "a9b9c5d7e1f8g6h1"  # trained to stop
