"""Run a jobs worker, or submit, watch and cancel jobs (settings from the LOOP_* environment variables).

    python -m services.jobs worker
        one worker for the queues train, eval and default, one job at a time (prefork pool of 1: a training
        job gets both cores of a laptop, and a hard time limit can kill it without killing the worker)
    python -m services.jobs worker --queues train --concurrency 1
    python -m services.jobs worker --queues eval,default --concurrency 2
        a worker per kind of work, on a machine with more cores
    python -m services.jobs worker --include my_jobs
        also load the jobs defined in the module my_jobs (``services.jobs.tasks`` and every
        ``workers/<role>/jobs.py`` are always loaded)
    LOOP_CELERY_BROKER_URL=redis://localhost:6379/0 python -m services.jobs worker
        the same with Redis as the broker (the default is the SQLite file celery-broker.sqlite in LOOP_DATA_DIR)

    python -m services.jobs jobs
        list the jobs a worker of this installation runs, and their queues
    python -m services.jobs submit replay_store --kwargs '{"target_url": "sqlite:////tmp/rebuilt.sqlite"}'
        queue a job; prints its id (its events go to loop.jobs)
    python -m services.jobs status JOB_ID
    python -m services.jobs cancel JOB_ID
        ask a queued or running job to stop; it ends "cancelled" at its next progress report
"""

from __future__ import annotations

import argparse
import importlib
import json
import logging
import os
import sys

from services.jobs.app import QUEUES, broker_kind, discover_job_modules, make_app
from services.jobs.pool import FreeReadLock
from services.jobs.recovery import ReleaseStranded, requeue_orphans


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m services.jobs", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    commands = parser.add_subparsers(dest="command", required=True)
    worker = commands.add_parser("worker", help="run a Celery worker for the loop's jobs")
    worker.add_argument("--queues", default=",".join(QUEUES), help=f"comma separated (default {','.join(QUEUES)})")
    worker.add_argument("--concurrency", type=int, default=1, help="jobs run at once, one process each (default 1)")
    worker.add_argument("--include", action="append", default=[], metavar="MODULE", help="another module of jobs")
    worker.add_argument("--hostname", default=None, help="the worker's node name (default jobs-<pid>@<host>)")
    worker.add_argument("--loglevel", default="INFO")
    worker.add_argument(
        "--max-tasks-per-child", type=int, default=None, metavar="N",
        help="replace a pool process after N jobs (frees what a training job leaves in memory)",
    )  # fmt: skip
    commands.add_parser("jobs", help="list the jobs and their queues")
    submit = commands.add_parser("submit", help="queue a job and print its id")
    submit.add_argument("kind", help="the job's name, e.g. replay_store")
    submit.add_argument("--kwargs", default="{}", help="the job's keyword arguments as a JSON object")
    status = commands.add_parser("status", help="print a job's status as JSON")
    status.add_argument("job_id")
    cancel = commands.add_parser("cancel", help="ask a job to stop")
    cancel.add_argument("job_id")
    return parser


def run_worker(args: argparse.Namespace) -> int:
    from services.bus import create_topics
    from services.settings import get_settings

    queues = [q.strip() for q in args.queues.split(",") if q.strip()]
    unknown = sorted(set(queues) - set(QUEUES))
    if unknown:
        print(f"unknown queue(s) {', '.join(unknown)}; the queues are {', '.join(QUEUES)}", file=sys.stderr)
        return 2
    logging.getLogger("kafka").setLevel(logging.WARNING)  # kafka-python narrates every connection at INFO
    settings = get_settings()
    create_topics(settings)  # waits for Kafka: a worker that cannot publish its jobs' events should not start
    app = make_app(settings)
    app.conf.imports = [*app.conf.imports, *args.include]
    requeue_orphans(app, settings)  # before this worker takes anything: a job its dead predecessor held
    if broker_kind(settings.broker_url) == "sqla":
        app.steps["worker"].add(ReleaseStranded)  # and, while it runs, jobs a dead worker took but never started
    app.steps["worker"].add(FreeReadLock)  # a pool whose idle process was killed takes jobs again
    argv = [
        "worker",
        f"--queues={','.join(queues)}",
        f"--concurrency={args.concurrency}",
        f"--hostname={args.hostname or f'jobs-{os.getpid()}@%h'}",
        f"--loglevel={args.loglevel}",
        "--pool=prefork",  # time limits and a crash-proof parent need child processes
        # The loop's workers need no cluster chatter; it also costs seconds at start on Redis.
        "--without-gossip",
        "--without-mingle",
        "--without-heartbeat",
    ]
    if args.max_tasks_per_child:
        argv.append(f"--max-tasks-per-child={args.max_tasks_per_child}")
    app.worker_main(argv)
    return 0


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "worker":
        return run_worker(args)
    logging.basicConfig(level=logging.WARNING)
    from services.jobs.control import job_status, request_cancel, submit_job
    from services.jobs.lifecycle import JOBS

    for module in discover_job_modules():
        importlib.import_module(module)
    if args.command == "jobs":
        for name, spec in sorted(JOBS.items()):
            print(f"{name}\tqueue={spec.queue}\t{spec.fn.__module__}")
        return 0
    if args.command == "submit":
        print(submit_job(args.kind, json.loads(args.kwargs)))
        return 0
    if args.command == "status":
        status = job_status(args.job_id)
        if status is None:
            print(f"no job {args.job_id}", file=sys.stderr)
            return 1
        print(status.model_dump_json(indent=2))
        return 0
    if args.command == "cancel":
        try:
            requested = request_cancel(args.job_id)
        except LookupError as exc:
            print(exc, file=sys.stderr)
            return 1
        if not requested:
            print(f"job {args.job_id} had already ended", file=sys.stderr)
            return 1
        print(f"cancel requested for {args.job_id}")
        return 0
    raise AssertionError(args.command)


if __name__ == "__main__":
    sys.exit(main())
