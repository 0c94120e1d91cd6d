from loop.policy import (LoopPolicy, contradicted_share, mastered, next_difficulty, promotion_gate, round_lora,
                         round_sampling, round_step)
from schemas.messages import EvalScore


def scores(*accuracies):
    return [EvalScore(family="arithmetic", difficulty=d, accuracy=a, n=100) for d, a in enumerate(accuracies, start=1)]


POLICY = LoopPolicy()


def test_mastered_is_the_longest_unbroken_run_above_the_threshold():
    assert mastered(scores(1.0, 0.97, 0.96, 0.4), 0.95) == 3
    assert mastered(scores(1.0, 0.5, 0.99), 0.95) == 1
    assert mastered(scores(0.2), 0.95) == 0


def test_an_adapter_that_masters_more_is_promoted():
    decision = promotion_gate(scores(1, 1, 0.3), scores(1, 1, 0.97, 0.2), POLICY)
    assert decision.promote and "masters 3" in decision.reason


def test_a_regression_on_a_mastered_difficulty_is_rejected_even_with_gains():
    decision = promotion_gate(scores(1, 1, 0.3), scores(1, 0.9, 0.99, 0.99), POLICY)
    assert not decision.promote and "regression of 0.100 at mastered difficulty 2" in decision.reason


def test_a_drop_of_exactly_the_tolerance_and_a_gain_of_exactly_the_minimum_pass():
    # 1.0 - 0.98 is 0.020000000000000018 in floats: the gate must not read it as more than 0.02.
    decision = promotion_gate(scores(1, 1, 0.3), scores(1, 0.98, 0.97), POLICY)
    assert decision.promote and "masters 3" in decision.reason
    assert promotion_gate(scores(1, 1, 0.1), scores(1, 1, 0.11), LoopPolicy(min_gain=0.01)).promote  # 0.0099999...
    assert not promotion_gate(scores(1, 1, 0.3), scores(1, 0.97, 0.4), POLICY).promote


def test_an_adapter_that_masters_more_may_lose_accuracy_on_a_length_that_stays_mastered():
    # 0.03 lost at 2 digits (more than the 0.02 tolerance) for a newly mastered 3: promoted, and the reason says so.
    decision = promotion_gate(scores(1, 1, 0.3), scores(1, 0.97, 0.99), POLICY)
    assert decision.promote and "masters 3 digits" in decision.reason and "drop 0.030 at 2" in decision.reason
    # Below the mastery bar at 2, it masters 1: a regression, whatever it gained at 3.
    decision = promotion_gate(scores(1, 1, 0.3), scores(1, 0.94, 0.99), POLICY)
    assert not decision.promote and "regression of 0.060 at mastered difficulty 2" in decision.reason


def test_one_item_of_a_small_suite_is_within_the_tolerance():
    def sized(*pairs):
        return [EvalScore(family="arithmetic", difficulty=d, accuracy=a, n=n) for d, (a, n) in enumerate(pairs, 1)]

    current = sized((1.0, 25), (1.0, 200), (0.3, 200))  # without a newly mastered length: the tolerance decides
    assert promotion_gate(current, sized((0.96, 25), (1.0, 200), (0.5, 200)), POLICY).promote  # 1 of 25
    assert not promotion_gate(current, sized((0.92, 25), (1.0, 200), (0.5, 200)), POLICY).promote  # 2 of 25
    assert not promotion_gate(current, sized((1.0, 25), (0.975, 200), (0.5, 200)), POLICY).promote  # 5 of 200


def test_no_gain_is_rejected_and_frontier_gain_is_promoted():
    assert not promotion_gate(scores(1, 1, 0.3), scores(1, 1, 0.3), POLICY).promote
    assert promotion_gate(scores(1, 1, 0.3), scores(1, 1, 0.6), POLICY).promote


