"""The verifier worker: Candidates in, Verdicts out.

    python -m workers.verifier

Consumes ``loop.candidates`` in the consumer group ``verifiers`` (scale out by starting more), runs
the family's chain on each candidate and publishes a Verdict. A candidate for a sample that the
store already holds as accepted gets no new verdict: the same problem is the same sample, and its
first acceptance stands (a redelivered candidate, or two requests that drew the same problem).
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from tasks import get_family
from tasks.base import TaskFamily
from schemas.messages import CONSUMER_GROUPS, Candidate, Verdict
from services.bus import Event, EventConsumer, EventProducer
from services.settings import Settings
from workers.verifier.chain import VerifierChain

log = logging.getLogger(__name__)


class VerifierWorker(EventConsumer[Candidate]):
    def __init__(
        self,
        settings: Settings,
        *,
        accepted_among: Callable[[list[str]], set[str]] = lambda ids: set(),
        threshold: float = 0.75,
        oracle: bool = False,
        choose_supported: bool = True,
        abstain_unsupported: bool = True,
        family_options: dict[str, dict] | None = None,
        group_id: str = "verifiers",
    ) -> None:
        super().__init__(settings, topics=list(CONSUMER_GROUPS["verifiers"]), group_id=group_id, batch_size=256)
        self.accepted_among = accepted_among
        self.threshold = threshold
        self.oracle = oracle
        self.choose_supported = choose_supported  # grounded families: label with the answer the evidence supports
        self.abstain_unsupported = abstain_unsupported  # and with "I do not know" where the corpus has no answer
        self.family_options = family_options or {}
        self.producer = EventProducer(settings, client_id="verifier")
        self._families: dict[str, TaskFamily] = {}
        self._retrieval_chains: dict[str, VerifierChain] = {}
        self._eval_ids: dict[tuple[str, int], frozenset[str]] = {}
        self.accepted = 0
        self.rejected = 0
        self.skipped_duplicates = 0

    def family(self, name: str) -> TaskFamily:
        if name not in self._families:
            self._families[name] = get_family(name, **self.family_options.get(name, {}))
        return self._families[name]

    def handle(self, events: list[Event[Candidate]]) -> None:
        candidates = [e.message for e in events]
        already = self.accepted_among([c.sample_id for c in candidates])
        accepted_now: set[str] = set()
        for event, candidate in zip(events, candidates, strict=True):
            if candidate.sample_id in already:
                self.skipped_duplicates += 1
                continue
            try:
                family = self.family(candidate.family)
                problem = family.parse_problem(candidate.problem, candidate.difficulty, candidate.meta)
            except (KeyError, ValueError) as exc:
                self.dead_letter(event, f"cannot verify: {exc}")
                continue
            verdict = self.verify(family, candidate, problem, accepted_now)
            if verdict.accepted:
                accepted_now.add(candidate.sample_id)
            self.producer.publish(verdict)
        self.producer.flush()  # verdicts durable before the candidates' offsets are committed

    def chain_for(self, family: TaskFamily, problem, accepted_now: set[str]) -> VerifierChain:
        """Grounded families verify by retrieval (novelty, decontamination, evidence); the others by hashes."""
        if family.verifier == "retrieval":
            if family.name not in self._retrieval_chains:
                from workers.verifier.memory import Memory
                from workers.verifier.retrieval_checks import retrieval_chain

                self._retrieval_chains[family.name] = retrieval_chain(family, Memory.open(self.settings),
                                                                      agreement=self.threshold,
                                                                      choose_supported=self.choose_supported,
                                                                      abstain_unsupported=self.abstain_unsupported,
                                                                      oracle=self.oracle)
            return self._retrieval_chains[family.name]
        return VerifierChain.label_free(family, threshold=self.threshold, accepted=accepted_now,
                                        eval_ids=self.eval_ids(family, problem.difficulty), oracle=self.oracle)

    def eval_ids(self, family: TaskFamily, difficulty: int) -> frozenset[str]:
        """The suite's sample ids, built once per family and difficulty rather than once per candidate."""
        key = (family.name, difficulty)
        if key not in self._eval_ids:
            self._eval_ids[key] = frozenset(family.eval_ids([difficulty]))
        return self._eval_ids[key]

    def verify(self, family: TaskFamily, candidate: Candidate, problem, accepted_now: set[str]) -> Verdict:
        verdict = self.chain_for(family, problem, accepted_now).verify(candidate, problem)
        if verdict.accepted:
            self.accepted += 1
        else:
            self.rejected += 1
        return verdict

    def close(self) -> None:
        try:
            super().close()
        finally:
            self.producer.close()
