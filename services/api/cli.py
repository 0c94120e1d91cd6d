"""The data commands of ``loopctl``: export a snapshot, import a seed dataset, serve the API and dashboard.

    loopctl export latest
        write the newest snapshot as data/exports/<snapshot id>.jsonl and .parquet
    loopctl export snap-20250102-030405-ab12cd34ef56 --out /tmp/ds --format parquet
    loopctl import seeds.jsonl --source handwritten [--wait 60]
        publish each line ({"family", "problem", "label", ...}) as an accepted sample; --wait: until the store has them
    loopctl api [--host 0.0.0.0] [--port 8000]
        serve the HTTP API and the web dashboard (prints the URL)

Loading an export::

    datasets.load_dataset("json", data_files="data/exports/<id>.jsonl", split="train")
    datasets.load_dataset("parquet", data_files="data/exports/<id>.parquet", split="train")

``add_data_commands(subparsers)`` and ``run_data_command(args)`` plug these into ``loopctl``; ``main(argv)`` runs
them on their own (``python -m services.api.cli export latest``). Nothing heavy is imported until a command runs.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

COMMANDS = ("export", "import", "api")


def add_data_commands(commands) -> None:
    """Add ``export``, ``import`` and ``api`` to an argparse subparsers object."""
    export = commands.add_parser("export", help="write a dataset snapshot as JSONL and Parquet")
    export.add_argument("snapshot", help='a snapshot id, or "latest"')
    export.add_argument("--out", type=Path, default=None, help="directory (default: exports/ in the data directory)")
    export.add_argument("--format", default="jsonl,parquet", help="comma separated: jsonl, parquet (default both)")

    seed = commands.add_parser("import", help="import a seed dataset (JSONL) as accepted samples")
    seed.add_argument(
        "file", type=Path, help='JSONL, one {"family", "problem", "label", ...} per line; "-" reads stdin'
    )
    seed.add_argument("--source", default=None, help="name kept in each sample's seed check (default: the file name)")
    seed.add_argument(
        "--wait",
        type=float,
        default=0.0,
        metavar="S",
        help="wait up to S seconds for the store writer to show every sample (default: do not wait)",
    )

    api = commands.add_parser("api", help="serve the HTTP API and the web dashboard")
    api.add_argument("--host", default="127.0.0.1")
    api.add_argument("--port", type=int, default=8000)


def run_data_command(args: argparse.Namespace) -> int:
    if args.command == "export":
        return run_export(args)
    if args.command == "import":
        return run_import(args)
    if args.command == "api":
        from services.api.__main__ import main as serve

        return serve(["--host", args.host, "--port", str(args.port)])
    raise AssertionError(args.command)


def run_export(args: argparse.Namespace) -> int:
    from services.api.errors import NotFound
    from services.api.export import export_snapshot
    from services.settings import get_settings
    from services.store.db import open_store

    settings = get_settings()
    formats = [f.strip() for f in args.format.split(",") if f.strip()]
    engine = open_store(settings)
    try:
        result = export_snapshot(
            engine, snapshot_id=args.snapshot, out_dir=args.out or settings.data_dir / "exports", formats=formats
        )
    except (NotFound, ValueError) as exc:
        print(f"export: {exc}", file=sys.stderr)
        return 1
    finally:
        engine.dispose()
    for fmt, path in result.files.items():
        print(f"{fmt}\t{path}")
    print(f"export: snapshot {result.snapshot_id}, {result.rows} rows", file=sys.stderr)
    return 0


def run_import(args: argparse.Namespace) -> int:
    from services.api.seeds import SeedError, publish_seed, read_seed_jsonl
    from services.settings import get_settings

    settings = get_settings()
    source = args.source or ("stdin" if str(args.file) == "-" else args.file.name)
    try:
        if str(args.file) == "-":
            rows = read_seed_jsonl(sys.stdin, source=source)
        else:
            with open(args.file, encoding="utf-8") as lines:
                rows = read_seed_jsonl(lines, source=str(args.file))
        if not rows:
            print(f"import: {args.file} has no rows", file=sys.stderr)
            return 1
        ids = publish_seed(settings, rows, source=source)
    except (OSError, SeedError) as exc:
        print(f"import: {exc}", file=sys.stderr)
        return 1
    print(f"import: published {len(ids)} samples from {source}")
    if args.wait > 0:
        missing = wait_for_samples(settings, ids, timeout_s=args.wait)
        if missing:
            print(
                f"import: {missing} samples not in the store after {args.wait:.0f}s (is the store writer running?)",
                file=sys.stderr,
            )
            return 1
        print("import: all samples are in the store")
    return 0


def wait_for_samples(settings, sample_ids: list[str], *, timeout_s: float) -> int:
    """Poll the store until every id is an accepted sample; returns how many are still missing."""
    from sqlalchemy import func, select
    from sqlmodel import col

    from schemas.tables import Sample
    from services.store.db import open_store

    engine = open_store(settings)
    deadline = time.monotonic() + timeout_s
    try:
        while True:
            found = 0
            with engine.connect() as connection:
                for start in range(0, len(sample_ids), 500):
                    chunk = sample_ids[start : start + 500]
                    found += connection.execute(
                        select(func.count())
                        .select_from(Sample)
                        .where(col(Sample.id).in_(chunk), col(Sample.status) == "accepted")
                    ).scalar_one()
            missing = len(sample_ids) - found
            if missing == 0 or time.monotonic() > deadline:
                return missing
            time.sleep(0.5)
    finally:
        engine.dispose()


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m services.api.cli", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    add_data_commands(parser.add_subparsers(dest="command", required=True))
    return parser


def main(argv: list[str] | None = None) -> int:
    return run_data_command(build_parser().parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
