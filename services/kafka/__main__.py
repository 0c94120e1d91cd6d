"""Start, inspect and stop the project's own Kafka broker (KRaft, no Docker): one node, or a cluster.

    python -m services.kafka start                 # detached; returns once the broker answers
    python -m services.kafka start --nodes 3       # a three-node cluster on ports 9092-9094
    python -m services.kafka start --port 9093     # another port than LOOP_KAFKA_BOOTSTRAP's
    python -m services.kafka start --foreground    # stays attached; Ctrl-C stops the broker
    python -m services.kafka status                # exit status 0 when running and answering
    python -m services.kafka stop
    python -m services.kafka fetch                 # only resolve the broker's jars from Maven Central

The broker lives in ``$LOOP_DATA_DIR/kafka`` (data, logs/server.log, kafka.out, kafka.pid) and listens on the
port of ``$LOOP_KAFKA_BOOTSTRAP`` (default 127.0.0.1:9092); a cluster's nodes live in ``kafka/node-<id>`` and listen
on that port and the next ones (``--nodes``, default ``$LOOP_KAFKA_NODES``); status and stop find what was started. The first start fetches Kafka's jars from Maven
Central with ``mvn`` (needs Maven and Java 17+); later starts reuse them.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import time
from pathlib import Path

from services.kafka.launcher import (KafkaBroker, KafkaCluster, KafkaStartError, cluster_size, default_lib_dir,
                                     resolve_classpath)
from services.settings import get_settings


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m services.kafka",
        description="Run the project's own single-node Kafka broker on the installed JDK.",
    )
    parser.add_argument("--data-dir", type=Path, help="broker directory (default: $LOOP_DATA_DIR/kafka)")
    commands = parser.add_subparsers(dest="command", required=True)
    start = commands.add_parser("start", help="start the broker and wait until it answers")
    start.add_argument("--port", type=int, help="client port (default: the port of $LOOP_KAFKA_BOOTSTRAP)")
    start.add_argument("--controller-port", type=int, help="KRaft controller port (default: a free one)")
    start.add_argument("--nodes", type=int, help="nodes of a cluster (default: $LOOP_KAFKA_NODES, 1)")
    start.add_argument("--heap", default="512m", help="JVM maximum heap (default: %(default)s)")
    start.add_argument("--timeout", type=float, default=90, help="seconds to wait for it to answer")
    start.add_argument("--foreground", action="store_true", help="stay attached; Ctrl-C or SIGTERM stops it")
    commands.add_parser("fetch", help="resolve Kafka's jars from Maven Central into the cache, start nothing")
    commands.add_parser("status", help="say whether the broker runs and answers (exit status 0 if so)")
    stop = commands.add_parser("stop", help="stop the broker cleanly (SIGKILL after --timeout seconds)")
    stop.add_argument("--timeout", type=float, default=30)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    logging.getLogger("kafka").setLevel(logging.WARNING)  # the admin client's connection chatter
    data_dir = args.data_dir or get_settings().data_dir / "kafka"
    if args.command == "start":
        return start(data_dir, args)
    if args.command == "fetch":
        lib_dir = default_lib_dir()
        jars = resolve_classpath(lib_dir).split(":")
        print(f"{len(jars)} jars in {lib_dir}")
        return 0
    nodes = cluster_size(data_dir)
    brokers = KafkaCluster(data_dir, nodes).nodes if nodes else [KafkaBroker(data_dir)]
    if args.command == "status":
        healthy = True
        for broker in brokers:
            if not broker.is_running():
                print(f"not running (data dir {broker.data_dir})")
                healthy = False
                continue
            answers = broker.answers()
            print(f"running, pid {broker.pid}, at {broker.bootstrap}, {'answering' if answers else 'NOT answering'}")
            healthy = healthy and answers
        return 0 if healthy else 1
    for broker in reversed(brokers):
        was_running = broker.is_running()
        broker.stop(timeout=args.timeout)
        print("stopped" if was_running else f"not running (data dir {broker.data_dir})")
    return 0


def start(data_dir: Path, args: argparse.Namespace) -> int:
    port = args.port or _settings_port()
    nodes = args.nodes or get_settings().kafka_nodes
    if nodes > 1:
        target: KafkaBroker | KafkaCluster = KafkaCluster(data_dir, nodes, port=port, heap=args.heap)
    else:
        target = KafkaBroker(data_dir, port=port, controller_port=args.controller_port, heap=args.heap)
        if target.is_running():
            print(f"already running, pid {target.pid}, data dir {target.data_dir}")
            return 0
    try:
        target.start(timeout=args.timeout, detach=not args.foreground)
    except KafkaStartError as error:
        print(error, file=sys.stderr)
        return 1
    print(f"Kafka running at {target.bootstrap}; logs in {target.data_dir}")
    if not args.foreground:
        return 0
    # SIGTERM becomes SystemExit so that the `finally` below stops the broker cleanly.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    try:
        while target.is_running():
            time.sleep(1)
    except KeyboardInterrupt:
        return 0
    finally:
        target.stop()
    print(f"the broker exited on its own; see {target.data_dir}", file=sys.stderr)
    return 1


def _settings_port() -> int:
    first = get_settings().kafka_bootstrap.split(",")[0].strip()
    return int(first.rpartition(":")[2])


if __name__ == "__main__":
    sys.exit(main())
