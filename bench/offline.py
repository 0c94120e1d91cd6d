"""The loop in one process, with no Kafka: bootstrap, then rounds of generate, verify, train, evaluate.

The benches' offline loop (``bench/self_improve_offline.py``; ``bench/loop_vs_offline.py`` measures the services
against it), and the reference for what one round does: problems one difficulty past what is mastered, k answers
each from the current model, the label-free verifier chain, a LoRA adapter trained on every sample accepted so far
plus a share of the original easy data, and the held-out suites. A new adapter is kept only if it passes the same
promotion gate as in the services (``loop.policy.promotion_gate``).
"""

from __future__ import annotations

import logging
import random
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

from loop.policy import LoopPolicy, promotion_gate
from schemas.messages import Candidate, EvalScore
from tasks.base import Example, TaskFamily
from tasks.base import mastered as mastered_difficulty
from workers.evaluator import evaluate_family
from workers.generator import GenerationEngine, SamplingSpec
from workers.generator.relatives import ask_relatives
from workers.trainer import LoraTrainingConfig, train_lora
from workers.generator.worker import CHUNK_SIZE
from workers.verifier import VerifierChain

log = logging.getLogger(__name__)


@dataclass
class OfflineConfig:
    rounds: int = 10
    minutes: float = 30.0  # wall-clock budget of the rounds; a round that would start past it does not
    problems_per_round: int = 1000
    sampling: SamplingSpec = field(default_factory=lambda: SamplingSpec(k=6, temperature=1.0))
    agreement: float = 1.0  # self-consistency threshold
    eval_margin: int = 2  # evaluate up to this many difficulties past the round's target
    threshold: float = 0.95  # held-out accuracy at which a difficulty counts as mastered
    oracle: bool = False  # the true answer decides acceptance (a measurement aid, not label-free)
    ablation: bool = False  # train on the easy data only, same steps: is the gain from the loop's data?
    lora: LoraTrainingConfig = field(default_factory=LoraTrainingConfig)
    gate: LoopPolicy = field(default_factory=LoopPolicy)  # the promotion gate the services use, same settings
    seed: int = 0


@dataclass
class RoundReport:
    round: int
    difficulty: int
    problems: int
    kept: int
    label_accuracy: float | None  # kept samples whose label equals the true answer (measurement only)
    scores: list[EvalScore]
    mastered: int
    promoted: bool
    minutes: dict[str, float]


def run_offline(
    *, base_model: Path, family: TaskFamily, config: OfflineConfig, out_dir: Path, on_round=None
) -> list[RoundReport]:
    rng = random.Random(config.seed)
    engine = GenerationEngine(base_model)
    eval_range = lambda top: range(1, top + config.eval_margin + 1)  # noqa: E731
    started = time.monotonic()

    scores = evaluate_family(engine, family, eval_range(1 + _guess_top(family, engine)))
    mastered = mastered_difficulty(scores, config.threshold)
    reports = [RoundReport(0, mastered, 0, 0, None, scores, mastered, True, {})]
    if on_round:
        on_round(reports[-1])

    accepted: dict[str, Example] = {}
    adapter: tuple[str, Path] | None = None
    for round_no in range(1, config.rounds + 1):
        if (time.monotonic() - started) / 60 > config.minutes:
            log.info("time budget of %.0f min spent; stopping before round %d", config.minutes, round_no)
            break
        timer = _Timer()
        target = mastered + 1
        trains_as = family.for_target(target)
        problems = [p for p in family.make_problems(target, config.problems_per_round, rng) if p.sample_id not in accepted]
        kept, right = 0, 0
        if not config.ablation:
            # As the generator service does: chunks of its size, answers up to the family's budget, its stop strings.
            spec = replace(config.sampling, stop=family.stop_strings,
                           max_new_tokens=max((family.answer_budget(p) for p in problems), default=8))
            completions, related = [], []
            for start in range(0, len(problems), CHUNK_SIZE):
                chunk = problems[start:start + CHUNK_SIZE]
                completions += engine.generate_renderings(
                    [engine.render(family.renderings(p), family.chat) for p in chunk], spec)
                related += ask_relatives(engine, family, chunk, spec.max_new_tokens)
            timer.lap("generate")
            chain = VerifierChain.label_free(
                family, threshold=config.agreement, accepted=accepted.keys(),
                eval_ids=family.eval_ids(eval_range(target)), oracle=config.oracle,
            )
            for problem, answers, relatives in zip(problems, completions, related, strict=True):
                truth = family.true_answer(problem)
                candidate = Candidate(sample_id=problem.sample_id, family=family.name, difficulty=target,
                                      problem=problem.canonical, answers=answers, related=relatives,
                                      true_answer=truth)
                verdict = chain.verify(candidate, problem)
                if verdict.accepted:
                    accepted[problem.sample_id] = trains_as.training_example(problem, verdict.label, rng)
                    kept += 1
                    right += verdict.label == truth
            timer.lap("verify")

        name = f"round-{round_no:03d}"
        lora = config.lora.model_copy(update={"seed": config.seed + round_no})
        if lora.init == "parent" and adapter is None:
            lora = lora.model_copy(update={"init": "base"})  # nothing to continue yet
        train_lora(
            base_model=base_model, examples=list(accepted.values()), out_dir=out_dir / name, config=lora,
            snapshot_id=f"offline-{round_no}", replay=trains_as.replay_examples, chat=family.chat,
            parent_adapter=adapter[1] if lora.init == "parent" else None,
        )
        timer.lap("train")
        previous = engine.adapter_id, adapter
        engine.use_adapter(name, out_dir / name)
        new_scores = evaluate_family(engine, family, eval_range(target))
        new_mastered = mastered_difficulty(new_scores, config.threshold)
        timer.lap("evaluate")
        promoted = promotion_gate(scores, new_scores, config.gate).promote
        if promoted:
            adapter, mastered, scores = (name, out_dir / name), new_mastered, new_scores
        else:
            engine.use_adapter(previous[0], previous[1][1] if previous[1] else None)
        report = RoundReport(round_no, target, len(problems) if not config.ablation else 0, kept,
                             right / kept if kept else None, new_scores, mastered, promoted, timer.laps)
        reports.append(report)
        if on_round:
            on_round(report)
    return reports


def _guess_top(family: TaskFamily, engine: GenerationEngine) -> int:
    """How far to evaluate the base model: its easy range where the family knows it."""
    return int(getattr(family, "easy_digits", 5))


class _Timer:
    def __init__(self) -> None:
        self.laps: dict[str, float] = {}
        self._last = time.monotonic()

    def lap(self, name: str) -> None:
        now = time.monotonic()
        self.laps[name] = round((now - self._last) / 60, 2)
        self._last = now
