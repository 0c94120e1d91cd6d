"""The retrieval checks on the grounded family, with the real embedding model (bundled all-MiniLM-L6-v2)."""

from __future__ import annotations

import random

import pytest

from tasks import get_family
from tasks.grounded import UNKNOWN
from schemas.messages import Candidate
from workers.verifier.memory import Memory, RetrievalSettings, index_name
from workers.verifier.retrieval_checks import contains_answer, relation_view, retrieval_chain

FAMILY = get_family("grounded")
WRONG = {"home": "Zorbat", "job": "juggler", "color": "violet", "pet": "lynx", "age": "7"}


@pytest.fixture(scope="module")
def embedder():
    torch = pytest.importorskip("torch")
    from workers.verifier.embeddings import get_embedder

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # one question at a time: a second thread only waits on a shared machine
    yield get_embedder()
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def memory(embedder, tmp_path_factory):
    memory = Memory(tmp_path_factory.mktemp("memory"), embedder)
    yield memory
    memory.close()


@pytest.fixture(scope="module")
def chain(memory):
    return retrieval_chain(FAMILY, memory, RetrievalSettings())  # syncs the eval and corpus indexes


def verify(chain, problem, answer, k=4):
    candidate = Candidate(sample_id=problem.sample_id, family=FAMILY.name, difficulty=problem.difficulty,
                          problem=problem.canonical, answers=[FAMILY.write_answer(problem, answer)] * k)
    verdict = chain.verify(candidate, problem)
    return verdict, {check.name: check for check in verdict.checks}


def training_problems(answerable: bool, count: int = 3):
    problems = FAMILY.make_problems(2, 300, random.Random(11))
    return [p for p in problems if p.data["answerable"] is answerable][:count]


def test_a_paraphrase_of_an_evaluation_item_is_caught_as_contamination(chain):
    item = next(p for p in FAMILY.eval_suite(1) if p.data["answerable"] and p.data["relation"] == "home")
    paraphrase = FAMILY.problem_from_question(f"Where does {item.data['entity']} live?")
    assert paraphrase.sample_id != item.sample_id  # not an exact duplicate: only retrieval can catch it

    verdict, checks = verify(chain, paraphrase, item.data["answer"])
    assert not verdict.accepted and verdict.label is None
    assert not checks["decontamination"].passed
    assert item.sample_id in checks["decontamination"].reason and "contaminated" in checks["decontamination"].reason
    assert checks["evidence"].passed  # the answer is right: it is rejected for leaking the evaluation set
    assert f"{index_name('eval', 'grounded')}/{item.sample_id}" in {e.id for e in verdict.evidence}


def test_an_answer_the_corpus_contradicts_is_rejected_with_the_passage_as_reason(chain):
    for problem in training_problems(answerable=True):
        passage = FAMILY.world.passage_of[problem.data["entity"]]
        verdict, checks = verify(chain, problem, WRONG[problem.data["relation"]])
        assert not verdict.accepted
        evidence = checks["evidence"]
        assert not evidence.passed and evidence.reason.startswith("contradicted by")
        assert passage.id in evidence.reason and problem.data["answer"] in evidence.reason
        # The verdict keeps what was retrieved: the passage, its score and its text.
        kept = {e.id: e for e in verdict.evidence}[f"{index_name('corpus', 'grounded')}/{passage.id}"]
        assert kept.text == passage.text and 0.0 < kept.score <= 1.0

        verdict, checks = verify(chain, problem, problem.data["answer"])
        assert verdict.accepted and verdict.label == problem.data["answer"]
        assert checks["evidence"].reason.startswith("supported by") and passage.id in checks["evidence"].reason


def test_an_unanswerable_question_is_accepted_only_with_i_do_not_know(chain):
    problems = training_problems(answerable=False, count=6)
    assert {p.data["entity"] in FAMILY.world.people for p in problems} == {True, False}  # both kinds
    for problem in problems:
        verdict, checks = verify(chain, problem, UNKNOWN)
        assert verdict.accepted and verdict.label == UNKNOWN, checks["evidence"].reason
        assert "the corpus does not know" in checks["evidence"].reason
        for answer in (WRONG[problem.data["relation"]], "Tesa", "42"):
            verdict, checks = verify(chain, problem, answer)
            assert not verdict.accepted and not checks["evidence"].passed
            assert f"only {UNKNOWN!r} is supported" in checks["evidence"].reason


