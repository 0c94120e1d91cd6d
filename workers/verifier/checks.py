"""Verifier checks: each looks at one candidate and returns a score and a reason.

Checks are registered by name so that a family's chain is configuration (``["format",
"self_consistency", "duplicate", "contamination"]``); an unknown or duplicate name raises.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections import Counter
from collections.abc import Callable, Container
from dataclasses import dataclass

from tasks.base import Problem, TaskFamily
from tasks.registry import Registry
from schemas.messages import Candidate, CheckResult, Evidence


@dataclass
class Reading:
    """A candidate as the checks see it: its answers read back into canonical form.

    The label is the majority answer, unless a check that can tell right from wrong (the evidence check, with
    ``choose=True``) chose another of the k answers; the checks after it judge that one.
    """

    candidate: Candidate
    problem: Problem
    family: TaskFamily
    answers: list[str | None]  # None: the completion broke the format
    chosen: str | None = None
    decided_by: str | None = None  # a check that set the label from what it found, not from the answers

    @property
    def majority(self) -> tuple[str | None, int]:
        counts = Counter(a for a in self.answers if a is not None)
        if not counts:
            return None, 0
        answer, votes = counts.most_common(1)[0]
        return answer, votes

    @property
    def label(self) -> tuple[str | None, int]:
        """The answer the sample would be labelled with, and how many of the k answers say it."""
        if self.chosen is None:
            return self.majority
        return self.chosen, sum(a == self.chosen for a in self.answers)


class Check(ABC):
    name: str

    @abstractmethod
    def check(self, reading: Reading) -> CheckResult: ...

    def check_with_evidence(self, reading: Reading) -> tuple[CheckResult, list[Evidence]]:
        """The result and the evidence the check looked at (none, except for checks that retrieve)."""
        return self.check(reading), []

    def result(self, passed: bool, score: float, reason: str) -> CheckResult:
        return CheckResult(name=self.name, passed=passed, score=round(float(score), 6), reason=reason)


CHECKS: Registry[Check] = Registry("verifier check")


def register_check(name: str) -> Callable[[type[Check]], type[Check]]:
    return CHECKS.register(name)


def build_check(name: str, **options: object) -> Check:
    return CHECKS.get(name)(**options)


@register_check("format")
class FormatAndLength(Check):
    """The majority answer must be well formed and of a length the problem allows."""

    def check(self, reading: Reading) -> CheckResult:
        k = len(reading.answers)
        well_formed = [a for a in reading.answers if a is not None and reading.family.plausible(reading.problem, a)[0]]
        answer, _ = reading.label
        if answer is None:
            return self.result(False, 0.0, f"none of the {k} answers is well formed")
        ok, why = reading.family.plausible(reading.problem, answer)
        which = "majority" if reading.chosen is None else "chosen"
        return self.result(ok, len(well_formed) / k, f"{which} answer: {why}; {len(well_formed)} of {k} well formed")


@register_check("self_consistency")
class SelfConsistency(Check):
    """Majority vote over the k answers (or the share of the chosen answer); it must reach the threshold."""

    def __init__(self, threshold: float = 0.75) -> None:
        if not 0.0 < threshold <= 1.0:
            raise ValueError(f"self_consistency threshold must be in (0, 1], got {threshold}")
        self.threshold = threshold

    def check(self, reading: Reading) -> CheckResult:
        k = len(reading.answers)
        answer, votes = reading.label
        share = votes / k if k else 0.0
        if reading.decided_by is not None:
            return self.result(True, share, f"the label {answer!r} was set by {reading.decided_by}, not by a vote; "
                                            f"{votes} of {k} answers say it")
        passed = answer is not None and share >= self.threshold
        verb = "reaches" if passed else "is below"
        return self.result(passed, share, f"{votes} of {k} answers agree on {answer!r}; {share:.2f} {verb} {self.threshold:.2f}")


@register_check("metamorphic")
class Metamorphic(Check):
    """The model's answers to the related problems of a relation (``TaskFamily.relations``) must relate to the label
    as the relation says, rendering by rendering.

    One check per kind of relation, named after it, so that each kind's catch rate can be measured on its own. A
    problem with no relation of this kind passes; a related problem the generator did not ask fails (nothing vouches
    for the label). The true answer takes no part."""

    def __init__(self, relation: str, threshold: float = 1.0) -> None:
        if not 0.0 < threshold <= 1.0:
            raise ValueError(f"metamorphic threshold must be in (0, 1], got {threshold}")
        self.name = relation
        self.threshold = threshold

    def check(self, reading: Reading) -> CheckResult:
        label, _ = reading.label
        mine = [r for r in reading.family.relations(reading.problem) if r.name == self.name]
        if not mine:
            return self.result(True, 1.0, f"no {self.name} relation for {reading.problem.canonical!r}")
        if label is None:
            return self.result(False, 0.0, "no label to relate")
        if reading.candidate.schema_version < 2:
            return self.result(True, 1.0, "a candidate of schema version 1 predates related problems (a replay)")
        asked = {(r.relation, r.problem): r.answers for r in reading.candidate.related}
        agree = total = 0
        notes = []
        for relation in mine:
            said = []
            for related in relation.problems:
                completions = asked.get((relation.name, related.canonical))
                if not completions:
                    return self.result(False, 0.0, f"{related.canonical!r} ({relation.description}) was not asked")
                said.append([reading.family.read_label(related, c) for c in completions])
            for answers in zip(*said, strict=False):  # one tuple per rendering
                total += 1
                agree += None not in answers and relation.agrees(label, answers)
            shown = "; ".join(f"{p.canonical} answered {', '.join('malformed' if a is None else a for a in got)}"
                              for p, got in zip(relation.problems, said, strict=True))
            notes.append(f"{shown}; the label needs {relation.implied(label)}")
        share = agree / total if total else 0.0
        passed = share >= self.threshold
        return self.result(passed, share, ("agrees: " if passed else "contradicts the label: ") + "; ".join(notes))


@register_check("checker")
class Checker(Check):
    """The family's own judgement of the label (``TaskFamily.check_answer``: a user's checker function)."""

    def check(self, reading: Reading) -> CheckResult:
        label, _ = reading.label
        if label is None:
            return self.result(False, 0.0, "no label to check")
        passed, score, reason = reading.family.check_answer(reading.problem, label)
        return self.result(passed, score, reason)


@register_check("duplicate")
class ExactDuplicate(Check):
    """A problem already accepted adds nothing (the sample id is a hash of the canonical problem)."""

    def __init__(self, accepted: Container[str] = frozenset()) -> None:
        self.accepted = accepted

    def check(self, reading: Reading) -> CheckResult:
        sample_id = reading.problem.sample_id
        if sample_id in self.accepted:
            return self.result(False, 1.0, f"exact duplicate of accepted sample {sample_id}")
        return self.result(True, 0.0, "not seen among accepted samples")


@register_check("contamination")
class Contamination(Check):
    """A problem of the held-out evaluation suite must never be trained on."""

    def __init__(self, eval_ids: Container[str] = frozenset()) -> None:
        self.eval_ids = eval_ids

    def check(self, reading: Reading) -> CheckResult:
        sample_id = reading.problem.sample_id
        if sample_id in self.eval_ids:
            return self.result(False, 1.0, f"problem {reading.problem.canonical!r} is in the evaluation suite")
        return self.result(True, 0.0, "not in the evaluation suite")


@register_check("oracle")
class Oracle(Check):
    """Only in oracle mode: the majority answer must equal the true answer."""

    def check(self, reading: Reading) -> CheckResult:
        truth = reading.family.true_answer(reading.problem)
        answer, _ = reading.label
        if truth is None:
            return self.result(False, 0.0, "the family knows no true answer for this problem")
        passed = answer == truth
        return self.result(passed, float(passed), f"majority {answer!r} {'equals' if passed else 'differs from'} the true answer")
