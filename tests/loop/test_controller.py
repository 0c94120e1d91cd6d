"""The controller's round bookkeeping on the real broker, its handlers called directly: verdicts counted by what
their checks say, the label-free contradiction estimate, and the round after a contradicted one asking twice the
answers."""

from __future__ import annotations

import json

import pytest

from loop.controller import Controller
from loop.policy import LoopPolicy
from schemas.messages import AdapterEvent, CheckResult, EvalResult, EvalScore, Verdict
from services.bus import create_topics

pytestmark = pytest.mark.kafka


def verdict(i: int, *, consistent: bool, split: bool) -> Verdict:
    checks = [CheckResult(name="format", passed=True, score=1, reason=""),
              CheckResult(name="self_consistency", passed=consistent, score=1, reason=""),
              CheckResult(name="split", passed=split, score=1, reason="")]
    return Verdict(sample_id=f"s{i}", family="arithmetic", accepted=consistent and split, label="1", checks=checks)


def run_round(controller: Controller, adapter_id: str, *, contradicted: int = 0, agreeing: int = 100,
              accuracy: float = 1.0, init: str = "base") -> dict:
    for i in range(agreeing):
        controller.count_verdict(verdict(i, consistent=True, split=i >= contradicted))
    for i in range(50):  # answers that did not agree count as verified, not as agreeing
        controller.count_verdict(verdict(1000 + i, consistent=False, split=True))
    trained = AdapterEvent(adapter_id=adapter_id, base_model="m", path=f"/a/{adapter_id}", status="trained",
                           config={"init": init})
    controller.state.evaluating[adapter_id] = trained.model_dump(mode="json")
    controller.on_eval(EvalResult(adapter_id=adapter_id, suite="heldout", scores=[
        EvalScore(family="arithmetic", difficulty=1, accuracy=1.0, n=10),
        EvalScore(family="arithmetic", difficulty=2, accuracy=accuracy, n=10)]))
    return json.loads(controller.rounds_path.read_text().splitlines()[-1])


def test_a_round_whose_relations_contradict_too_many_answers_doubles_k_for_the_next(settings):
    create_topics(settings)
    controller = Controller(settings, LoopPolicy(k=6, max_contradicted=0.25, min_gain=-1.0))
    try:
        controller.state.promoted_scores = [EvalScore(family="arithmetic", difficulty=1, accuracy=1.0, n=10).model_dump()]
        assert controller.relation_names == ("split",)
        row = run_round(controller, "a1", contradicted=30)
        assert (row["contradicted"], row["k"], row["accepted"]) == (0.3, 6, 70)
        assert controller.state.stricter and controller.sampling().k == 12
        assert controller.state.consistent_in_round == 0 and controller.state.verified_in_round == 0  # a new round
        row = run_round(controller, "a2", contradicted=10)
        assert (row["contradicted"], row["k"]) == (0.1, 12)
        assert not controller.state.stricter and controller.sampling().k == 6
        assert controller.state.round == 3
    finally:
        controller.close()


def test_a_rejected_round_makes_the_next_continue_the_promoted_adapter(settings):
    create_topics(settings)
    controller = Controller(settings, LoopPolicy(lora={"steps": 600}))
    try:
        controller.state.promoted_scores = [s.model_dump() for s in (
            EvalScore(family="arithmetic", difficulty=1, accuracy=1.0, n=10),
            EvalScore(family="arithmetic", difficulty=2, accuracy=0.5, n=10))]
        controller.state.promoted_id, controller.state.promoted_path = "a0", "/a/a0"
        assert controller.lora() == {"steps": 600}
        row = run_round(controller, "a1", accuracy=0.5)  # no gain at the frontier: rejected
        assert (row["promoted"], row["init"]) == (False, "base")
        assert controller.state.last_rejected and controller.lora() == {"steps": 600, "init": "parent"}
        row = run_round(controller, "a2", accuracy=0.7, init="parent")  # a gain: promoted
        assert (row["promoted"], row["init"]) == (True, "parent")
        assert controller.state.promoted_path == "/a/a2"
        assert not controller.state.last_rejected and controller.lora() == {"steps": 600}
    finally:
        controller.close()


def test_verdicts_of_an_earlier_round_do_not_count_in_this_one(settings):
    from services.bus import Event

    create_topics(settings)
    controller = Controller(settings, LoopPolicy(min_gain=-1.0))
    try:
        controller.state.promoted_scores = [EvalScore(family="arithmetic", difficulty=1, accuracy=1.0, n=10).model_dump()]
        controller.state.round = 3
        late = [verdict(i, consistent=True, split=True).model_copy(update={"round": 2}) for i in range(5)]
        current = [verdict(10 + i, consistent=True, split=True).model_copy(update={"round": 3}) for i in range(4)]
        unknown = [verdict(20, consistent=False, split=True)]  # a version-1 verdict: no round, counted as before
        controller.handle([Event(v, Verdict.topic, 0, i, v.key().encode(), 0)
                           for i, v in enumerate(late + current + unknown)])
        assert (controller.state.verified_in_round, controller.state.accepted_in_round) == (5, 4)
    finally:
        controller.close()
