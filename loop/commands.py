"""The handlers of loopctl's subcommands (the parser and its help are in ``loop.cli``)."""

from __future__ import annotations

import argparse
import json
import time

from schemas.messages import TERMINAL_JOB_STATES
from services.settings import get_settings


def cmd_up(args: argparse.Namespace) -> int:
    from loop.up import run_up

    return run_up(minutes=args.minutes, rounds=args.rounds, target=args.target, policy_path=args.policy,
                  api_port=args.api_port)


def cmd_model(args: argparse.Namespace) -> int:
    from workers.model.resolve import base_model_dir

    print(f"model: {base_model_dir(get_settings())}")
    return 0


def cmd_init(args: argparse.Namespace) -> int:
    """Once, before the services start (compose's init service): each would do it on its own too, but at once they
    would race to create the same tables and train the same builtin model."""
    from services.bus import create_topics
    from services.store.db import open_store
    from workers.model.resolve import base_model_dir

    settings = get_settings()
    created = create_topics(settings)
    print(f"topics: {len(created)} created, the others existed")
    open_store(settings).dispose()
    print(f"store: tables ready at {settings.store_url.split('@')[-1]}")
    print(f"model: {base_model_dir(settings)}")
    return 0


def cmd_audit(args: argparse.Namespace) -> int:
    """Once the store writer has caught up: the topics' candidates, verdicts and adapter events against the store."""
    from schemas.messages import CONSUMER_GROUPS
    from services.bus.lag import LagMonitor
    from services.store.audit import audit
    from services.store.db import open_store

    settings = get_settings()
    monitor = LagMonitor(settings)
    try:
        behind = sum(monitor.lag("store-writer", topic) for topic in CONSUMER_GROUPS["store-writer"])
    finally:
        monitor.close()
    result = audit(settings, open_store(settings))
    print(json.dumps({**result.as_dict(), "store_writer_lag": behind, "ok": result.ok}))
    if behind:
        print(f"the store writer has {behind} messages to go: what it has not stored yet counts as lost")
    return 0 if result.ok else 1


def cmd_tasks(args: argparse.Namespace) -> int:
    from tasks import available_families

    found = available_families()
    width = max(len(f.name) for f in found)
    for family in found:
        print(f"{family.name:<{width}}  {family.source}{f'  CANNOT LOAD: {family.error}' if family.error else ''}")
    print("or any package.module:ClassName importable here (a TaskFamily subclass), named as the policy's family")
    return 1 if any(f.error for f in found) else 0


def cmd_status(args: argparse.Namespace) -> int:
    from loop.status import read_status
    from services.bus.lag import LagMonitor
    from services.store.db import open_store

    settings = get_settings()
    monitor = LagMonitor(settings)
    try:
        print(read_status(settings, open_store(settings), monitor).line())
    finally:
        monitor.close()
    return 0


def cmd_rounds(args: argparse.Namespace) -> int:
    from loop.status import plot_rounds, read_rounds, rounds_table

    settings = get_settings()
    rounds = read_rounds(settings)
    if not rounds:
        print("no rounds yet")
        return 0
    print(rounds_table(rounds))
    print(f"plot: {plot_rounds(rounds, settings.data_dir / 'loop' / 'heldout_accuracy.png')}")
    return 0


def cmd_samples(args: argparse.Namespace) -> int:
    from sqlmodel import Session, col, select

    from schemas.tables import Sample
    from services.store.db import open_store

    query = select(Sample)
    for column, value in (("status", args.status), ("family", args.family), ("difficulty", args.difficulty),
                          ("adapter_id", args.adapter)):
        if value is not None:
            query = query.where(getattr(Sample, column) == value)
    with Session(open_store(get_settings())) as session:
        rows = session.exec(query.order_by(col(Sample.generated_at).desc()).limit(args.limit)).all()
    print(f"{'id':<34} {'family':<11} {'diff':>4} {'status':<9} {'label':<22} {'adapter':<30} problem")
    for sample in rows:
        print(f"{sample.id:<34} {sample.family:<11} {sample.difficulty:>4} {sample.status:<9} {str(sample.label):<22} "
              f"{str(sample.adapter_id or 'base'):<30} {sample.problem}")
    return 0


