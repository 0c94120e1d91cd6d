"""A stand-in for the training job, loaded only by the API tests' worker (``--include jobs_for_api_tests``).

The API submits whatever ``job_kinds["retrain"]`` names; the tests point it here, so that a retraining shows
real progress through the real job runner in seconds, with no model. It records the keyword arguments it got.
"""

from __future__ import annotations

import time

from services.jobs import JobContext, job_task


@job_task(queue="train", name="api_test_retrain", progress_interval_s=0.0, cancel_check_interval_s=0.1)
def api_test_retrain(ctx: JobContext, *, steps: int = 10, step_s: float = 0.2, **overrides) -> dict:
    for step in range(steps):
        time.sleep(step_s)
        ctx.progress((step + 1) / steps, f"step {step + 1}/{steps}")
    return {"adapter_id": f"adapter-{ctx.job_id[:8]}", "steps": steps, "overrides": overrides}
