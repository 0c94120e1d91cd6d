"""Jobs that only the tests' workers load (``--include jobs_for_tests``, with this folder on PYTHONPATH)."""

from __future__ import annotations

import os
import time
from pathlib import Path

from celery.exceptions import SoftTimeLimitExceeded

from services.jobs import JobContext, job_task


@job_task(queue="default", progress_interval_s=0.0, cancel_check_interval_s=0.1)
def sleepy(ctx: JobContext, *, steps: int = 5, step_s: float = 0.1, marker: str | None = None) -> dict:
    """Sleep ``steps`` times, reporting progress after each; ``marker`` is a file it writes when its body runs."""
    if marker:
        Path(marker).write_text(str(os.getpid()))
    for step in range(steps):
        time.sleep(step_s)
        ctx.progress((step + 1) / steps, f"step {step + 1}/{steps}")
    return {"pid": os.getpid(), "steps": steps}


@job_task(queue="default", progress_interval_s=0.0)
def broken(ctx: JobContext, *, message: str = "boom") -> dict:
    """Report some progress, then fail."""
    ctx.progress(0.5, "about to fail")
    raise RuntimeError(message)


@job_task(queue="default", soft_time_limit=1.0, time_limit=30.0)
def overtime(ctx: JobContext, *, seconds: float = 10.0) -> dict:
    """Sleep past its one-second soft time limit without reporting progress."""
    time.sleep(seconds)
    return {}


@job_task(queue="default", soft_time_limit=1.0, time_limit=2.0)
def stuck(ctx: JobContext, *, seconds: float = 30.0) -> dict:
    """Sleep past its hard time limit, like a job stuck where the soft limit's exception does not reach it."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            time.sleep(deadline - time.monotonic())
        except SoftTimeLimitExceeded:
            continue
    return {}
