"""The loop's policy, as pure functions and a typed config: curriculum, retraining trigger, promotion gate."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from pydantic import BaseModel, ConfigDict, Field, model_validator

from schemas.messages import PRECISION_BOUND, EvalScore, Sampling
from tasks.base import mastered


# The measured recipe of docs/recipe.md (also the defaults of bench/self_improve_offline.py and
# bench/loop_vs_offline.py): rounds of 4,000 problems; adapters of 600 steps of 128 examples, 30% of them replayed
# labelled data.
RECIPE_PROBLEMS = 4000
RECIPE_LORA = {"steps": 600, "batch_size": 128, "replay_share": 0.3}


class LoopPolicy(BaseModel):
    model_config = ConfigDict(extra="forbid")

    family: str = Field(default="arithmetic", description="The task family the loop improves on.")
    target_difficulty: int | None = Field(default=None, ge=1, description="Stop moving the curriculum past this.")
    min_difficulty: int = Field(default=1, ge=1, description="The curriculum starts no lower than this.")
    mastery: float = Field(default=0.95, gt=0, le=1, description="Held-out accuracy at which a difficulty is mastered.")
    jump_to_solved: bool = Field(
        default=True,
        description="Jump past every difficulty already mastered (a round can master two); False: one at a time.",
    )
    retrain_after: int = Field(default=800, ge=1, description="Newly accepted samples that trigger a training job.")
    retrain_after_verified: int | None = Field(
        default=None, ge=1,
        description="Train once this many of the round's candidates are verified (the offline loop's rounds); unset: "
        "problems_per_round, a whole round; None: train on retrain_after newly accepted samples instead.",
    )
    empty_round_after: int | None = Field(
        default=500, ge=1,
        description="Train as soon as this many of the round's problems are verified with none accepted: the model "
        "cannot yet answer at the target, the rest of the round would keep nothing either, and the adapter trains on "
        "the family's replay alone (docs/verification.md); None: wait for the whole round.",
    )
    problems_per_round: int = Field(default=RECIPE_PROBLEMS, ge=1, description="Most problems requested per round.")
    request_size: int = Field(default=250, ge=1, le=100_000, description="Problems per GenerateRequest.")
    max_outstanding_requests: int = Field(default=2, ge=1, description="Requests waiting for a generator at once.")
    eval_margin: int = Field(default=2, ge=0, description="Evaluate this many difficulties past the round's target.")
    base_eval_up_to: int = Field(default=8, ge=1, description="Evaluate the base model on difficulties 1 to this.")
    regression_tolerance: float = Field(
        default=0.02, ge=0, le=1,
        description="A new adapter that masters no more than the current one may lose at most this accuracy on a "
        "mastered difficulty, or one item of its suite where that is more (one of the 25 one-digit sums is 0.04); one "
        "that masters more may lose more, as long as every mastered difficulty stays mastered.",
    )
    min_gain: float = Field(
        default=0.01, description="Without a newly mastered difficulty, the accuracy gain at the frontier needed to promote."
    )
    k: int = Field(default=6, ge=1, le=64, description="Answers per problem (the first greedy).")
    temperature: float = Field(default=1.0, ge=0, description="Sampling temperature of answers 2..k.")
    agreement: float = Field(
        default=1.0, gt=0, le=1,
        description="Self-consistency threshold of the verifiers (1.0: all k answers agree; docs/recipe.md).",
    )
    precision_bound: float = Field(
        default=PRECISION_BOUND, gt=0, le=1,
        description="Kept labels right (where the family knows the truth, measurement only) below which a round is "
        "flagged in loopctl rounds and on the dashboard.",
    )
    max_contradicted: float = Field(
        default=0.25, ge=0, le=1,
        description="A round in which relatives contradict more than this share of the agreeing answers (the "
        "label-free estimate of confident errors) makes the next round stricter: twice k, all of which must agree "
        "(docs/verification.md).",
    )
    continue_after_rejection: bool = Field(
        default=True,
        description="After a round whose adapter the gate rejected, the next round continues the promoted adapter "
        "(init='parent') instead of training a fresh one from the base: the fresh draw lost to the promoted adapter, "
        "which already holds what the round built on (docs/verification.md).",
    )
    lora: dict = Field(
        default_factory=lambda: dict(RECIPE_LORA),
        description="Overrides of the trainer's LoraTrainingConfig (default: the arithmetic recipe, docs/recipe.md).",
    )
    family_options: dict = Field(default_factory=dict, description="Options of the task family (easy_digits ...).")
    retry_after_s: float = Field(default=60.0, ge=0, description="Wait before retrying a training job that failed.")
    max_staleness: int | None = Field(default=None, ge=0, description="Oldest samples trained on, in adapter versions.")

    @model_validator(mode="after")
    def _a_round_by_default(self) -> LoopPolicy:
        """Unless told otherwise, a round trains once all of its problems are verified."""
        if "retrain_after_verified" not in self.model_fields_set:
            self.retrain_after_verified = self.problems_per_round
        return self


# Accuracies are shares of a suite, and their differences carry float rounding (1.0 - 0.98 = 0.020000000000000018):
# a drop of exactly the tolerance, or a gain of exactly the minimum, must count as within it.
_ROUNDING = 1e-9


@dataclass(frozen=True)
class GateDecision:
    promote: bool
    reason: str


def promotion_gate(
    current: list[EvalScore] | None, candidate: list[EvalScore], policy: LoopPolicy
) -> GateDecision:
    """Promote only an adapter that beats the current one without a regression on a mastered difficulty.

    An adapter that masters more difficulties than the current one is promoted as long as every difficulty the
    current one mastered stays mastered (``mastered`` counts an unbroken run from 1, so that is implied): a drop
    from 1.00 to 0.97 at 5 digits, still above the mastery bar, does not outweigh a newly mastered 7. Otherwise a
    mastered difficulty may lose at most ``regression_tolerance`` (or one item of its suite)."""
    new = mastered(candidate, policy.mastery)
    if current is None:
        return GateDecision(True, f"first evaluated model: masters {new}")
    old = mastered(current, policy.mastery)
    before = {s.difficulty: s.accuracy for s in current}
    after = {s.difficulty: s.accuracy for s in candidate}
    drops = {d: before.get(d, 0.0) - after.get(d, 0.0) for d in range(1, old + 1)}
    if new > old:
        worst = max(drops, key=lambda d: drops[d], default=None)
        kept = f"; every mastered difficulty stays mastered (largest drop {drops[worst]:.3f} at {worst})" \
            if worst is not None and drops[worst] > policy.regression_tolerance + _ROUNDING else ""
        return GateDecision(True, f"masters {new} digits, up from {old}{kept}")
    one_item = {s.difficulty: 1 / s.n for s in candidate if s.n}
    for difficulty, drop in drops.items():
        if drop > max(policy.regression_tolerance, one_item.get(difficulty, 0.0)) + _ROUNDING:
            return GateDecision(False, f"regression of {drop:.3f} at mastered difficulty {difficulty}")
    frontier = old + 1
    gain = after.get(frontier, 0.0) - before.get(frontier, 0.0)
    if gain >= policy.min_gain - _ROUNDING:
        return GateDecision(True, f"accuracy at {frontier} up by {gain:.3f}")
    return GateDecision(False, f"no gain: masters {new} (current {old}), accuracy at {frontier} changes by {gain:+.3f}")


def next_difficulty(current_target: int, mastered_now: int, policy: LoopPolicy) -> int:
    """The curriculum: one difficulty up once the current target is mastered; with ``jump_to_solved``,
    straight past every difficulty already mastered."""
    if policy.jump_to_solved:
        target = mastered_now + 1
    else:
        target = current_target + 1 if mastered_now >= current_target else current_target
    target = max(target, policy.min_difficulty)
    if policy.target_difficulty is not None:
        target = min(target, policy.target_difficulty)
    return target


def round_step(
    policy: LoopPolicy, *, accepted: int, verified: int, requested: int, drained: Callable[[], bool]
) -> str:
    """What the current round needs next.

    ``"train"``: enough newly accepted samples (``retrain_after``), or enough verified (``retrain_after_verified``),
    or ``empty_round_after`` verified with none accepted, or every problem of the round asked, generated and
    verified with at least one accepted; ``"more"``: every problem of the round done and none accepted, so ask for
    another round's worth at the same difficulty (a round must not end without training, nor stall); ``"wait"``
    otherwise. ``drained()`` (no request waiting for a
    generator, no candidate waiting for a verifier) is only asked once every problem of the round is requested.
    """
    exhausted = requested >= policy.problems_per_round and drained()
    if policy.retrain_after_verified:
        # Problems the store already held are not generated again: a round may verify fewer than asked.
        hopeless = policy.empty_round_after is not None and accepted == 0 and verified >= policy.empty_round_after
        enough = verified >= policy.retrain_after_verified or hopeless
        return "train" if enough or (exhausted and verified > 0) else "wait"
    if accepted >= policy.retrain_after or (exhausted and accepted > 0):
        return "train"
    return "more" if exhausted else "wait"


def contradicted_share(consistent: int, contradicted: int) -> float:
    """The label-free estimate of how often the model is confidently wrong in a round: of the candidates whose answers
    agreed, the share that a relative's answer contradicted (0 when none agreed)."""
    return contradicted / consistent if consistent else 0.0


def round_lora(policy: LoopPolicy, *, last_rejected: bool, has_parent: bool) -> dict:
    """A round's training overrides: the policy's ``lora``, except that after a rejected round (with
    ``continue_after_rejection``) the adapter continues the promoted one rather than starting fresh from the base.
    With no promoted adapter yet there is nothing to continue, and the trainer starts fresh."""
    lora = dict(policy.lora)
    if policy.continue_after_rejection and last_rejected and has_parent:
        lora["init"] = "parent"
    return lora


def round_sampling(policy: LoopPolicy, *, stricter: bool) -> Sampling:
    """A round's sampling. After a round whose contradiction share passed ``policy.max_contradicted``, twice the
    answers, all of which the verifiers require to agree (``agreement``): a label then needs more of the model's own
    samples behind it, and a confident error has more chances to show a crack."""
    k = min(64, policy.k * 2) if stricter else policy.k
    return Sampling(k=k, temperature=policy.temperature)
