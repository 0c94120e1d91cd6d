"""The evaluator role: held-out suites, never trained on."""

from workers.evaluator.heldout import evaluate_family, heldout_answers, mastered_difficulty

__all__ = ["evaluate_family", "heldout_answers", "mastered_difficulty"]
