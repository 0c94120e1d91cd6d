"""The generator worker: GenerateRequests in, Candidates out, always with the promoted adapter.

    python -m workers.generator [--model DIR] [--max-lag 4000]

Consumes ``loop.generate`` in the consumer group ``generators`` (scale out by starting more), draws
the request's problems from its family with a seed derived from the request id (a redelivered
request draws the same problems, hence the same sample ids), skips problems the store already
holds, and publishes one Candidate per problem tagged with the adapter that answered it. Before
each chunk it catches up with ``loop.adapters`` and hot-swaps to a newly promoted adapter, and it
holds back while the verifiers' lag on ``loop.candidates`` exceeds ``max_lag``, so memory and the
queue stay bounded whatever the speed difference.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable

from tasks import get_family
from schemas.messages import CONSUMER_GROUPS, Candidate, GenerateRequest
from services.bus import Event, EventConsumer, EventProducer, Interrupted
from services.bus.lag import LagMonitor
from services.settings import Settings
from workers.generator.adapter_follower import AdapterFollower
from workers.generator.engine import GenerationEngine, SamplingSpec
from workers.generator.relatives import ask_relatives

log = logging.getLogger(__name__)
VERIFIER_GROUP = "verifiers"


# Problems generated per batch, with their renderings and their relatives (the offline bench takes the same).
CHUNK_SIZE = 128

class GeneratorWorker(EventConsumer[GenerateRequest]):
    def __init__(
        self,
        settings: Settings,
        *,
        engine: GenerationEngine,
        known_samples: Callable[[list[str]], set[str]] = lambda ids: set(),
        chunk_size: int = CHUNK_SIZE,
        max_lag: int = 4000,
        family_options: dict[str, dict] | None = None,
        group_id: str = "generators",
    ) -> None:
        # Requests take minutes on a CPU: poll seldom, and tell the group that is normal.
        super().__init__(settings, topics=list(CONSUMER_GROUPS["generators"]), group_id=group_id, batch_size=1,
                         consumer_options={"max_poll_interval_ms": 30 * 60 * 1000})
        self.engine = engine
        self.known_samples = known_samples
        self.chunk_size = chunk_size
        self.max_lag = max_lag
        self.family_options = family_options or {}
        self.producer = EventProducer(settings, client_id="generator")
        self.adapters = AdapterFollower(settings)
        self.lag = LagMonitor(settings)
        self.generated = 0

    def handle(self, events: list[Event[GenerateRequest]]) -> None:
        for event in events:
            self.generate(event.message)
        self.producer.flush()  # the candidates are durable before the request's offset is committed

    def generate(self, request: GenerateRequest) -> int:
        family = get_family(request.family, **self.family_options.get(request.family, {}))
        problems = family.make_problems(request.difficulty, request.count, random.Random(request.request_id))
        known = self.known_samples([p.sample_id for p in problems])
        problems = [p for p in problems if p.sample_id not in known]
        spec = SamplingSpec(k=request.sampling.k, temperature=request.sampling.temperature,
                            top_p=request.sampling.top_p, greedy_first=request.sampling.greedy_first,
                            max_new_tokens=max((family.answer_budget(p) for p in problems), default=8),
                            stop=family.stop_strings)
        for start in range(0, len(problems), self.chunk_size):
            if self.stopping:
                raise Interrupted("stopping mid-request; it is redelivered after restart")
            self.follow_promoted_adapter()
            self.wait_for_verifiers()
            chunk = problems[start : start + self.chunk_size]
            began = time.monotonic()
            answers = self.engine.generate_renderings(
                [self.engine.render(family.renderings(p), family.chat) for p in chunk], spec)
            related = ask_relatives(self.engine, family, chunk, spec.max_new_tokens)
            per_sample_ms = (time.monotonic() - began) * 1000 / max(1, len(chunk))
            for problem, completions, relatives in zip(chunk, answers, related, strict=True):
                self.producer.publish(Candidate(
                    sample_id=problem.sample_id, family=family.name, difficulty=problem.difficulty,
                    problem=problem.canonical, answers=completions, related=relatives, adapter_id=self.engine.adapter_id,
                    request_id=request.request_id, round=request.round, true_answer=family.true_answer(problem),
                    meta=problem.data, timings_ms={"generate": round(per_sample_ms, 3)},
                ))
            self.generated += len(chunk)
        return len(problems)

    def follow_promoted_adapter(self) -> None:
        promoted = self.adapters.refresh()
        wanted = promoted.adapter_id if promoted else None
        if wanted != self.engine.adapter_id:
            log.info("switching from adapter %s to %s", self.engine.adapter_id, wanted)
            self.engine.use_adapter(wanted, promoted.path if promoted else None)

    def wait_for_verifiers(self) -> None:
        delay = 0.2
        while not self.stopping:
            lag = self.lag.lag(VERIFIER_GROUP, Candidate.topic)
            if lag <= self.max_lag:
                return
            log.debug("verifiers are %d candidates behind; holding back", lag)
            time.sleep(delay)
            delay = min(delay * 1.5, 2.0)

    def close(self) -> None:
        try:
            super().close()
        finally:
            self.producer.close()
            self.adapters.close()
            self.lag.close()
