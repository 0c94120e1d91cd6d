"""A family from data, no subclass needed: a user's problems in JSONL, a prompt template, an answer extractor and an
optional checker function.

    {"question": "What is 17 * 3?", "answer": "51", "difficulty": 1}      # one record per line; "answer" optional

The policy names it ``jsonl`` with its options::

    {"family": "jsonl", "family_options": {"path": "data/my_task.jsonl", "template": "Q: {{ question }}",
     "extractor": "answer", "checker": "my_pkg.checks:score"}}

Each record is rendered with the Jinja2 ``template`` (every field of the record is a variable; an undefined one is
an error); a model with a chat template gets it applied around the text (``chat``). A record that is not JSON,
breaks the schema or the template is reported with its file and line number (``skipped``) and left out; the rest
runs. ``heldout_share`` of the problems, drawn by ``heldout_seed``, is the evaluation suite: never generated for
training, and decontaminated through the FAISS memory (``verifier = "retrieval"``). The reference answer, where a
record has one, is recorded for measurement and decides acceptance only in oracle mode. The checker, named
``module:function``, is called as ``checker(record, answer)`` and returns ``(score, reason)``, a score alone or a
bool; the label passes at ``checker_threshold`` or above, and an exception rejects it with the exception as the
reason (verl's custom reward functions work the same way).
"""

from __future__ import annotations

import functools
import json
import logging
import random
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jinja2
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from tasks.base import Problem, TaskFamily
from tasks.registry import import_object, register_family

log = logging.getLogger(__name__)

EXTRACTORS: dict[str, tuple[re.Pattern[str] | None, str | None]] = {
    "answer": (re.compile(r"Answer:\s*(.+?)\s*$", re.IGNORECASE | re.MULTILINE), "Answer: {answer}"),
    "boxed": (None, "\\boxed{{{answer}}}"),
    "raw": (None, "{answer}"),
}


class DataRecord(BaseModel):
    """One problem of the file; other fields are kept for the template and the checker."""

    model_config = ConfigDict(extra="allow", coerce_numbers_to_str=True)  # "answer": 42 reads as "42"

    question: str = Field(min_length=1)
    answer: str | None = None
    difficulty: int = Field(default=1, ge=1)


