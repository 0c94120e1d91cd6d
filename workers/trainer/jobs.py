"""The Celery job ``train_adapter``: freeze a snapshot by policy, train a LoRA adapter, publish it.

    loopctl retrain [--steps 300] [--init base|parent]      # or POST /api/jobs/retrain

A job that runs again under the same id (its worker died and ``services.jobs.recovery`` queued it again) trains
the same adapter on the same snapshot, from its last checkpoint: ``<data_dir>/jobs/<job id>.json`` names both.
"""

from __future__ import annotations

import json
import random
from datetime import datetime, timezone
from pathlib import Path
from uuid import uuid4

from tasks import get_family
from tasks.registry import policy_family_options
from schemas.messages import AdapterEvent
from services.bus import EventProducer
from services.jobs import JobContext, job_task
from services.store.db import open_store
from workers.model.resolve import base_model_dir
from workers.trainer.lora import TRAINING_RECORD, LoraTrainingConfig, train_lora
from workers.trainer.snapshot import freeze_snapshot, load_snapshot


# Progress every 5 s (and at each tenth of the way) and a cancel check every 2 s: on a small CPU box every other
# process that wakes up while an adapter trains steals a core from one of its threads, and the whole step waits.
@job_task(queue="train", soft_time_limit=4 * 3600, progress_interval_s=5.0, cancel_check_interval_s=2.0)
def train_adapter(
    ctx: JobContext,
    *,
    families: list[str] | None = None,
    difficulties: list[int] | None = None,
    max_staleness: int | None = None,
    parent_id: str | None = None,
    parent_path: str | None = None,
    family_options: dict[str, dict] | None = None,
    lora: dict | None = None,
    target: int | None = None,
) -> dict:
    """``lora`` overrides fields of LoraTrainingConfig (steps, rank, lr, replay_share, init ...); ``target``: the
    difficulty the round aims at, which a family's training examples may depend on (``TaskFamily.for_target``)."""
    settings = ctx.settings
    config = LoraTrainingConfig(**(lora or {}))
    if config.init == "parent" and not parent_path:
        config = config.model_copy(update={"init": "base"})  # no parent yet: the first adapter starts fresh
    engine = open_store(settings)
    record_path = settings.data_dir / "jobs" / f"{ctx.job_id}.json"
    if record_path.exists():  # this job ran before and its worker died: same snapshot, same adapter, resumed
        begun = json.loads(record_path.read_text())
        adapter_id, snapshot_id = begun["adapter_id"], begun["snapshot_id"]
        samples = load_snapshot(engine, snapshot_id)
    else:
        snapshot_id, samples = freeze_snapshot(engine, families=families, difficulties=difficulties,
                                               max_staleness=max_staleness)
        adapter_id = f"adapter-{datetime.now(timezone.utc):%Y%m%d-%H%M%S}-{uuid4().hex[:6]}"
        _write_atomically(record_path, json.dumps({"adapter_id": adapter_id, "snapshot_id": snapshot_id}))
    ctx.progress(0.02, f"snapshot {snapshot_id}: {len(samples)} accepted samples")
    options = family_options or policy_family_options(settings.policy_file)  # a retrain from the CLI or the API
    names = sorted({s.family for s in samples} | set(families or [])) or ["arithmetic"]
    loaded = {name: get_family(name, **options.get(name, {})) for name in names}
    if target is not None:
        loaded = {name: family.for_target(target) for name, family in loaded.items()}
    rng = random.Random(snapshot_id)
    examples = [
        loaded[s.family].training_example(loaded[s.family].parse_problem(s.problem, s.difficulty, s.meta), s.label, rng)
        for s in samples
        if s.label is not None
    ]
    replay_family = loaded[names[0]]
    out_dir = settings.adapters_dir / adapter_id
    base = base_model_dir(settings)
    finished = out_dir / TRAINING_RECORD  # trained by this job's earlier run, which died before it ended
    record = json.loads(finished.read_text()) if finished.exists() else train_lora(
        base_model=base, examples=examples, out_dir=out_dir, config=config, snapshot_id=snapshot_id,
        parent_adapter=parent_path if config.init == "parent" else None, replay=replay_family.replay_examples,
        progress=lambda step, total, loss: ctx.progress(0.02 + 0.97 * step / total, f"step {step}/{total}, loss {loss:.4f}"),
        should_stop=lambda: ctx.cancel_requested, chat=replay_family.chat,
    )
    ctx.check_cancelled()  # a cancel during the last steps ends here, before anything is published
    event = AdapterEvent(
        adapter_id=adapter_id, parent_id=parent_id, base_model=str(base), snapshot_id=snapshot_id, path=str(out_dir),
        status="trained", metrics={"final_loss": float(record["final_loss"]), "examples": float(len(examples))},
        config=record["config"],
    )
    producer = EventProducer(settings, client_id="trainer")
    try:
        producer.publish(event).get(timeout=30)
    finally:
        producer.close()
    return {"adapter_id": adapter_id, "snapshot_id": snapshot_id, "path": str(out_dir), "examples": len(examples)}


def _write_atomically(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(text)
    tmp.replace(path)
