import random

import pytest

from tasks import get_family
from tasks.grounded import UNKNOWN, GroundedQA
from workers.evaluator import (
    abstention_threshold,
    evaluate_family,
    greedy_answers,
    recitation_checked,
    scored_answers,
)


@pytest.fixture(scope="module")
def family():
    return GroundedQA(entities=30, tiers=1)


def _problems(family, count):
    problems = family.make_problems(1, 200, random.Random(0))
    answerable = [p for p in problems if p.data["answerable"]][:count]
    unanswerable = [p for p in problems if not p.data["answerable"]][:count]
    return answerable, unanswerable


def test_the_threshold_keeps_hallucination_at_the_share_asked(family):
    answerable, unanswerable = _problems(family, 10)
    problems = answerable + unanswerable
    # Sure and right on the answerable ones; on the unanswerable ones guesses at 0.1 .. 0.9, and one abstention.
    scored = [(p.data["answer"], 0.95) for p in answerable]
    scored += [(UNKNOWN, 1.0)] + [("Tesa", (i + 1) / 10) for i in range(9)]
    assert abstention_threshold(problems, scored, family, 0.0) == pytest.approx(0.9)
    assert abstention_threshold(problems, scored, family, 0.0) > 0.9  # the surest guess abstains too
    threshold = abstention_threshold(problems, scored, family, 0.2)  # two of ten may be answered
    kept = [a for a, p in scored[len(answerable):] if a != UNKNOWN and p >= threshold]
    assert len(kept) == 2 and all(p >= threshold for _, p in scored[:len(answerable)])
    assert abstention_threshold(problems, scored, family, 0.9) == 0.0  # nine guesses are allowed: none abstain
    with pytest.raises(ValueError, match="share"):
        abstention_threshold(problems, scored, family, 1.5)


def test_only_a_family_with_an_abstention_can_abstain(family):
    arithmetic = get_family("arithmetic")
    with pytest.raises(ValueError, match="no abstention"):
        abstention_threshold([], [], arithmetic, 0.05)


class _ScriptedEngine:
    """Greedy completions and their probabilities, as a generation engine would return them."""

    def __init__(self, completions):
        self.completions = completions

    def render(self, texts, chat):
        return list(texts)

    def generate(self, prompts, spec):
        return [[self.completions[prompt][0]] for prompt in prompts]

    def generate_scored(self, prompts, max_new_tokens):
        self.asked = [*getattr(self, "asked", []), *prompts]
        return [self.completions[prompt] for prompt in prompts]


def test_answers_the_model_is_unsure_of_become_abstentions(family):
    answerable, unanswerable = _problems(family, 2)
    sure, unsure = answerable
    stranger, _ = unanswerable
    completions = {
        family.prompt(sure): (family.write_answer(sure, sure.data["answer"]), 0.9),
        family.prompt(unsure): (family.write_answer(unsure, sure.data["answer"]), 0.3),
        family.prompt(stranger): (f" {UNKNOWN}.", 0.2),
    }
    engine, problems = _ScriptedEngine(completions), [sure, unsure, stranger]
    assert greedy_answers(engine, family, problems) == [sure.data["answer"], sure.data["answer"], UNKNOWN]
    assert scored_answers(engine, family, problems) == [(sure.data["answer"], 0.9), (sure.data["answer"], 0.3),
                                                        (UNKNOWN, 1.0)]
    assert greedy_answers(engine, family, problems, abstain_below=0.5) == [sure.data["answer"], UNKNOWN, UNKNOWN]


def test_begun_answers_are_read_and_withheld_alike(family):
    answerable, unanswerable = _problems(family, 1)
    (known,), (stranger,) = answerable, unanswerable
    assert family.renderings(known)[-1].endswith(f"A: {known.data['entity']}")
    completions = {  # after "A: Kavo" the model goes on with what it recalls, sure or not
        family.renderings(known)[-1]: (
            family.write_answer(known, known.data["answer"]).split(known.data["entity"], 1)[1], 0.8),
        family.renderings(stranger)[-1]: (
            family.write_answer(stranger, "Tesa").split(stranger.data["entity"], 1)[1], 0.1),
    }
    engine = _ScriptedEngine(completions)
    assert greedy_answers(engine, family, [known, stranger], rendering=-1) == [known.data["answer"], "Tesa"]
    assert greedy_answers(engine, family, [known, stranger], rendering=-1, abstain_below=0.5) == [
        known.data["answer"], UNKNOWN]