@register_family("jsonl")
class DataFamily(TaskFamily):
    chat = True

    def __init__(self, *, path: str, template: str = "{{ question }}", extractor: str = "answer",
                 answer_format: str | None = None, checker: str | None = None, checker_threshold: float = 0.5,
                 heldout_share: float = 0.1, heldout_seed: int = 0, max_answer_tokens: int = 64,
                 stop: list[str] | None = None, memory: bool = True) -> None:
        """``extractor``: ``answer`` (the text after the last ``Answer:``), ``boxed`` (the last ``\\boxed{...}``),
        ``raw`` (the whole completion), or a regular expression whose first group is the answer, with
        ``answer_format`` (``"The answer is {answer}."``) the way training writes a label so that it reads back.
        ``memory``: novelty and decontamination by FAISS near-duplicates (False: by exact problem only)."""
        if not 0.0 <= heldout_share < 1.0:
            raise ValueError(f"heldout_share must be in [0, 1), got {heldout_share}")
        self.path = Path(path)
        try:
            self.template = jinja2.Environment(undefined=jinja2.StrictUndefined, autoescape=False).from_string(template)
            self.pattern, default_format = EXTRACTORS.get(extractor, (re.compile(extractor), answer_format))
        except (jinja2.TemplateSyntaxError, re.error) as exc:
            raise ValueError(f"{type(exc).__name__}: {exc}") from exc
        self.extractor = extractor
        if self.pattern is not None and self.pattern.groups < 1:
            raise ValueError(f"the extractor {extractor!r} needs a group that captures the answer")
        answer_format = answer_format or default_format
        if answer_format is None:
            raise ValueError("a regular expression extractor needs answer_format, the way a label is written for it")
        self.answer_format = answer_format
        self.verifier = "retrieval" if memory else "label_free"
        self.checker = _import_callable(checker) if checker else None
        self.checker_threshold = checker_threshold
        self.answer_checks = ("checker",) if checker else ()
        self.max_answer_tokens = max_answer_tokens
        self.stop_strings = tuple(stop or ())
        self.skipped: list[str] = []
        problems = self._load()
        probe = next(iter(problems.values()))
        if self.read_answer(probe, self.write_answer(probe, "42")) != "42":
            raise ValueError(f"the extractor {extractor!r} does not read back a label written as "
                             f"{self.answer_format!r}: training would teach a format it cannot read")
        held = _held_out(problems.values(), heldout_share, random.Random(heldout_seed))
        self._train = [p for key, p in sorted(problems.items()) if key not in held]
        self._heldout = [p for key, p in sorted(problems.items()) if key in held]

    # -- the file -------------------------------------------------------------------------------------------------
    def _files(self) -> list[Path]:
        if self.path.is_dir():
            return sorted(self.path.glob("*.jsonl"))
        if not self.path.exists():
            raise ValueError(f"no such file or folder: {self.path}")
        return [self.path]

    def _load(self) -> dict[str, Problem]:
        problems: dict[str, Problem] = {}
        for file in self._files():
            try:
                lines = file.read_text().splitlines()
            except (OSError, UnicodeDecodeError) as exc:
                raise ValueError(f"cannot read {file}: {exc}") from exc
            for number, line in enumerate(lines, start=1):
                if not line.strip():
                    continue
                try:
                    record = DataRecord.model_validate(json.loads(line))
                    prompt = self.template.render(**record.model_dump())
                except (json.JSONDecodeError, ValidationError, jinja2.TemplateError) as exc:
                    reason = " ".join(str(exc).split())[:300]
                    self.skipped.append(f"{file}:{number}: {type(exc).__name__}: {reason}")
                    log.warning("skipped %s", self.skipped[-1])
                    continue
                problem = Problem(self.name, record.difficulty, record.question,
                                  {"record": record.model_dump(), "prompt": prompt})
                problems.setdefault(record.question, problem)
        if not problems:
            raise ValueError(f"{self.path} holds no usable problem ({len(self.skipped)} records skipped)")
        return problems

    def load_report(self) -> list[str]:
        return [f"skipped {line}" for line in self.skipped]

    # -- problems -------------------------------------------------------------------------------------------------
    @property
    def difficulties(self) -> list[int]:  # type: ignore[override]
        return sorted({p.difficulty for p in self._train + self._heldout})

    def make_problems(self, difficulty: int, count: int, rng: random.Random) -> list[Problem]:
        pool = [self._named(p) for p in self._train if p.difficulty == difficulty]
        return rng.sample(pool, min(count, len(pool)))

    @functools.cache
    def eval_suite(self, difficulty: int) -> list[Problem]:
        return [self._named(p) for p in self._heldout if p.difficulty == difficulty]

    def _named(self, problem: Problem) -> Problem:
        """The problem under the family's name (the registry names an instance after it is built)."""
        return Problem(self.name, problem.difficulty, problem.canonical, problem.data)

    def parse_problem(self, canonical: str, difficulty: int = 1, data: dict[str, Any] | None = None) -> Problem:
        if not data or "prompt" not in data or "record" not in data:
            raise ValueError(f"a jsonl problem travels with its record and prompt; got {sorted(data or {})}")
        return Problem(self.name, difficulty, canonical, dict(data))

    # -- the format -----------------------------------------------------------------------------------------------
    def prompt(self, problem: Problem) -> str:
        return problem.data["prompt"]

    def read_answer(self, problem: Problem, completion: str) -> str | None:
        answer: str | None
        if self.extractor == "raw":
            answer = completion.strip()
        elif self.extractor == "boxed":
            answer = _last_boxed(completion)
        else:
            found = self.pattern.findall(completion) if self.pattern else []
            answer = found[-1] if found else None
            answer = answer[0] if isinstance(answer, tuple) else answer
        answer = answer.strip().rstrip(".").strip() if answer else None
        return answer or None

    def write_answer(self, problem: Problem, answer: str) -> str:
        return self.answer_format.format(answer=answer)

    def true_answer(self, problem: Problem) -> str | None:
        return problem.data["record"].get("answer")

    def plausible(self, problem: Problem, answer: str) -> tuple[bool, str]:
        if not answer.strip():
            return False, "the answer is empty"
        return True, f"an answer of {len(answer)} characters"

    def answer_budget(self, problem: Problem) -> int:
        return self.max_answer_tokens

    def check_answer(self, problem: Problem, answer: str) -> tuple[bool, float, str]:
        """The user's checker on a label: (passed, score, reason); an exception fails it with the exception."""
        if self.checker is None:
            return True, 1.0, "no checker"
        try:
            returned = self.checker(problem.data["record"], answer)
            score, reason = returned if isinstance(returned, tuple) else (returned, "")
            score = float(score)
        except Exception as exc:  # noqa: BLE001 - the user's code: any failure rejects the label, with its reason
            return False, 0.0, f"checker raised {type(exc).__name__}: {exc}"
        passed = score >= self.checker_threshold
        return passed, score, f"checker scored {score:g} ({'at or above' if passed else 'below'} " \
                              f"{self.checker_threshold:g}){': ' + str(reason) if reason else ''}"


def _import_callable(spec: str) -> Callable[..., Any]:
    if ":" not in spec:
        raise ValueError(f"a checker is named module:function, got {spec!r}")
    try:
        target = import_object(spec)
    except (ImportError, AttributeError) as exc:
        raise ValueError(f"cannot load the checker {spec}: {type(exc).__name__}: {exc}") from exc
    if not callable(target):
        raise ValueError(f"the checker {spec} is not callable")
    return target


def _last_boxed(text: str) -> str | None:
    start = text.rfind("\\boxed{")
    if start < 0:
        return None
    depth, i = 1, start + len("\\boxed{")
    for j in range(i, len(text)):
        depth += {"{": 1, "}": -1}.get(text[j], 0)
        if depth == 0:
            return text[i:j]
    return None


def _held_out(problems, share: float, rng: random.Random) -> set[str]:
    """The held-out problems: ``share`` of each difficulty's problems that have a reference answer (at least one where
    a difficulty has two or more), so that every difficulty is measured and every held-out item can be scored."""
    held: set[str] = set()
    if share <= 0:
        return held
    by_difficulty: dict[int, list[str]] = {}
    for problem in problems:
        if problem.data["record"].get("answer") is not None:
            by_difficulty.setdefault(problem.difficulty, []).append(problem.canonical)
    for difficulty, keys in sorted(by_difficulty.items()):
        count = max(1, round(len(keys) * share)) if len(keys) >= 2 else 0
        held.update(rng.sample(sorted(keys), count))
    return held
