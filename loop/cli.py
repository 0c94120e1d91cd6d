"""loopctl: the one command line for users of the loop.

Run it:
    loopctl up [--minutes M] [--rounds R] [--target D] [--policy P.json]
                                      start everything (Kafka, store writer, job worker, generator, verifier,
                                      controller), show live progress; Ctrl-C or SIGTERM stops it cleanly;
                                      running it again resumes where it stopped
    loopctl model bootstrap           train the builtin model now (otherwise `up` does it on first start)
    loopctl init                      what every service needs before it starts: the topics, the store's tables,
                                      the base model (compose runs it once, as its init service)
    loopctl tasks                     the task families available (builtin, installed plug-ins) and where each is from

Watch and steer it:
    loopctl status                    current adapter, difficulty, rates, consumer lag per group
    loopctl rounds                    the per-round table (and the plot beside the data directory's loop state)
    loopctl audit                     the store against the topics: every candidate one row, every verdict and
                                      adapter event reflected (exit 1 where not)
    loopctl samples [--status accepted] [--family F] [--difficulty D] [--adapter A] [--limit N]
    loopctl retrain [--steps N] [--init base|parent]           start a training job now; prints its id
    loopctl jobs [JOB_ID] [--cancel]  list jobs, show one, or cancel it
    loopctl adapters [list | promote ID | rollback [--to ID|base]]
    loopctl api [--host H] [--port P]                   the HTTP API and web dashboard
    loopctl export SNAPSHOT|latest [--out DIR] [--format jsonl,parquet]
    loopctl import FILE.jsonl [--source NAME]           a seed dataset, as accepted samples

Infrastructure on its own:
    loopctl kafka start|stop|status|fetch   the project's own Kafka broker (start --nodes 3: a cluster)
    loopctl topics                    create the loop's topics
    loopctl store [--replay]          run the store writer (--replay rebuilds an empty database from the topics)
    loopctl worker [--queues ...]     run a Celery job worker

Settings come from the environment (LOOP_DATA_DIR, LOOP_KAFKA_BOOTSTRAP, LOOP_DATABASE_URL,
LOOP_CELERY_BROKER_URL, LOOP_MODEL_DIR, ...); see the README.
"""

from __future__ import annotations

import argparse
import logging
import sys


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="loopctl", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)

    up = commands.add_parser("up", help="start the embedded stack and supervise it until Ctrl-C or SIGTERM")
    up.add_argument("--minutes", type=float, default=None, help="stop by itself after this many minutes")
    up.add_argument("--rounds", type=int, default=None, help="stop after this many rounds")
    up.add_argument("--target", type=int, default=None, help="the curriculum goes no further than this difficulty")
    up.add_argument("--policy", default=None, help="a JSON file of LoopPolicy fields")
    up.add_argument("--api-port", type=int, default=8000, help="port of the API and dashboard (0: do not start them)")

    model = commands.add_parser("model", help="the builtin model")
    model.add_argument("action", choices=["bootstrap"])

    commands.add_parser("init", help="create the topics and the store's tables, and resolve the base model")
    commands.add_parser("tasks", help="the task families available here, and where each comes from")
    commands.add_parser("status", help="the loop's state, rates and consumer lag")
    commands.add_parser("rounds", help="the per-round table, and its plot")
    commands.add_parser("audit", help="the store against the topics: nothing lost, nothing doubled")

    samples = commands.add_parser("samples", help="list samples from the store")
    samples.add_argument("--status", choices=["pending", "accepted", "rejected"])
    samples.add_argument("--family")
    samples.add_argument("--difficulty", type=int)
    samples.add_argument("--adapter")
    samples.add_argument("--limit", type=int, default=20)

    retrain = commands.add_parser("retrain", help="start a training job now; prints its id")
    retrain.add_argument("--family", default="arithmetic")
    retrain.add_argument("--steps", type=int, default=None)
    retrain.add_argument("--init", choices=["base", "parent"], default=None)
    retrain.add_argument("--wait", action="store_true", help="wait for the job to end and print its result")

    jobs = commands.add_parser("jobs", help="list jobs, show one, or cancel it")
    jobs.add_argument("job_id", nargs="?")
    jobs.add_argument("--cancel", action="store_true")

    adapters = commands.add_parser("adapters", help="list adapters, promote one, or roll back")
    adapters.add_argument("action", nargs="?", choices=["list", "promote", "rollback"], default="list")
    adapters.add_argument("adapter_id", nargs="?")
    adapters.add_argument("--to", default=None, help="rollback target: an adapter id or 'base' (default: the parent)")

    kafka = commands.add_parser("kafka", help="start, stop or inspect the project's own Kafka broker")
    kafka.add_argument("action", choices=["start", "stop", "status", "fetch"])
    kafka.add_argument("--nodes", type=int, help="start: nodes of a cluster (default: $LOOP_KAFKA_NODES, 1)")
    commands.add_parser("topics", help="create the loop's topics (idempotent)")
    store = commands.add_parser("store", help="run the store writer")
    store.add_argument("--replay", action="store_true", help="read every topic from the beginning with a fresh group")
    worker = commands.add_parser("worker", help="run a Celery job worker")
    worker.add_argument("--queues", default="train,eval,default")
    worker.add_argument("--concurrency", type=int, default=1)

    from services.api.cli import add_data_commands

    add_data_commands(commands)  # export, import, api
    return parser


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    logging.getLogger("kafka").setLevel(logging.WARNING)  # the client's connection chatter
    args = build_parser().parse_args(argv)
    if args.command in ("export", "import", "api"):
        from services.api.cli import run_data_command

        return run_data_command(args)
    from loop import commands

    handler = getattr(commands, f"cmd_{args.command}")
    return handler(args) or 0


if __name__ == "__main__":
    sys.exit(main())