def test_i_do_not_know_is_wrong_where_the_corpus_answers(chain):
    problem = training_problems(answerable=True, count=1)[0]
    verdict, checks = verify(chain, problem, UNKNOWN)
    assert not verdict.accepted and checks["evidence"].reason.startswith("the corpus answers it")


def test_a_near_duplicate_of_an_accepted_sample_is_rejected_with_its_id(chain, memory):
    accepted = next(p for p in training_problems(answerable=True, count=100) if p.data["relation"] == "job")
    name = index_name("accepted", "grounded")
    memory.add(name, [accepted.sample_id], [accepted.canonical], [{"label": accepted.data["answer"]}])

    _, checks = verify(chain, accepted, accepted.data["answer"])
    assert checks["novelty"].passed  # the sample itself (a re-delivered candidate) is not its own duplicate
    reworded = FAMILY.problem_from_question(f"tell me {accepted.canonical} please")
    verdict, checks = verify(chain, reworded, accepted.data["answer"])
    assert not verdict.accepted and not checks["novelty"].passed
    assert accepted.sample_id in checks["novelty"].reason and "near-duplicate" in checks["novelty"].reason
    other = FAMILY.problem_from_question(f"how old is {accepted.data['entity']}")
    assert verify(chain, other, other.data["answer"])[1]["novelty"].passed  # same person, another question
    memory.remove(name, [accepted.sample_id])


def test_relation_views_mask_names_and_numbers_and_answers_match_whole_words():
    assert relation_view("Kavo lives in Tesa.", "Kavo") == "lives in ."
    assert relation_view("Kavo is 42 years old.", "Kavo") == "is years old."
    assert relation_view("where does Kavo live", "Kavo") == "where does live"
    assert contains_answer("Kavo works as a cook.", "cook") and not contains_answer("Kavo works as a cookie.", "cook")
    assert contains_answer("Kavo is 42 years old.", "42") and not contains_answer("Kavo is 420 years old.", "42")


def test_the_store_keeps_the_evidence_and_the_reasons(chain, tmp_path):
    from sqlmodel import Session

    from schemas.tables import Sample
    from services.bus import Event
    from services.store import open_store, upsert_events

    problem = training_problems(answerable=True, count=1)[0]
    verdict, _ = verify(chain, problem, WRONG[problem.data["relation"]])
    engine = open_store(url=f"sqlite:///{tmp_path / 'store.sqlite'}")
    with engine.begin() as connection:
        upsert_events(connection, [Event(verdict, "loop.verdicts", 0, 0, None, 0)])
    with Session(engine) as session:
        row = session.get(Sample, problem.sample_id)
    engine.dispose()
    assert row.status == "rejected"
    assert row.evidence == [e.model_dump(mode="json") for e in verdict.evidence]
    reasons = {c["name"]: c["reason"] for c in row.checks}
    assert reasons["evidence"].startswith("contradicted by") and FAMILY.world.passage_of[
        problem.data["entity"]].id in reasons["evidence"]


def test_choosing_labels_with_the_answer_the_corpus_supports_not_the_majority(memory):
    choosing = retrieval_chain(FAMILY, memory, RetrievalSettings(), agreement=0.3, choose_supported=True)
    majority = retrieval_chain(FAMILY, memory, RetrievalSettings(), agreement=0.3, sync_reference=False)
    problem = next(p for p in training_problems(True, 40) if p.data["relation"] == "job")
    right, wrong = FAMILY.true_answer(problem), WRONG["job"]
    answers = [FAMILY.write_answer(problem, a) for a in (wrong, wrong, wrong, right, right, " gibberish")]
    candidate = Candidate(sample_id=problem.sample_id, family=FAMILY.name, difficulty=problem.difficulty,
                          problem=problem.canonical, answers=answers)

    verdict = choosing.verify(candidate, problem)
    assert verdict.accepted and verdict.label == right
    evidence = next(c for c in verdict.checks if c.name == "evidence")
    assert "supported by" in evidence.reason and f"2 of 6 answers say {right!r}" in evidence.reason
    consistency = next(c for c in verdict.checks if c.name == "self_consistency")
    assert consistency.passed and consistency.score == pytest.approx(2 / 6)

    assert not majority.verify(candidate, problem).accepted  # the majority is wrong and nothing else is judged
    lonely = candidate.model_copy(update={"answers": answers[:3] + [answers[3]] + answers[:2]})
    assert not choosing.verify(lonely, problem).accepted  # 1 of 6 agree with the evidence: below 0.3

    unanswerable = training_problems(False, 1)[0]
    idk = [FAMILY.write_answer(unanswerable, a) for a in (wrong, wrong, UNKNOWN, UNKNOWN)]
    verdict = choosing.verify(candidate.model_copy(update={"sample_id": unanswerable.sample_id,
                                                           "problem": unanswerable.canonical, "answers": idk}),
                              unanswerable)
    assert verdict.accepted and verdict.label == UNKNOWN


