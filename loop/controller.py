"""The controller: keeps requests flowing, moves the curriculum, triggers training, gates promotion.

    python -m loop.controller [--policy policy.json]

It consumes ``loop.verdicts`` (accepted samples), ``loop.adapters`` (trained adapters),
``loop.evals`` (held-out results) and ``loop.jobs`` (training that failed), and produces
GenerateRequests, Celery jobs and adapter decisions (promoted or rejected). Its state is a small
JSON file in the data directory, written after every change, so a restarted controller resumes
the round where it stopped; every decision is also an event, so the log says why.
One module, because the round's bookkeeping and the decisions taken on it share that one state, saved as a
whole before each batch's offsets are committed (the policy's pure functions live in ``loop/policy.py``).
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from uuid import uuid4

from sqlmodel import Session, col, select

from schemas.messages import (CONSUMER_GROUPS, AdapterEvent, EvalResult, EvalScore, GenerateRequest, JobEvent, Sampling,
                             Verdict)
from schemas.tables import EvalRecord
from services.bus import Event, EventConsumer, EventProducer
from services.bus.lag import LagMonitor
from services.jobs import submit_job
from services.settings import Settings
from services.store.db import open_store
from tasks import get_family
from loop.policy import (LoopPolicy, contradicted_share, mastered, next_difficulty, promotion_gate, round_lora,
                         round_sampling, round_step)
from loop.status import kept_precision

log = logging.getLogger(__name__)
GENERATOR_GROUP = "generators"


_last_written: dict[Path, str] = {}  # path -> the state text this process last wrote there


@dataclass
class LoopState:
    round: int = 1
    target: int = 1
    promoted_id: str | None = None
    promoted_path: str | None = None
    promoted_scores: list[dict] | None = None  # EvalScore dicts of the promoted model (the base at first)
    base_eval_job: str | None = None
    accepted_in_round: int = 0
    verified_in_round: int = 0
    consistent_in_round: int = 0  # verdicts whose answers agreed (format and self-consistency passed)
    contradicted_in_round: int = 0  # of those, the ones a relative's answer contradicted (a metamorphic check)
    stricter: bool = False  # the last round's contradiction share passed policy.max_contradicted: ask more answers
    last_rejected: bool = False  # the gate rejected the last round's adapter: continue the promoted one (policy)
    requested_in_round: int = 0
    training_job: str | None = None
    evaluating: dict[str, dict] = field(default_factory=dict)  # adapter id -> its trained AdapterEvent
    retry_training_after: float = 0.0  # wall-clock time before which a failed training is not retried
    started_at: float = field(default_factory=time.time)

    @classmethod
    def load(cls, path: Path) -> "LoopState":
        return cls(**json.loads(path.read_text())) if path.exists() else cls()

    def save(self, path: Path) -> bool:
        """Write the state if it changed since this process last wrote it (the controller calls this on every tick:
        an unchanged state costs no write). Returns whether it wrote."""
        text = json.dumps(asdict(self), indent=2)
        if text == _last_written.get(path) and path.exists():
            return False
        tmp = path.with_suffix(".tmp")
        tmp.write_text(text)
        tmp.replace(path)  # atomic: a crash leaves the old state or the new one
        _last_written[path] = text
        return True

    def scores(self) -> list[EvalScore] | None:
        return None if self.promoted_scores is None else [EvalScore(**s) for s in self.promoted_scores]


class Controller(EventConsumer[Verdict | AdapterEvent | EvalResult | JobEvent]):
    def __init__(self, settings: Settings, policy: LoopPolicy, *, group_id: str = "controller") -> None:
        super().__init__(
            settings, topics=list(CONSUMER_GROUPS["controller"]),
            group_id=group_id, batch_size=2000, poll_timeout_ms=250, from_beginning=False,
        )
        self.policy = policy
        self.state_dir = settings.data_dir / "loop"
        self.state_dir.mkdir(parents=True, exist_ok=True)
        self.state_path = self.state_dir / "controller.json"
        self.rounds_path = self.state_dir / "rounds.jsonl"
        self.state = LoopState.load(self.state_path)
        self.producer = EventProducer(settings, client_id="controller")
        self.lag = LagMonitor(settings)
        self.store = open_store(settings)
        self.relation_names = get_family(policy.family, **policy.family_options).relation_names
        self._last_tick = 0.0

    # -- events ---------------------------------------------------------------------------------------
    def handle(self, events: list[Event[Verdict | AdapterEvent | EvalResult | JobEvent]]) -> None:
        for event in events:
            message = event.message
            if isinstance(message, Verdict):
                # A verdict of an earlier round (problems still in flight when that round trained) is not this one's.
                if message.family == self.policy.family and message.round in (None, self.state.round):
                    self.count_verdict(message)
            elif isinstance(message, AdapterEvent):
                self.on_adapter(message)
            elif isinstance(message, EvalResult):
                self.on_eval(message)
            elif isinstance(message, JobEvent):
                self.on_job(message)
        self.tick()
        self.state.save(self.state_path)  # before the base commits this batch's offsets, whatever tick() skipped

    def count_verdict(self, verdict: Verdict) -> None:
        passed = {c.name: c.passed for c in verdict.checks}
        self.state.verified_in_round += 1
        self.state.accepted_in_round += int(verdict.accepted)
        if passed.get("format") and passed.get("self_consistency"):
            self.state.consistent_in_round += 1
            self.state.contradicted_in_round += int(not all(passed.get(r, True) for r in self.relation_names))

    def contradicted_share(self) -> float:
        return contradicted_share(self.state.consistent_in_round, self.state.contradicted_in_round)

    def sampling(self) -> Sampling:
        return round_sampling(self.policy, stricter=self.state.stricter)

    def lora(self) -> dict:
        return round_lora(self.policy, last_rejected=self.state.last_rejected, has_parent=self.state.promoted_path is not None)

    def on_idle(self) -> None:
        self.tick()

    def on_adapter(self, event: AdapterEvent) -> None:
        if event.status in ("promoted", "rolled_back"):
            self.follow_decision(event)
            return
        if event.status != "trained" or event.adapter_id in self.state.evaluating:
            return
        self.state.training_job = None
        self.state.evaluating[event.adapter_id] = event.model_dump(mode="json")
        self.submit_eval(event.adapter_id, event.path)

    def on_eval(self, result: EvalResult) -> None:
        scores = [s for s in result.scores if s.family == self.policy.family]
        if result.adapter_id == "base":
            if self.state.promoted_scores is None and self.state.promoted_id is None:
                self.state.promoted_scores = [s.model_dump() for s in scores]
                # The curriculum starts one past what the base model masters, on either schedule.
                self.state.target = max(mastered(scores, self.policy.mastery) + 1, self.policy.min_difficulty)
                if self.policy.target_difficulty is not None:
                    self.state.target = min(self.state.target, self.policy.target_difficulty)
                self.record_round(None, scores, True, "base model")
            return
        trained = self.state.evaluating.pop(result.adapter_id, None)
        if trained is None:
            return  # an evaluation this controller did not ask for (an API user, say)
        decision = promotion_gate(self.state.scores(), scores, self.policy)
        status = "promoted" if decision.promote else "rejected"
        event = AdapterEvent(**{**trained, "status": status, "metrics": {
            **trained.get("metrics", {}), **{f"accuracy_d{s.difficulty}": s.accuracy for s in scores}}})
        self.producer.publish(event).get(timeout=30)
        log.info("round %d: adapter %s %s (%s)", self.state.round, result.adapter_id, status, decision.reason)
        if decision.promote:
            self.state.promoted_id, self.state.promoted_path = event.adapter_id, event.path
            self.state.promoted_scores = [s.model_dump() for s in scores]
        now_mastered = mastered(self.state.scores() or [], self.policy.mastery)
        self.record_round(event.adapter_id, scores, decision.promote, decision.reason,
                          init=(trained.get("config") or {}).get("init"))
        self.state.stricter = self.contradicted_share() > self.policy.max_contradicted
        self.state.last_rejected = not decision.promote
        self.state.target = next_difficulty(self.state.target, now_mastered, self.policy)
        self.state.round += 1
        self.state.accepted_in_round = 0
        self.state.verified_in_round = 0
        self.state.consistent_in_round = 0
        self.state.contradicted_in_round = 0
        self.state.requested_in_round = 0

    def follow_decision(self, event: AdapterEvent) -> None:
        """Promotions and roll backs made by a user (API, loopctl) move the loop's baseline too."""
        if event.status == "promoted" and event.adapter_id != self.state.promoted_id:
            self.state.promoted_id, self.state.promoted_path = event.adapter_id, event.path
            self.state.promoted_scores = self.scores_of(event.adapter_id) or self.state.promoted_scores
            log.info("following a promotion of %s made outside the controller", event.adapter_id)
        elif event.status == "rolled_back" and event.adapter_id == self.state.promoted_id:
            self.state.promoted_id, self.state.promoted_path = None, None
            self.state.promoted_scores = self.scores_of("base") or self.state.promoted_scores
            log.info("adapter %s rolled back; on the base model until another is promoted", event.adapter_id)

    def scores_of(self, adapter_id: str) -> list[dict] | None:
        """The held-out scores the store holds for an adapter (the last evaluation of it)."""
        with Session(self.store) as session:
            record = session.exec(select(EvalRecord).where(col(EvalRecord.adapter_id) == adapter_id)
                                  .order_by(col(EvalRecord.created_at).desc())).first()
        if record is None:
            return None
        return [s for s in record.scores or [] if s.get("family") == self.policy.family]

    def on_job(self, event: JobEvent) -> None:
        if event.job_id == self.state.training_job and event.state in ("failed", "cancelled"):
            log.warning("training job %s %s: %s", event.job_id, event.state, event.message)
            self.state.training_job = None
            self.state.retry_training_after = time.time() + self.policy.retry_after_s
        if event.job_id == self.state.base_eval_job and event.state in ("failed", "cancelled"):
            self.state.base_eval_job = None

    # -- decisions ------------------------------------------------------------------------------------
    def tick(self) -> None:
        now = time.monotonic()
        if now - self._last_tick < 0.5:
            return
        self._last_tick = now
        state, policy = self.state, self.policy
        if state.promoted_scores is None:
            if state.base_eval_job is None:
                state.base_eval_job = self.submit_eval(None, None)
            self.state.save(self.state_path)
            return
        idle = state.training_job is None and not state.evaluating
        step = round_step(
            policy, accepted=state.accepted_in_round, verified=state.verified_in_round,
            requested=state.requested_in_round,
            drained=lambda: self.lag.lag(GENERATOR_GROUP, GenerateRequest.topic) == 0
            and self.lag.lag("verifiers", "loop.candidates") == 0,
        ) if idle else "wait"
        if step == "more":
            log.info("round %d: none of %d problems accepted at difficulty %d; asking for more", state.round,
                     state.requested_in_round, state.target)
            state.requested_in_round = state.verified_in_round = 0
        if idle and step == "train" and time.time() >= state.retry_training_after:
            state.training_job = submit_job("train_adapter", {
                "families": [policy.family], "lora": self.lora(), "max_staleness": policy.max_staleness,
                "parent_id": state.promoted_id, "parent_path": state.promoted_path,
                "family_options": {policy.family: policy.family_options}, "target": state.target,
            }, settings=self.settings)
            log.info("round %d: %d accepted of %d verified; training job %s (%s)", state.round,
                     state.accepted_in_round, state.verified_in_round, state.training_job,
                     "continuing the promoted adapter" if self.lora().get("init") == "parent" else "a fresh adapter")
            if policy.retrain_after_verified:
                # A round trained before all its problems were asked (empty_round_after) asks for no more of them:
                # they would compete with the training for the machine and keep nothing.
                state.requested_in_round = max(state.requested_in_round, policy.problems_per_round)
        if state.requested_in_round < policy.problems_per_round and self.lag.lag(GENERATOR_GROUP, GenerateRequest.topic) < policy.max_outstanding_requests:
            count = min(policy.request_size, policy.problems_per_round - state.requested_in_round)
            request = GenerateRequest(
                request_id=f"req-{uuid4().hex[:12]}", family=policy.family, difficulty=state.target, count=count,
                adapter_id=state.promoted_id, round=state.round,
                sampling=self.sampling(),
            )
            self.producer.publish(request).get(timeout=30)
            state.requested_in_round += count
        self.state.save(self.state_path)

    def submit_eval(self, adapter_id: str | None, path: str | None) -> str:
        top = self.policy.base_eval_up_to if adapter_id is None else self.state.target + self.policy.eval_margin
        difficulties = list(range(1, top + 1))
        return submit_job("evaluate_adapter", {
            "adapter_id": adapter_id, "path": path, "family": self.policy.family, "difficulties": difficulties,
            "family_options": self.policy.family_options,
        }, settings=self.settings)

    def record_round(self, adapter_id: str | None, scores: list[EvalScore], promoted: bool, reason: str, *,
                     init: str | None = None) -> None:
        row = {"round": self.state.round if adapter_id else 0, "target": self.state.target, "adapter_id": adapter_id,
               "promoted": promoted, "reason": reason, "accepted": self.state.accepted_in_round,
               "mastered": mastered(self.state.scores() or scores, self.policy.mastery),
               "scores": {s.difficulty: s.accuracy for s in scores}, "minutes": round((time.time() - self.state.started_at) / 60, 2)}
        if adapter_id:
            # Measurement only: what share of the round's kept labels is right where the family knows the truth, and
            # the label-free estimate beside it (the share of agreeing answers that a relative contradicted).
            known, right = kept_precision(self.store, family=self.policy.family, round_no=self.state.round)
            consistent = self.state.consistent_in_round
            row |= {"kept_right": round(right / known, 4) if known else None,
                    "contradicted": round(self.contradicted_share(), 4) if consistent else None,
                    "k": self.sampling().k, "precision_bound": self.policy.precision_bound, "init": init}
        with self.rounds_path.open("a") as handle:
            handle.write(json.dumps(row) + "\n")

    def close(self) -> None:
        try:
            self.state.save(self.state_path)
            super().close()
        finally:
            self.producer.close()
            self.lag.close()


def main(argv: list[str] | None = None) -> int:
    import argparse

    from services.settings import get_settings

    parser = argparse.ArgumentParser(prog="python -m loop.controller", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--policy", type=Path, help="a JSON file of LoopPolicy fields (default: the data "
                        "directory's loop/policy.json where there is one, as the generators and verifiers read it; "
                        "else the default policy)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    logging.getLogger("kafka").setLevel(logging.WARNING)
    settings = get_settings()
    path = args.policy or (settings.policy_file if settings.policy_file.exists() else None)
    policy = LoopPolicy.model_validate_json(path.read_text()) if path else LoopPolicy()
    log.info("policy: %s", path or "the default")
    controller = Controller(settings, policy)
    controller.install_signal_handlers()
    controller.run()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
