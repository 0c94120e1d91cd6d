"""The grounded QA family: a world from a seed, questions by tier, a held-out suite training never sees."""

from __future__ import annotations

import random

import pytest

from tasks import get_family, known_families
from tasks.grounded import UNKNOWN, GroundedQA
from tasks.grounded_questions import (
    HELDOUT_TEMPLATES,
    TRAIN_CORES,
    TRAIN_TEMPLATES,
    with_either_question_word,
)
from tasks.world import RELATIONS, build_world
from workers.model.tokenizer import CHARACTERS

FAMILY = get_family("grounded")


def test_the_world_is_a_function_of_its_seed():
    assert "grounded" in known_families()
    assert build_world(seed=3) == build_world(seed=3) and build_world(seed=3) != build_world(seed=4)
    world = FAMILY.world
    assert len(world.people) == 240 and len(world.passages) == 240
    assert not set(world.strangers) & set(world.people) and not set(world.towns) & set(world.people)
    for passage in world.passages:
        facts = world.people[passage.entity]
        assert len(facts) >= 2 and all(value in passage.text for value in facts.values())
    missing = sum(len(RELATIONS) - len(facts) for facts in world.people.values())
    assert 0.1 < missing / (len(RELATIONS) * len(world.people)) < 0.3  # some attributes are not in the corpus


def test_no_name_of_the_builtin_world_is_a_typo_of_another():
    from tasks.world import _edits

    names, towns = [*FAMILY.world.people, *FAMILY.world.strangers], FAMILY.world.towns
    assert len(set(names)) == len(names) == 240 + 240
    assert min(_edits(a, b) for i, a in enumerate(names) for b in [*names[i + 1:], *towns]) >= 3
    close = build_world(name_distance=1)  # without the spacing, some names are one letter apart
    people = list(close.people)
    assert any(_edits(a, b) == 1 for i, a in enumerate(people) for b in people[i + 1:])


def test_name_spacing_measures_only_the_names_that_could_be_close_and_misses_none():
    from tasks.world import NameSpacing, _edits, _name

    rng = random.Random(3)
    world = [_name(rng, rng.choice((2, 3))) for _ in range(300)]
    for distance in (2, 3):
        spacing = NameSpacing(world, distance)
        for _ in range(500):
            name = _name(rng, rng.choice((2, 2, 3)))
            expected = name not in world and all(_edits(name, other) >= distance for other in world)
            assert spacing.admits(name) == expected, (name, distance)
    drawn = NameSpacing(world, 3).draw_many(rng, 50)
    assert min(_edits(a, b) for i, a in enumerate(drawn) for b in [*drawn[i + 1:], *world]) >= 3


def test_everything_the_builtin_model_reads_or_writes_is_in_its_vocabulary():
    problems = [p for d in FAMILY.difficulties for p in FAMILY.make_problems(d, 500, random.Random(d))]
    problems += [p for d in FAMILY.difficulties for p in FAMILY.eval_suite(d)]
    text = "".join(FAMILY.prompt(p) + FAMILY.write_answer(p, FAMILY.true_answer(p)) for p in problems)
    text += "".join(FAMILY.corpus_text())
    assert set(text) <= set(CHARACTERS)
    assert max(len(FAMILY.prompt(p)) for p in problems) <= 64  # short questions, names of up to three syllables
    longest = max(len(FAMILY.write_answer(p, FAMILY.true_answer(p))) for p in problems)
    assert longest <= FAMILY.answer_budget(problems[0])


