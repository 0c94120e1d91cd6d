from collections import Counter

import pytest

from tasks import get_family
from tasks.arithmetic import Arithmetic
from schemas.messages import Candidate, RelatedAnswers
from workers.verifier import VerifierChain, build_check

FAMILY = get_family("arithmetic")


def candidate_for(problem, answers, *, relatives=True):
    """A candidate whose relatives, where asked, are answered as its majority implies (a model consistent with
    itself, right or wrong)."""
    completions = [FAMILY.write_answer(problem, a) if a.isdigit() else a for a in answers]
    majority = Counter(answers).most_common(1)[0][0]
    related = related_for(problem, lambda p: _consistent_with(problem, majority, p)) if relatives else []
    return Candidate(sample_id=problem.sample_id, family="arithmetic", difficulty=problem.difficulty,
                     problem=problem.canonical, answers=completions, related=related,
                     true_answer=FAMILY.true_answer(problem))


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


def _consistent_with(problem, label, related):
    """A related answer that a model consistent with ``label`` gives: the split's top part takes the label's top
    digits, its low part the rest."""
    place = 10 ** (problem.difficulty - 1)
    if not label.isdigit():
        return "0"
    low, top = (r for r in FAMILY.relations(problem) for r in r.problems)
    return str(int(label) % place) if related == low else str(int(label) // place)


def related_for(problem, answer_of):
    """The candidate's related problems answered by ``answer_of(related problem)``, once per rendering."""
    return [RelatedAnswers(relation=r.name, problem=p.canonical,
                           answers=[FAMILY.write_answer(p, answer_of(p))] * len(FAMILY.renderings(p)))
            for r in FAMILY.relations(problem) for p in r.problems]


# A confident systematic error at the frontier: every sample and both orders agree on a units digit one too high.
SYSTEMATIC = Arithmetic.problem(396625, 433251)  # 829876; the model says 829877


def metamorphic(problem, label, answer_of):
    candidate = candidate_for(problem, [label] * 6).model_copy(update={"related": related_for(problem, answer_of)})
    verdict = VerifierChain.label_free(FAMILY).verify(candidate, problem)
    return verdict, {c.name: c for c in verdict.checks}


@pytest.mark.parametrize("relation", Arithmetic.relation_names)
def test_each_relation_rejects_a_unanimous_units_digit_one_too_high(relation):
    # The model answers the related problems (lengths it has mastered) right: the label's off-by-one shows there.
    verdict, checks = metamorphic(SYSTEMATIC, "829877", FAMILY.true_answer)
    assert checks["self_consistency"].passed  # what self-consistency alone would keep
    assert not checks[relation].passed and not verdict.accepted and verdict.label is None
    assert checks[relation].reason == ("contradicts the label: 96625+33251 answered 129876, 129876; 3+4 answered 7, 7; "
                                       "the label needs 96625+33251 and 3+4 summing to 829877 by place value")


@pytest.mark.parametrize("relation", Arithmetic.relation_names)
def test_each_relation_accepts_a_right_answer_with_its_reason(relation):
    verdict, checks = metamorphic(SYSTEMATIC, "829876", FAMILY.true_answer)
    assert checks[relation].passed and verdict.accepted and verdict.label == "829876"
    assert checks[relation].reason.startswith("agrees: 96625+33251 answered 129876, 129876; 3+4 answered 7, 7")


def test_a_wrong_top_digit_is_rejected_too():
    verdict, checks = metamorphic(SYSTEMATIC, "929876", FAMILY.true_answer)
    assert not checks["split"].passed and not verdict.accepted


def test_one_rendering_that_disagrees_fails_the_relation_with_its_share():
    candidate = candidate_for(SYSTEMATIC, ["829876"] * 6)
    related = [r if r.problem != "3+4" else r.model_copy(update={"answers": [FAMILY.write_answer(Arithmetic.problem(3, 4), "7"),
                                                                         FAMILY.write_answer(Arithmetic.problem(3, 4), "8")]})
               for r in related_for(SYSTEMATIC, FAMILY.true_answer)]
    result = {c.name: c for c in VerifierChain.label_free(FAMILY).verify(
        candidate.model_copy(update={"related": related}), SYSTEMATIC).checks}["split"]
    assert not result.passed and result.score == 0.5 and "3+4 answered 7, 8" in result.reason


def test_a_related_problem_not_asked_fails_and_a_one_digit_problem_has_no_relation():
    candidate = candidate_for(SYSTEMATIC, ["829876"] * 6, relatives=False)
    checks = {c.name: c for c in VerifierChain.label_free(FAMILY).verify(candidate, SYSTEMATIC).checks}
    assert not checks["split"].passed and "was not asked" in checks["split"].reason
    verdict, checks = metamorphic(Arithmetic.problem(7, 5), "12", FAMILY.true_answer)
    assert checks["split"].passed and "no split relation" in checks["split"].reason and verdict.accepted


def test_relations_are_a_pure_function_of_the_problem_and_ask_only_shorter_problems():
    for a, b in [(396625, 433251), (883621, 6), (93, 970205), (99999, 99999), (10, 0)]:
        problem = Arithmetic.problem(a, b)
        first, again = FAMILY.relations(problem), FAMILY.relations(Arithmetic.problem(a, b))
        assert first == again and {r.name for r in first} <= set(Arithmetic.relation_names)
        for relation in first:
            assert all(p.difficulty < problem.difficulty for p in relation.problems)
            assert relation.agrees(FAMILY.true_answer(problem), tuple(FAMILY.true_answer(p) for p in relation.problems))


def test_a_replayed_candidate_of_schema_version_1_is_not_failed_for_lacking_related_answers():
    candidate = candidate_for(SYSTEMATIC, ["829876"] * 6, relatives=False).model_copy(update={"schema_version": 1})
    split = {c.name: c for c in VerifierChain.label_free(FAMILY).verify(candidate, SYSTEMATIC).checks}["split"]
    assert split.passed and "predates related problems" in split.reason


def test_answers_that_go_on_past_the_format_are_labelled_by_its_places():
    problem = Arithmetic.problem(9868272, 6949327)  # 16817599, a carry into the top place
    answers = [FAMILY.write_answer(problem, "16817599") + "i8j9", FAMILY.write_answer(problem, "16817599") + "i0"] * 3
    candidate = candidate_for(problem, ["16817599"] * 6).model_copy(update={"answers": answers})
    verdict = VerifierChain.label_free(FAMILY).verify(candidate, problem)
    assert verdict.accepted and verdict.label == "16817599", [c.reason for c in verdict.checks if not c.passed]
    wrong = [FAMILY.write_answer(problem, "16817598") + "i8"] * 6  # unanimous and wrong: the split still catches it
    verdict = VerifierChain.label_free(FAMILY).verify(candidate.model_copy(update={"answers": wrong}), problem)
    assert not verdict.accepted