def test_abstaining_labels_what_the_corpus_does_not_answer_i_do_not_know_whatever_the_model_said(memory, chain):
    abstaining = retrieval_chain(FAMILY, memory, RetrievalSettings(), agreement=0.5, sync_reference=False,
                                 choose_supported=True, abstain_unsupported=True)
    for unanswerable in training_problems(False, 4):
        guesses = [FAMILY.write_answer(unanswerable, a) for a in (WRONG["job"], WRONG["pet"], "Tesa", "7")]
        candidate = Candidate(sample_id=unanswerable.sample_id, family=FAMILY.name,
                              difficulty=unanswerable.difficulty, problem=unanswerable.canonical, answers=guesses)
        verdict = abstaining.verify(candidate, unanswerable)
        assert verdict.accepted and verdict.label == UNKNOWN, [c.reason for c in verdict.checks]
        checks = {c.name: c for c in verdict.checks}
        assert "the corpus does not know" in checks["evidence"].reason
        assert checks["self_consistency"].passed and "set by evidence" in checks["self_consistency"].reason

    answerable = next(p for p in training_problems(True, 40) if p.data["relation"] == "job")
    wrong = [FAMILY.write_answer(answerable, WRONG["job"])] * 4
    candidate = Candidate(sample_id=answerable.sample_id, family=FAMILY.name, difficulty=answerable.difficulty,
                          problem=answerable.canonical, answers=wrong)
    verdict = abstaining.verify(candidate, answerable)  # the corpus answers it: a wrong answer is not turned into a label
    assert not verdict.accepted and verdict.label is None


def test_a_guess_begun_with_the_subject_is_kept_over_abstentions_only_where_the_corpus_states_it(memory):
    abstaining = retrieval_chain(FAMILY, memory, RetrievalSettings(), agreement=0.3, sync_reference=False,
                                 choose_supported=True, abstain_unsupported=True)
    problem = next(p for p in training_problems(True, 40) if p.data["relation"] == "pet")
    entity = problem.data["entity"]

    def answered(guess):  # three plain abstentions, then three continuations of "A: <subject>"
        rest = FAMILY.write_answer(problem, guess)[len(entity) + 1:]
        candidate = Candidate(sample_id=problem.sample_id, family=FAMILY.name, difficulty=problem.difficulty,
                              problem=problem.canonical, answers=[f" {UNKNOWN}."] * 3 + [rest] * 3)
        return abstaining.verify(candidate, problem)

    verdict = answered(problem.data["answer"])
    assert verdict.accepted and verdict.label == problem.data["answer"]
    assert FAMILY.training_example(problem, verdict.label, random.Random(0)).prompt == FAMILY.prompt(problem)
    assert not answered(WRONG["pet"]).accepted


def test_a_word_of_the_supporting_sentence_is_not_its_answer(chain):
    problem = next(p for p in training_problems(True, 40) if p.data["relation"] == "job")
    for word in ("a", "works", "as"):
        verdict, checks = verify(chain, problem, word)
        assert not verdict.accepted and checks["evidence"].reason.startswith("contradicted by")
    assert FAMILY.stated_value("Kavo works as a cook.") == "cook" and FAMILY.stated_value("Hello there.") is None
