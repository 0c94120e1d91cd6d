"""loopctl: the one command line for users of the loop.

    loopctl up [--minutes M]          start the embedded stack (Kafka, store writer, job worker); Ctrl-C stops it
    loopctl kafka start|stop|status   run the project's own Kafka broker on its own
    loopctl topics                    create the loop's topics on the configured broker
    loopctl store [--replay]          run the store writer (replay: rebuild an empty database from the topics)
    loopctl worker [--queues ...]     run a Celery job worker

Settings come from the environment (LOOP_DATA_DIR, LOOP_KAFKA_BOOTSTRAP, LOOP_DATABASE_URL,
LOOP_CELERY_BROKER_URL, ...); see the README.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import time


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="loopctl", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)

    up = commands.add_parser("up", help="start the embedded stack and supervise it until Ctrl-C or SIGTERM")
    up.add_argument("--minutes", type=float, default=None, help="stop by itself after this many minutes")

    kafka = commands.add_parser("kafka", help="start, stop or inspect the project's own Kafka broker")
    kafka.add_argument("action", choices=["start", "stop", "status", "fetch"])

    commands.add_parser("topics", help="create the loop's topics (idempotent)")

    store = commands.add_parser("store", help="run the store writer")
    store.add_argument("--replay", action="store_true", help="read every topic from the beginning with a fresh group")

    worker = commands.add_parser("worker", help="run a Celery job worker")
    worker.add_argument("--queues", default="train,eval,default")
    worker.add_argument("--concurrency", type=int, default=1)
    return parser


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    logging.getLogger("kafka").setLevel(logging.WARNING)  # the client's connection chatter
    args = build_parser().parse_args(argv)
    if args.command == "up":
        return run_up(minutes=args.minutes)
    if args.command == "kafka":
        from services.kafka.__main__ import main as kafka_main

        return kafka_main([args.action])
    if args.command == "topics":
        from services.bus import create_topics
        from services.settings import get_settings

        created = create_topics(get_settings())
        print(f"created {len(created)} topics: {', '.join(created) or '(all existed)'}")
        return 0
    if args.command == "store":
        from services.store.__main__ import main as store_main

        return store_main(["--replay"] if args.replay else [])
    if args.command == "worker":
        from services.jobs.__main__ import main as jobs_main

        return jobs_main(["worker", "--queues", args.queues, "--concurrency", str(args.concurrency)])
    raise AssertionError(args.command)


def run_up(*, minutes: float | None) -> int:
    """Start Kafka and the services as supervised processes; stop everything on Ctrl-C, SIGTERM or the bound."""
    from loop.supervisor import Supervisor
    from services.bus import create_topics
    from services.kafka.launcher import KafkaBroker
    from services.settings import get_settings

    settings = get_settings()
    port = int(settings.kafka_bootstrap.split(",")[0].rpartition(":")[2])
    broker = KafkaBroker(settings.data_dir / "kafka", port=port)
    stopping = False

    def request_stop(*_: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(signal.SIGINT, request_stop)

    print(f"loopctl: data directory {settings.data_dir}")
    broker.start()
    print(f"loopctl: Kafka answering at {broker.bootstrap}")
    supervisor = Supervisor(settings.data_dir / "logs")
    try:
        create_topics(settings)
        supervisor.add("store-writer", ["services.store"])
        supervisor.add("jobs-worker", ["services.jobs", "worker", "--queues", "train,eval,default"])
        supervisor.start()
        deadline = time.monotonic() + minutes * 60 if minutes else None
        while not stopping and (deadline is None or time.monotonic() < deadline):
            failed = supervisor.check()
            if failed:
                print(f"loopctl: {', '.join(failed)} kept failing; see {supervisor.log_dir}", file=sys.stderr)
                return 1
            time.sleep(1.0)
        return 0
    finally:
        print("loopctl: stopping")
        supervisor.stop()
        broker.stop()


if __name__ == "__main__":
    sys.exit(main())
