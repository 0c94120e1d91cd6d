import pytest

from loop.families import get_family
from loop.families.arithmetic import Arithmetic
from schemas.messages import Candidate
from workers.verifier import VerifierChain, build_check

FAMILY = get_family("arithmetic")


def candidate_for(problem, answers):
    completions = [FAMILY.write_answer(problem, a) if a.isdigit() else a for a in answers]
    return Candidate(sample_id=problem.sample_id, family="arithmetic", difficulty=problem.difficulty,
                     problem=problem.canonical, answers=completions, true_answer=FAMILY.true_answer(problem))


def run(check, problem, answers):
    chain = VerifierChain(FAMILY, [check])
    return chain.verify(candidate_for(problem, answers), problem).checks[0]


PROBLEM = Arithmetic.problem(4521, 3390)  # 7911


def test_unknown_check_names_the_known_ones():
    with pytest.raises(KeyError, match="known: .*self_consistency"):
        build_check("vibes")


def test_format_accepts_a_plausible_majority_and_rejects_garbage():
    assert run(build_check("format"), PROBLEM, ["7911", "7911", "7911"]).passed
    result = run(build_check("format"), PROBLEM, ["zz", "a1b2", "??"])
    assert not result.passed and "none of the 3 answers is well formed" in result.reason
    out_of_range = run(build_check("format"), Arithmetic.problem(45, 33), ["100", "100"])
    assert not out_of_range.passed and "outside [45, 90]" in out_of_range.reason


def test_self_consistency_threshold():
    check = build_check("self_consistency", threshold=0.75)
    assert run(check, PROBLEM, ["7911", "7911", "7911", "7811"]).passed
    split = run(check, PROBLEM, ["7911", "7911", "7811", "7711"])
    assert not split.passed and "2 of 4 answers agree on '7911'" in split.reason and split.score == 0.5
    with pytest.raises(ValueError):
        build_check("self_consistency", threshold=0)


def test_exact_duplicate_of_an_accepted_sample_is_rejected_with_its_id():
    check = build_check("duplicate", accepted={PROBLEM.sample_id})
    result = run(check, PROBLEM, ["7911"])
    assert not result.passed and PROBLEM.sample_id in result.reason
    assert run(build_check("duplicate", accepted=set()), PROBLEM, ["7911"]).passed


def test_evaluation_items_never_enter_training():
    suite = FAMILY.eval_suite(3)
    chain = VerifierChain.label_free(FAMILY, eval_ids=FAMILY.eval_ids([3]))
    for problem in suite[:20]:
        verdict = chain.verify(candidate_for(problem, [FAMILY.true_answer(problem)] * 4), problem)
        assert not verdict.accepted and verdict.label is None
        assert "in the evaluation suite" in {c.name: c for c in verdict.checks}["contamination"].reason


def test_labels_are_the_majority_not_the_truth_unless_oracle_mode():
    wrong = ["7811"] * 4
    label_free = VerifierChain.label_free(FAMILY).verify(candidate_for(PROBLEM, wrong), PROBLEM)
    assert label_free.accepted and label_free.label == "7811"
    oracle = VerifierChain.label_free(FAMILY, oracle=True).verify(candidate_for(PROBLEM, wrong), PROBLEM)
    assert not oracle.accepted
    assert "differs from the true answer" in oracle.checks[-1].reason
