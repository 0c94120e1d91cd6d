"""The grounded benches' measurements: answerable accuracy against hallucination, and accuracy per phrasing."""

from __future__ import annotations

from bench.grounded_rates import answer_rates, phrasing_of, phrasing_rates, pooled_rates
from tasks import get_family
from tasks.grounded import UNKNOWN
from tasks.grounded_questions import HELDOUT_TEMPLATES

FAMILY = get_family("grounded")


def test_answer_rates_split_answerable_accuracy_from_hallucination():
    suite = FAMILY.eval_suite(2)
    truth = [FAMILY.true_answer(p) for p in suite]
    assert answer_rates(FAMILY, suite, truth) == {
        "answerable": 1.0, "hallucination": 0.0, "abstention": 0.0, "n_answerable": 60.0, "n_unanswerable": 20.0}
    confident = ["Tesa" if t == UNKNOWN else t for t in truth]
    assert answer_rates(FAMILY, suite, confident)["hallucination"] == 1.0
    timid = [UNKNOWN] * len(suite)
    rates = answer_rates(FAMILY, suite, timid)
    assert (rates["answerable"], rates["abstention"], rates["hallucination"]) == (0.0, 1.0, 0.0)


def test_pooled_rates_are_per_tier_and_over_all_tiers():
    suites = {str(tier): FAMILY.eval_suite(tier) for tier in FAMILY.difficulties}
    timid_on_one = {tier: [UNKNOWN if tier == "1" else FAMILY.true_answer(p) for p in suite]
                    for tier, suite in suites.items()}
    rates = pooled_rates(FAMILY, suites, timid_on_one)
    assert set(rates) == {"1", "2", "3", "all"}
    assert rates["1"]["answerable"] == 0.0 and rates["2"]["answerable"] == rates["3"]["answerable"] == 1.0
    assert rates["all"]["n_answerable"] == 180.0 and abs(rates["all"]["answerable"] - 2 / 3) < 1e-9


def test_rates_by_phrasing_show_the_phrasing_a_model_cannot_read():
    suite = [p for d in FAMILY.difficulties for p in FAMILY.eval_suite(d)]
    answerable = [p for p in suite if p.data["answerable"]]
    assert set(phrasing_rates(FAMILY, suite, [FAMILY.true_answer(p) for p in suite])) == {
        phrasing_of(p) for p in answerable} <= {t for forms in HELDOUT_TEMPLATES.values() for t in forms}
    blind = "{e} has which pet"
    answers = [UNKNOWN if phrasing_of(p) == blind else FAMILY.true_answer(p) for p in suite]
    rates = phrasing_rates(FAMILY, suite, answers)
    weakest, rate = next(iter(rates.items()))
    assert weakest == blind and rate == {"accuracy": 0.0, "n": sum(phrasing_of(p) == blind for p in answerable)}
    assert all(r["accuracy"] == 1.0 for phrasing, r in rates.items() if phrasing != blind)
    assert sum(r["n"] for r in rates.values()) == len(answerable)  # unanswerable questions are not counted