def test_with_kinds_the_share_holds_for_each_kind_of_unanswerable_question(family):
    _, unanswerable = _problems(family, 40)
    strangers = [p for p in unanswerable if family.kind(p) == "stranger"][:10]
    missing = [p for p in unanswerable if family.kind(p) == "missing"][:10]
    assert len(strangers) == len(missing) == 10
    # The model abstains on every missing attribute and guesses about every stranger, at 0.1 .. 1.0.
    scored = [(UNKNOWN, 1.0)] * 10 + [("Tesa", (i + 1) / 10) for i in range(10)]
    problems = missing + strangers
    pooled = abstention_threshold(problems, scored, family, 0.5)  # ten of twenty may be answered: all guesses
    assert pooled == 0.0
    apart = abstention_threshold(problems, scored, family, 0.5, kind=family.kind)  # five of the ten strangers
    assert apart == pytest.approx(0.5) and apart > 0.5


def test_a_question_says_what_it_asks_about(family):
    problems = family.make_problems(1, 200, random.Random(1))
    kinds = {family.kind(p) for p in problems}
    assert kinds == {"known", "missing", "stranger"}
    for problem in problems:
        answerable = family.kind(problem) == "known"
        assert answerable == problem.data["answerable"]
        assert (family.kind(problem) == "stranger") == (problem.data["entity"] not in family.world.people)
    assert family.kind(family.problem_from_question("what is the weather like for Kavo")) is None


def test_an_answer_stands_only_where_the_models_own_recitation_states_it(family):
    problems = family.make_problems(1, 400, random.Random(2))
    known = [p for p in problems if family.kind(p) == "known"]
    missing = next(p for p in problems if family.kind(p) == "missing")
    stranger = next(p for p in problems if family.kind(p) == "stranger" and p.data["relation"] == "home")
    right, wrong = known[0], next(p for p in known[1:] if p.data["entity"] != known[0].data["entity"])
    twice = next(p for p in known + [missing] if p.data["entity"] == right.data["entity"] and p != right)

    def recited(entity):  # what the model writes after the name: here, the passage it read
        return family.world.passage_of[entity].text[len(entity):]

    other = "Tesa" if wrong.data["relation"] == "home" else "1" if wrong.data["relation"] == "age" else "zzz"
    completions = {p.data["entity"]: (recited(p.data["entity"]), 0.9) for p in (right, wrong, missing)}
    completions[stranger.data["entity"]] = (" lives in Tesa. Zed works as a cook.", 0.5)  # a passage made up
    engine = _ScriptedEngine(completions)
    problems = [right, wrong, missing, stranger, twice, known[2]]
    answers = [right.data["answer"], other, "Tesa", "Tesa", "zzz", None]
    checked = recitation_checked(engine, family, problems, answers)
    # Right: the recitation states it. A wrong value, or an attribute the passage lacks: the abstention. A
    # passage the model makes up about a stranger lets a guess it agrees with through: the check catches what
    # the model does not recall, not what it recalls wrongly.
    assert checked == [right.data["answer"], UNKNOWN, UNKNOWN, "Tesa", UNKNOWN, None]
    assert sorted(engine.asked) == sorted({p.data["entity"] for p in problems[:4]})  # each name recited once
    # Abstentions and malformed answers are not recited for.
    engine.asked = []
    assert recitation_checked(engine, family, [right, missing], [UNKNOWN, None]) == [UNKNOWN, None]
    assert engine.asked == []
    written = family.problem_from_question("what is the weather like for Kavo")
    assert family.recitation_agrees(written, "sunny", " lives in Tesa.")  # nothing to check it against


def test_the_evaluation_job_scores_answers_checked_against_the_recitation():
    family = GroundedQA(entities=30, tiers=1, eval_size=9)
    suite = family.eval_suite(1)
    # A model that answers every question, with "Tesa" where the corpus says nothing, and recites what it read.
    completions = {family.prompt(p): (family.write_answer(p, p.data["answer"] if p.data["answerable"] else "Tesa"),
                                      0.9) for p in suite}
    completions.update({p.data["entity"]: (family.world.passage_of[p.data["entity"]].text[len(p.data["entity"]):]
                                            if p.data["entity"] in family.world.people else " ", 0.9) for p in suite})
    engine = _ScriptedEngine(completions)
    unanswerable = sum(not p.data["answerable"] for p in suite)
    assert unanswerable > 0
    (unchecked,) = evaluate_family(engine, family, [1], check_recitation=False)
    (checked,) = evaluate_family(engine, family, [1])
    assert unchecked.accuracy == pytest.approx(1 - unanswerable / len(suite))
    assert checked.accuracy == 1.0