def test_curriculum_jumps_past_what_is_solved_or_steps_one_at_a_time():
    assert next_difficulty(4, 7, POLICY) == 8
    assert next_difficulty(4, 3, POLICY) == 4  # not mastered yet: stay
    assert next_difficulty(4, 7, LoopPolicy(target_difficulty=6)) == 6
    stepwise = LoopPolicy(jump_to_solved=False)
    assert next_difficulty(4, 4, stepwise) == 5
    assert next_difficulty(4, 3, stepwise) == 4
    assert next_difficulty(4, 7, stepwise) == 5


def test_a_round_trains_on_what_it_accepted_once_its_problems_are_done_and_never_stalls():
    policy = LoopPolicy(retrain_after=800, retrain_after_verified=None, problems_per_round=2000)
    asked = []

    def drained(value):
        def check():
            asked.append(value)
            return value
        return check

    assert round_step(policy, accepted=800, verified=900, requested=1000, drained=drained(False)) == "train"
    assert round_step(policy, accepted=30, verified=900, requested=1000, drained=drained(True)) == "wait"
    assert asked == []  # the lags are not asked for while the round still has problems to request
    assert round_step(policy, accepted=30, verified=1990, requested=2000, drained=drained(False)) == "wait"
    assert round_step(policy, accepted=30, verified=2000, requested=2000, drained=drained(True)) == "train"
    assert round_step(policy, accepted=0, verified=2000, requested=2000, drained=drained(True)) == "more"

    per_round = LoopPolicy(retrain_after_verified=1000, problems_per_round=1000)
    assert round_step(per_round, accepted=0, verified=1000, requested=1000, drained=drained(False)) == "train"
    assert round_step(per_round, accepted=0, verified=940, requested=1000, drained=drained(True)) == "train"
    assert round_step(per_round, accepted=0, verified=0, requested=1000, drained=drained(True)) == "wait"


def test_a_round_that_keeps_nothing_trains_early_on_the_replay():
    policy = LoopPolicy(problems_per_round=4000, empty_round_after=500)
    never = lambda: False  # noqa: E731
    assert round_step(policy, accepted=0, verified=499, requested=750, drained=never) == "wait"
    assert round_step(policy, accepted=0, verified=500, requested=750, drained=never) == "train"
    assert round_step(policy, accepted=1, verified=500, requested=750, drained=never) == "wait"  # one kept: go on
    patient = LoopPolicy(problems_per_round=4000, empty_round_after=None)
    assert round_step(patient, accepted=0, verified=3000, requested=3250, drained=never) == "wait"


def test_by_default_a_round_trains_once_all_of_its_problems_are_verified():
    assert LoopPolicy(problems_per_round=300).retrain_after_verified == 300
    assert LoopPolicy(problems_per_round=300, retrain_after_verified=100).retrain_after_verified == 100
    assert LoopPolicy(retrain_after_verified=None).retrain_after_verified is None  # the trigger on accepted samples


def test_a_round_whose_relatives_contradict_too_many_answers_makes_the_next_stricter():
    policy = LoopPolicy(k=6, max_contradicted=0.25)
    assert contradicted_share(0, 0) == 0.0 and contradicted_share(200, 60) == 0.3
    assert round_sampling(policy, stricter=False).k == 6
    assert contradicted_share(200, 60) > policy.max_contradicted
    assert round_sampling(policy, stricter=True).k == 12
    assert round_sampling(LoopPolicy(k=40), stricter=True).k == 64  # the message's cap


def test_after_a_rejected_round_the_next_continues_the_promoted_adapter():
    policy = LoopPolicy(lora={"steps": 600})
    assert round_lora(policy, last_rejected=False, has_parent=True) == {"steps": 600}  # a fresh adapter
    assert round_lora(policy, last_rejected=True, has_parent=True) == {"steps": 600, "init": "parent"}
    assert round_lora(policy, last_rejected=True, has_parent=False) == {"steps": 600}  # the base is promoted
    assert policy.lora == {"steps": 600}  # the policy itself is left as it was
    off = LoopPolicy(lora={"steps": 600}, continue_after_rejection=False)
    assert round_lora(off, last_rejected=True, has_parent=True) == {"steps": 600}
