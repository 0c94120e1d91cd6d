"""Run the store writer: the event topics into the SQL store (settings from LOOP_* environment variables).

    python -m services.store
        consume loop.candidates, loop.verdicts, loop.adapters, loop.evals, loop.jobs and loop.dlq into the store
        (LOOP_DATABASE_URL, default the SQLite file store.sqlite in LOOP_DATA_DIR) until SIGTERM or Ctrl-C;
        the consumer group is store-writer, so a restart carries on where the last committed batch ended
    python -m services.store --replay
        rebuild an empty store from the topics: a fresh consumer group reads every topic from the beginning, and
        the command exits once nothing new has arrived for --idle-exit seconds (default 10); the store must be
        empty unless --allow-nonempty is given
    python -m services.store --replay --follow
        the same, then keep following the topics under the fresh group
    LOOP_DATABASE_URL=postgresql://loop:secret@db:5432/loop python -m services.store
        the same writer into PostgreSQL (psycopg 3)

A progress line (events stored, rate, rows upserted per table) is logged every --progress-every seconds.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
import uuid

from services.bus import create_topics
from services.settings import get_settings
from services.store.db import is_empty, open_store
from services.store.writer import DEFAULT_GROUP_ID, DEFAULT_SESSION_TIMEOUT_MS, StoreWriter

log = logging.getLogger("services.store")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m services.store", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--replay", action="store_true", help="read every topic from the beginning with a fresh group")
    parser.add_argument("--follow", action="store_true", help="with --replay: keep consuming after catching up")
    parser.add_argument("--allow-nonempty", action="store_true", help="with --replay: replay into a store with rows")
    parser.add_argument("--group-id", default=None, help=f"consumer group (default {DEFAULT_GROUP_ID})")
    parser.add_argument("--batch-size", type=int, default=2000, help="most events per transaction (default 2000)")
    parser.add_argument(
        "--idle-exit", type=float, default=None, metavar="S",
        help="exit after S seconds with nothing to consume (default: never; 10 with --replay unless --follow)",
    )  # fmt: skip
    parser.add_argument(
        "--session-timeout-ms", type=int, default=DEFAULT_SESSION_TIMEOUT_MS,
        help="how long the group waits for a writer that stopped answering before another may take over "
        f"(a restart after a crash resumes after it; default {DEFAULT_SESSION_TIMEOUT_MS}, broker minimum 6000)",
    )  # fmt: skip
    parser.add_argument("--progress-every", type=float, default=30.0, metavar="S", help="progress line period")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    logging.getLogger("kafka").setLevel(logging.WARNING)  # its INFO lines are per connection, not per batch
    settings = get_settings()
    engine = open_store(settings)
    idle_exit = args.idle_exit
    group_id = args.group_id or DEFAULT_GROUP_ID
    if args.replay:
        if not args.allow_nonempty and not is_empty(engine):
            print(
                f"refusing to replay into {engine.url.render_as_string(hide_password=True)}: it already has rows "
                "(point LOOP_DATABASE_URL at an empty database, or pass --allow-nonempty)",
                file=sys.stderr,
            )
            return 2
        group_id = args.group_id or f"{DEFAULT_GROUP_ID}-replay-{time.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:6]}"
        if idle_exit is None and not args.follow:
            idle_exit = 10.0
    create_topics(settings)
    writer = StoreWriter(
        settings,
        engine=engine,
        group_id=group_id,
        batch_size=args.batch_size,
        progress_every_s=args.progress_every,
        session_timeout_ms=args.session_timeout_ms,
    )
    writer.install_signal_handlers()
    log.info(
        "store writer: group %s, store %s, topics with prefix %r%s",
        group_id, engine.url.render_as_string(hide_password=True), settings.topic_prefix,
        " (replaying from the beginning)" if args.replay else "",
    )  # fmt: skip
    try:
        writer.run(idle_timeout_s=idle_exit)
    finally:
        engine.dispose()
    log.info("store writer: stopped after %d events (%d dead-lettered)", writer.handled, writer.dead_lettered)
    return 0


if __name__ == "__main__":
    sys.exit(main())
