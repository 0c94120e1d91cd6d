"""The evaluator role: held-out suites, never trained on."""

from workers.evaluator.heldout import (
    abstention_threshold,
    evaluate_family,
    greedy_answers,
    heldout_answers,
    recitation_checked,
    scored_answers,
)

__all__ = ["abstention_threshold", "evaluate_family", "greedy_answers", "heldout_answers",
           "recitation_checked", "scored_answers"]