def cmd_retrain(args: argparse.Namespace) -> int:
    from services.jobs import job_status, submit_job

    settings = get_settings()
    lora = {key: value for key, value in (("steps", args.steps), ("init", args.init)) if value is not None}
    parent = _current_adapter(settings)
    job_id = submit_job("train_adapter", {"families": [args.family], "lora": lora,
                                          "parent_id": parent[0] if parent else None,
                                          "parent_path": parent[1] if parent else None}, settings=settings)
    print(job_id)
    if not args.wait:
        return 0
    while True:
        status = job_status(job_id, settings=settings)
        if status is not None and status.state in TERMINAL_JOB_STATES:
            print(json.dumps(status.model_dump(mode="json"), indent=2))
            return 0 if status.state == "succeeded" else 1
        time.sleep(1.0)


def _current_adapter(settings) -> tuple[str, str] | None:
    from sqlmodel import Session

    from services.api.queries.adapters import current_adapter
    from services.store.db import open_store

    with Session(open_store(settings)) as session:
        adapter = current_adapter(session)
        return (adapter.id, adapter.path) if adapter else None


def cmd_jobs(args: argparse.Namespace) -> int:
    from sqlmodel import Session, col, select

    from schemas.tables import Job
    from services.jobs import job_status, request_cancel
    from services.store.db import open_store

    settings = get_settings()
    if args.job_id and args.cancel:
        try:
            requested = request_cancel(args.job_id, settings=settings)
        except LookupError:
            print(f"no job {args.job_id}")
            return 1
        print("cancel requested" if requested else "the job has already ended")
        return 0
    if args.job_id:
        status = job_status(args.job_id, settings=settings)
        if status is None:
            print(f"no job {args.job_id}")
            return 1
        print(json.dumps(status.model_dump(mode="json"), indent=2))
        return 0
    with Session(open_store(settings)) as session:
        rows = session.exec(select(Job).order_by(col(Job.created_at).desc()).limit(30)).all()
    for job in rows:
        progress = "" if job.progress is None else f"{job.progress:.0%}"
        print(f"{job.id:<40} {job.kind:<18} {job.state:<10} {progress:>5} {job.message[:60]}")
    return 0


def cmd_adapters(args: argparse.Namespace) -> int:
    from sqlmodel import Session

    from services.api.errors import Conflict, NotFound
    from services.api.queries.adapters import list_adapters, plan_promotion, plan_rollback
    from services.bus import EventProducer
    from services.store.db import open_store

    settings = get_settings()
    with Session(open_store(settings)) as session:
        if args.action == "list":
            for adapter in list_adapters(session, limit=100).items:
                mark = "*" if adapter.current else " "
                print(f"{mark} {adapter.id:<34} {adapter.status:<12} parent={adapter.parent_id or 'base'} "
                      f"snapshot={adapter.snapshot_id} mean_accuracy={adapter.mean_accuracy}")
            return 0
        try:
            if args.action == "promote":
                if not args.adapter_id:
                    print("loopctl adapters promote needs an adapter id")
                    return 2
                plan = plan_promotion(session, adapter_id=args.adapter_id)
            else:
                plan = plan_rollback(session, to=args.to)
        except (Conflict, NotFound) as exc:
            print(f"refused: {exc}")
            return 1
    producer = EventProducer(settings, client_id="loopctl")
    try:
        for event in plan.events:
            producer.publish(event).get(timeout=30)
    finally:
        producer.close()
    print(f"current adapter: {plan.before or 'base'} -> {plan.after or 'base'}")
    return 0


def cmd_kafka(args: argparse.Namespace) -> int:
    from services.kafka.__main__ import main as kafka_main

    extra = ["--nodes", str(args.nodes)] if args.action == "start" and args.nodes else []
    return kafka_main([args.action, *extra])


def cmd_topics(args: argparse.Namespace) -> int:
    from services.bus import create_topics

    created = create_topics(get_settings())
    print(f"created {len(created)} topics: {', '.join(created) or '(all existed)'}")
    return 0


def cmd_store(args: argparse.Namespace) -> int:
    from services.store.__main__ import main as store_main

    return store_main(["--replay"] if args.replay else [])


def cmd_worker(args: argparse.Namespace) -> int:
    from services.jobs.__main__ import main as jobs_main

    return jobs_main(["worker", "--queues", args.queues, "--concurrency", str(args.concurrency)])
