"""A family from a JSONL file: broken records reported by line and skipped, a fixed held-out split, answer
extractors, and the user's checker (an exception rejects the label with the exception as its reason)."""

from __future__ import annotations

import json
import random

import pytest

from schemas.messages import Candidate
from tasks import FamilyError, get_family
from workers.verifier import VerifierChain, build_check

RECORDS = [{"question": f"What is {i} + {i}?", "answer": str(2 * i), "difficulty": 1 + i % 2} for i in range(40)]


@pytest.fixture
def checker_module(tmp_path, monkeypatch):
    (tmp_path / "my_checks.py").write_text(
        "def score(record, answer):\n"
        "    if record['question'] == 'What is 13 + 13?':\n"
        "        raise ZeroDivisionError('the checker broke on this one')\n"
        "    return float(answer == record['answer']), 'compared with the reference'\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    return "my_checks:score"


@pytest.fixture
def data_file(tmp_path):
    lines = [json.dumps(r) for r in RECORDS[:10]]
    lines.insert(3, "{not json")
    lines.insert(6, json.dumps({"answer": "7"}))  # no question
    lines.insert(8, json.dumps({"question": "What is 1 + 2?", "unit": None, "difficulty": 0}))  # difficulty < 1
    lines += [json.dumps(r) for r in RECORDS[10:]] + [""]
    path = tmp_path / "problems.jsonl"
    path.write_text("\n".join(lines))
    return path


def family(path, **options):
    return get_family("jsonl", path=str(path), **options)


def test_broken_records_are_reported_with_their_line_and_the_rest_runs(data_file):
    task = family(data_file)
    report = task.load_report()
    assert [line.split(": ")[0].rsplit(":", 1)[1] for line in report] == ["4", "7", "9"]
    assert "JSONDecodeError" in report[0] and "question" in report[1] and "difficulty" in report[2]
    assert len(task._train) + len(task._heldout) == 40


def test_a_record_that_breaks_the_template_is_skipped(tmp_path):
    path = tmp_path / "units.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in [{"question": "How long is a mile?", "unit": "km"},
                                                      {"question": "How heavy is a pound?"},
                                                      {"question": "How hot is 100 F?", "unit": "C"}]))
    task = family(path, template="{{ question }} Answer in {{ unit }}.", heldout_share=0.0)
    assert task.load_report() == [f"skipped {path}:2: UndefinedError: 'unit' is undefined"]
    prompts = sorted(task.prompt(p) for p in task.make_problems(1, 10, random.Random(0)))
    assert prompts == ["How hot is 100 F? Answer in C.", "How long is a mile? Answer in km."]
    with pytest.raises(FamilyError, match=r"holds no usable problem \(3 records skipped\)"):
        family(path, template="{{ nothing_here }}")


def test_the_held_out_split_is_fixed_by_its_seed_and_never_drawn_for_training(data_file):
    task, again = family(data_file, heldout_share=0.25), family(data_file, heldout_share=0.25)
    held = {p.canonical for d in task.difficulties for p in task.eval_suite(d)}
    assert held == {p.canonical for d in again.difficulties for p in again.eval_suite(d)} and len(held) == 10
    drawn = {p.canonical for d in task.difficulties for p in task.make_problems(d, 100, random.Random(1))}
    assert len(drawn) == 30 and not drawn & held
    other = {p.canonical for d in (1, 2) for p in family(data_file, heldout_share=0.25, heldout_seed=9).eval_suite(d)}
    assert other != held


@pytest.mark.parametrize(("extractor", "completion", "answer"), [
    ("answer", "Let me think. 6 + 6 = 12.\nAnswer: 12.", "12"),
    ("boxed", "so the sum is \\boxed{\\frac{24}{2}}", "\\frac{24}{2}"),
    ("raw", "  12 \n", "12"),
    (r"sum is (\d+)", "the sum is 12, I think", "12"),
    ("answer", "no conclusion", None),
])
def test_answer_extractors(data_file, extractor, completion, answer):
    task = family(data_file, extractor=extractor, answer_format="the sum is {answer}" if "(" in extractor else None)
    problem = task.make_problems(1, 1, random.Random(0))[0]
    assert task.read_answer(problem, completion) == answer


def test_the_checker_passes_right_labels_and_an_exception_rejects_with_its_reason(data_file, checker_module):
    task = family(data_file, checker=checker_module, heldout_share=0.0)
    chain = VerifierChain(task, [build_check("self_consistency", threshold=1.0), build_check("checker")])
    problems = {p.canonical: p for d in task.difficulties for p in task.make_problems(d, 100, random.Random(0))}

    def verdict(question, answer):
        problem = problems[question]
        completion = task.write_answer(problem, answer)
        candidate = Candidate(sample_id=problem.sample_id, family="jsonl", difficulty=problem.difficulty,
                              problem=problem.canonical, answers=[completion] * 2, meta=problem.data)
        return chain.verify(candidate, problem)

    right, wrong = verdict("What is 4 + 4?", "8"), verdict("What is 4 + 4?", "9")
    assert right.accepted and right.label == "8" and "checker scored 1 (at or above 0.5)" in right.checks[1].reason
    assert not wrong.accepted and "checker scored 0 (below 0.5): compared with the reference" in wrong.checks[1].reason
    broke = verdict("What is 13 + 13?", "26")
    assert not broke.accepted
    assert broke.checks[1].reason == "checker raised ZeroDivisionError: the checker broke on this one"
    assert verdict("What is 5 + 5?", "10").accepted  # and the next one is judged as usual


def test_a_checker_that_cannot_be_loaded_stops_the_family(data_file):
    with pytest.raises(FamilyError, match="cannot load the checker nowhere_at_all:score: ModuleNotFoundError"):
        family(data_file, checker="nowhere_at_all:score")


def test_an_extractor_must_read_back_the_labels_training_writes(data_file):
    with pytest.raises(FamilyError, match="needs answer_format"):
        family(data_file, extractor=r"sum is (\d+)")
    with pytest.raises(FamilyError, match="does not read back a label written as 'Total {answer}'"):
        family(data_file, extractor=r"sum is (\d+)", answer_format="Total {answer}")
    with pytest.raises(FamilyError, match="error"):
        family(data_file, extractor=r"sum is (\d+")
    with pytest.raises(FamilyError, match="TemplateSyntaxError"):
        family(data_file, template="{{ question ")


def test_numbers_read_as_text_and_every_difficulty_has_held_out_items_with_answers(tmp_path):
    path = tmp_path / "mixed.jsonl"
    rows = [{"question": f"q{i}?", "answer": i, "difficulty": 1 + i % 3} for i in range(30)]
    rows += [{"question": f"open{i}?", "difficulty": 1} for i in range(10)]  # no reference answer
    path.write_text("\n".join(json.dumps(r) for r in rows))
    task = family(path, heldout_share=0.05)
    assert task.load_report() == []
    for difficulty in (1, 2, 3):
        suite = task.eval_suite(difficulty)
        assert len(suite) == 1 and all(task.true_answer(p) is not None for p in suite)
    assert task.true_answer(task.eval_suite(2)[0]) == task.eval_suite(2)[0].canonical[1:-1]


def test_a_checker_that_returns_nonsense_rejects_the_label_with_the_reason(data_file, tmp_path, monkeypatch):
    (tmp_path / "odd_checks.py").write_text("def score(record, answer):\n    return 'high'\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    task = family(data_file, checker="odd_checks:score")
    problem = task.make_problems(1, 1, random.Random(0))[0]
    passed, score, reason = task.check_answer(problem, "2")
    assert not passed and reason == "checker raised ValueError: could not convert string to float: 'high'"
