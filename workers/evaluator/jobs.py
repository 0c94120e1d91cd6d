"""The Celery job ``evaluate_adapter``: the held-out suites for one adapter, published to ``loop.evals``."""

from __future__ import annotations

from tasks import get_family
from tasks.registry import policy_family_options
from schemas.messages import EvalResult
from services.bus import EventProducer
from services.jobs import JobContext, job_task
from workers.evaluator.heldout import evaluate_family
from workers.generator.engine import GenerationEngine
from workers.model.resolve import base_model_dir

SUITE = "heldout"


@job_task(queue="eval", soft_time_limit=3600)
def evaluate_adapter(
    ctx: JobContext,
    *,
    adapter_id: str | None,
    path: str | None = None,
    family: str = "arithmetic",
    difficulties: list[int],
    family_options: dict | None = None,
) -> dict:
    """``adapter_id`` None measures the base model."""
    engine = GenerationEngine(base_model_dir(ctx.settings))
    if adapter_id is not None:
        engine.use_adapter(adapter_id, path)
    options = family_options or policy_family_options(ctx.settings.policy_file).get(family, {})
    task_family = get_family(family, **options)
    scores = []
    for number, difficulty in enumerate(difficulties, start=1):
        scores += evaluate_family(engine, task_family, [difficulty])
        ctx.progress(number / len(difficulties), f"{family} difficulty {difficulty}")
    result = EvalResult(adapter_id=adapter_id or "base", suite=SUITE, scores=scores)
    producer = EventProducer(ctx.settings, client_id="evaluator")
    try:
        producer.publish(result).get(timeout=30)
    finally:
        producer.close()
    return {"adapter_id": result.adapter_id, "scores": [s.model_dump() for s in scores]}
