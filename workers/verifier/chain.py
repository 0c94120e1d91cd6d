"""A family's verifier chain: run every check, accept only when all pass, label with the majority (or the answer
a check chose: ``Reading.label``)."""

from __future__ import annotations

from collections.abc import Container, Sequence

from tasks.base import Problem, TaskFamily
from schemas.messages import Candidate, CheckResult, Evidence, Verdict
from workers.verifier.checks import Check, Reading, build_check

LABEL_FREE_CHECKS = ("format", "self_consistency", "duplicate", "contamination")


def family_checks(family: TaskFamily) -> list[Check]:
    """What a family adds to any chain: one metamorphic check per relation it declares, then its own checks."""
    metamorphic = [build_check("metamorphic", relation=r) for r in family.relation_names]
    return metamorphic + [build_check(name) for name in family.answer_checks]


class VerifierChain:
    def __init__(self, family: TaskFamily, checks: Sequence[Check]) -> None:
        self.family = family
        self.checks = list(checks)

    @classmethod
    def label_free(
        cls,
        family: TaskFamily,
        *,
        threshold: float = 0.75,
        accepted: Container[str] = frozenset(),
        eval_ids: Container[str] = frozenset(),
        oracle: bool = False,
    ) -> "VerifierChain":
        """The default chain: format, self-consistency, one metamorphic check per relation the family declares
        novelty, decontamination; the true answer decides acceptance only when
        ``oracle`` is on."""
        options: dict[str, dict[str, object]] = {
            "self_consistency": {"threshold": threshold},
            "duplicate": {"accepted": accepted},
            "contamination": {"eval_ids": eval_ids},
        }
        names = list(LABEL_FREE_CHECKS) + (["oracle"] if oracle else [])
        checks = [build_check(name, **options.get(name, {})) for name in names]
        return cls(family, checks[:2] + family_checks(family) + checks[2:])

    def read(self, candidate: Candidate, problem: Problem) -> Reading:
        answers = [self.family.read_label(problem, completion) for completion in candidate.answers]
        return Reading(candidate, problem, self.family, answers)

    def verify(self, candidate: Candidate, problem: Problem) -> Verdict:
        reading = self.read(candidate, problem)
        results: list[CheckResult] = []
        evidence: dict[str, Evidence] = {}
        for check in self.checks:
            result, found = check.check_with_evidence(reading)
            results.append(result)
            for item in found:
                evidence.setdefault(item.id, item)
        accepted = all(r.passed for r in results)
        label, _ = reading.label
        return Verdict(
            sample_id=candidate.sample_id,
            family=candidate.family,
            accepted=accepted,
            round=candidate.round,
            label=label if accepted else None,
            checks=results,
            evidence=list(evidence.values()),
        )
