"""The ``train_adapter`` job run twice under one id (its worker died): same adapter, same snapshot, resumed."""

import json

import pytest

from services.bus import create_topics
from services.jobs import JOBS, JobCancelled, JobContext
from services.store.db import open_store
from workers.trainer.jobs import train_adapter  # noqa: F401 - registers the job

pytestmark = pytest.mark.kafka

FAST = dict(rank=4, alpha=8, steps=4, batch_size=8, warmup_steps=1, lr=1e-2, checkpoint_every=2)


class DiesAtStep(JobContext):
    """A job context whose job stops (as if its worker died) once training reports ``step``; it records the steps
    it was told about."""

    def __init__(self, *, dies_at: int | None, **kwargs) -> None:
        super().__init__(**kwargs)
        self.dies_at = dies_at
        self.messages: list[str] = []

    def progress(self, fraction: float, message: str = "") -> None:
        self.messages.append(message)
        super().progress(fraction, message)

    @property
    def cancel_requested(self) -> bool:
        return self.dies_at is not None and f"step {self.dies_at}/{FAST['steps']}" in " ".join(self.messages)


def run(settings, job_id: str, dies_at: int | None) -> tuple[DiesAtStep, dict | None]:
    ctx = DiesAtStep(dies_at=dies_at, job_id=job_id, kind="train_adapter", settings=settings)
    try:
        return ctx, JOBS["train_adapter"].fn(ctx, families=["arithmetic"], lora=FAST)
    except JobCancelled:
        return ctx, None


def test_a_training_job_run_again_under_its_id_resumes_the_same_adapter(settings, tiny_model_dir):
    settings = settings.model_copy(update={"model_dir": tiny_model_dir})
    create_topics(settings)
    open_store(settings)

    first, result = run(settings, "job-a", dies_at=2)
    assert result is None
    begun = json.loads((settings.data_dir / "jobs" / "job-a.json").read_text())
    checkpoint = settings.adapters_dir / begun["adapter_id"] / "checkpoint"
    assert (checkpoint / "state.pt").exists()

    again, result = run(settings, "job-a", dies_at=None)
    assert (result["adapter_id"], result["snapshot_id"]) == (begun["adapter_id"], begun["snapshot_id"])
    steps = [m.split(",")[0] for m in again.messages if m.startswith("step ")]
    assert steps == ["step 3/4", "step 4/4"]  # resumed after the checkpoint, not from step 1
    assert (settings.adapters_dir / begun["adapter_id"] / "training.json").exists() and not checkpoint.exists()

    other, result = run(settings, "job-b", dies_at=None)  # another job: its own adapter
    assert result["adapter_id"] != begun["adapter_id"]