def test_training_problems_are_of_their_tier_with_some_unanswerable():
    world = FAMILY.world
    tier_of = {name: i * 3 // len(world.names) + 1 for i, name in enumerate(world.names)}
    problems = FAMILY.make_problems(2, 400, random.Random(0))
    assert len(problems) == 400 and len({p.sample_id for p in problems}) == 400
    people = [p for p in problems if p.data["entity"] in world.people]
    assert {tier_of[p.data["entity"]] for p in people} == {2} and {p.difficulty for p in problems} == {2}
    unanswerable = [p for p in problems if not p.data["answerable"]]
    assert 0.15 < len(unanswerable) / len(problems) < 0.35
    assert {p.data["entity"] in world.people for p in unanswerable} == {True, False}  # missing fact, stranger
    assert all(FAMILY.true_answer(p) == UNKNOWN for p in unanswerable)
    for p in problems:
        if p.data["answerable"]:
            assert FAMILY.true_answer(p) == world.fact(p.data["entity"], p.data["relation"])
    with pytest.raises(ValueError, match="tier"):
        FAMILY.make_problems(4, 1, random.Random(0))


def test_the_share_of_missing_attributes_among_unanswerable_questions_is_a_setting():
    def kinds(family):
        return [family.kind(p) for p in family.make_problems(2, 800, random.Random(0)) if family.kind(p) != "known"]

    default = kinds(FAMILY)
    assert 0.35 < default.count("missing") / len(default) < 0.65
    assert set(kinds(GroundedQA(missing_share=0.0))) == {"stranger"}
    assert set(kinds(GroundedQA(missing_share=1.0))) == {"missing"}
    assert GroundedQA(missing_share=0.0).eval_suite(2) == FAMILY.eval_suite(2)  # the suite does not change
    with pytest.raises(ValueError, match="missing_share"):
        GroundedQA(missing_share=1.5)


def test_training_asks_about_a_new_stranger_each_time_and_the_suite_about_the_worlds():
    from tasks.world import _edits

    world = FAMILY.world
    named = {*world.people, *world.towns, *world.strangers}
    problems = FAMILY.make_problems(3, 2000, random.Random(4))
    strangers = [p.data["entity"] for p in problems if p.data["entity"] not in world.people]
    assert len(strangers) > 150 and len(set(strangers)) > 0.9 * len(strangers)  # hardly a name twice
    assert all(min(_edits(name, other) for other in named) >= 3 for name in set(strangers))
    assert all(FAMILY.true_answer(p) == UNKNOWN for p in problems if p.data["entity"] in set(strangers))
    suite = {p.data["entity"] for d in FAMILY.difficulties for p in FAMILY.eval_suite(d)} - set(world.people)
    assert suite and suite <= set(world.strangers)
    fixed = GroundedQA(fresh_strangers=False).make_problems(3, 2000, random.Random(4))
    assert {p.data["entity"] for p in fixed} - set(world.people) <= set(world.strangers)


def test_the_held_out_suite_is_fixed_and_never_drawn_for_training():
    suite = FAMILY.eval_suite(1)
    assert [p.canonical for p in suite] == [p.canonical for p in GroundedQA().eval_suite(1)]
    answerable = [p for p in suite if p.data["answerable"]]
    assert len(answerable) == 60 and len(suite) - len(answerable) == 20
    heldout_phrasings = {t for forms in HELDOUT_TEMPLATES.values() for t in forms}
    assert not heldout_phrasings & {t for forms in TRAIN_TEMPLATES.values() for t in forms}
    held_verbs = {"name", "tell"}  # the held-out instructions' verbs: training never uses them
    assert not any(held_verbs & set(t.split()) for forms in TRAIN_TEMPLATES.values() for t in forms)
    trained = [p for d in FAMILY.difficulties for p in FAMILY.make_problems(d, 10_000, random.Random(d))]
    trained += FAMILY.make_problems(1, 10_000, random.Random(99))
    facts = {(p.data["entity"], p.data["relation"]) for p in trained}
    for problem in (p for d in FAMILY.difficulties for p in FAMILY.eval_suite(d)):
        assert (problem.data["entity"], problem.data["relation"]) not in facts  # not even in another phrasing
        assert problem.data["phrasing"] == "heldout"
    assert {p.data["phrasing"] for p in trained} == {"train"}
    assert not FAMILY.eval_ids(FAMILY.difficulties) & {p.sample_id for p in trained}


def test_no_training_phrasing_opens_as_a_held_out_one_does():
    def opening(template: str) -> str | None:  # the word after the subject of a subject-first phrasing
        words = template.split()
        return words[1] if words[0] == "{e}" else None

    held_openings = {opening(t) for forms in HELDOUT_TEMPLATES.values() for t in forms} - {None}
    assert held_openings == {"lives", "works", "likes", "has", "is"}
    trained = {opening(core) for cores in TRAIN_CORES.values() for core in cores} - {None}
    assert trained and not held_openings & trained  # no held-out question opens as a training question does


def test_training_asks_for_a_noun_with_what_and_with_which():
    assert with_either_question_word("what pet does {e} have") == ("what pet does {e} have", "which pet does {e} have")
    assert with_either_question_word("{e} calls which town home") == ("{e} calls which town home",
                                                                      "{e} calls what town home")
    assert with_either_question_word("what is the job of {e}") == ("what is the job of {e}",)  # no noun after it
    assert with_either_question_word("{e} does what for work") == ("{e} does what for work",)
    trained = {t for forms in TRAIN_TEMPLATES.values() for t in forms}
    for relation, cores in TRAIN_CORES.items():
        for core in cores:
            for word, other in (("what", "which"), ("which", "what")):
                for noun in ("town", "job", "color", "pet", "animal", "age"):
                    if f"{word} {noun}" in core:
                        assert core.replace(f"{word} {noun}", f"{other} {noun}") in TRAIN_TEMPLATES[relation]
    assert not trained & {t for forms in HELDOUT_TEMPLATES.values() for t in forms}


def test_answers_are_read_back_and_abstentions_are_one_answer():
    problem = FAMILY.make_problems(1, 1, random.Random(5))[0]
    for answer in ("Tesa", "42", UNKNOWN):
        assert FAMILY.read_answer(problem, FAMILY.write_answer(problem, answer)) == answer
    for form in (" I don't know.", " i dont know. Q: more", "I do not know"):
        assert FAMILY.read_answer(problem, form) == UNKNOWN
    assert FAMILY.read_answer(problem, "   .") is None
    age = FAMILY.problem_from_question("how old is Kavo")
    assert FAMILY.plausible(age, "42")[0] and not FAMILY.plausible(age, "old")[0]
    assert FAMILY.plausible(age, UNKNOWN)[0]
    home = FAMILY.problem_from_question("Where does Kavo live?")
    assert (home.data["entity"], home.data["relation"], home.data["phrasing"]) == ("Kavo", "home", "train")
    assert FAMILY.plausible(home, "Tesa")[0] and not FAMILY.plausible(home, "tesa")[0]


def test_every_question_is_also_asked_with_its_answer_begun_and_the_rest_is_read_as_its_answer():
    problem = next(p for p in FAMILY.make_problems(2, 100, random.Random(3)) if p.data["relation"] == "home")
    entity = problem.data["entity"]
    plain, begun = FAMILY.renderings(problem)
    assert plain == FAMILY.prompt(problem) and begun == f"{plain} {entity}"
    # What the model writes after the subject is read as a statement about the subject, nothing else.
    full = FAMILY.write_answer(problem, "Tesa")
    assert full.startswith(f" {entity} ") and FAMILY.read_answer(problem, full[len(entity) + 1:]) == "Tesa"
    assert FAMILY.read_answer(problem, " works as a cook.") is None  # another attribute answers nothing
    assert FAMILY.read_answer(problem, " I do not know.") == UNKNOWN
    written = FAMILY.problem_from_question("what is a good name")  # no subject: the question asked twice
    assert FAMILY.renderings(written) == [FAMILY.prompt(written)] * 2
    assert GroundedQA(guesses=False).renderings(problem) == [plain]


def test_candidates_are_parsed_from_the_world_not_from_the_message():
    problem = FAMILY.make_problems(1, 1, random.Random(8))[0]
    parsed = FAMILY.parse_problem(problem.canonical, 1, {"answer": "forged"})
    assert parsed == problem and parsed.sample_id == problem.sample_id
    written = FAMILY.parse_problem("Who is the mayor of Tesa", 1)
    assert written.canonical == "Who is the mayor of Tesa" and written.data["entity"] == "Tesa"
    assert FAMILY.subject(written) == "Tesa" and FAMILY.true_answer(written) is None
    assert "Passage: Kavo lives in Tesa." in FAMILY.question_prompt("Kavo lives in Tesa.")


def test_replay_teaches_the_easy_tiers_with_abstentions():
    examples = FAMILY.replay_examples(random.Random(0), 200)
    assert len(examples) == 200 and any(e.answer == f" {UNKNOWN}." for e in examples)
    tier_one = {p.data["entity"] for p in FAMILY.make_problems(1, 10_000, random.Random(0))}
    assert all(e.prompt.startswith("Q: ") and e.prompt.endswith(". A:") for e in examples)
    assert all(any(f" {name}" in e.prompt for name in tier_one) for e in examples[:50])


def test_a_corpus_sentence_answers_a_question_only_about_its_person_and_attribute():
    name = FAMILY.world.names[0]
    facts = FAMILY.world.people[name]
    relation = next(iter(facts))
    problem = FAMILY.problem_from_question(TRAIN_TEMPLATES[relation][-1].format(e=name))  # a wrapped phrasing
    assert problem.data["relation"] == relation
    passage = FAMILY.world.passage_of[name].text
    said = {s.strip() + ".": FAMILY.sentence_answers(problem, s) for s in passage.split(".") if s.strip()}
    assert sum(said.values()) == 1 and len(said) == len(facts)
    other = next(n for n in FAMILY.world.names if n != name)
    assert FAMILY.sentence_answers(problem, FAMILY.world.passage_of[other].text.split(".")[0]) is False
    written = FAMILY.problem_from_question(f"Where might {name} be found on a Sunday")
    assert written.data["relation"] is None and FAMILY.sentence_answers(written, passage.split(".")[0]) is None
    assert FAMILY.sentence_answers(problem, f"{name} was seen at the market") is None  # not a corpus-style fact
