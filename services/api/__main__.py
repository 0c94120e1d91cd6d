"""Serve the HTTP API and the web dashboard (settings from the LOOP_* environment variables).

python -m services.api
    on http://127.0.0.1:8000 (the dashboard at /, the API under /api, its docs at /api/docs)
python -m services.api --host 0.0.0.0 --port 8080
    listen on every interface (what compose does)
LOOP_API_TOKEN=$(openssl rand -hex 24) python -m services.api
    allow the mutating endpoints (promote, roll back, retrain, cancel, import) for callers with that token;
    without LOOP_API_TOKEN they answer 403 and the dashboard is read-only
python -m services.api --port 0
    any free port; the line "serving on http://HOST:PORT" says which
python -m services.api --retrain-job my_train_job
    the retrain button and POST /api/jobs/retrain submit this job instead of train_adapter
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import socket
import sys


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m services.api", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--host", default="127.0.0.1", help="interface to listen on (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8000, help="port (default 8000; 0 picks a free one)")
    parser.add_argument("--log-level", default="info", choices=["critical", "error", "warning", "info", "debug"])
    parser.add_argument(
        "--retrain-job", default=None, metavar="NAME", help="the job a retraining submits (default train_adapter)"
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    import uvicorn

    from services.api.app import create_app

    args = build_parser().parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(name)s %(levelname)s %(message)s")
    logging.getLogger("kafka").setLevel(logging.WARNING)
    # Bind first, so that the printed URL is the real one even for --port 0.
    family = socket.AF_INET6 if ":" in args.host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((args.host, args.port))
    except OSError as exc:
        print(f"services.api: cannot listen on {args.host}:{args.port}: {exc}", file=sys.stderr)
        return 1
    host, port = sock.getsockname()[:2]
    shown = "127.0.0.1" if host in ("0.0.0.0", "::") else host
    shown = f"[{shown}]" if ":" in shown else shown
    app = create_app(job_kinds={"retrain": args.retrain_job} if args.retrain_job else None)
    server = uvicorn.Server(uvicorn.Config(app, log_level=args.log_level, access_log=args.log_level == "debug"))
    print(f"services.api: serving on http://{shown}:{port} (dashboard /, API /api, docs /api/docs)", flush=True)
    asyncio.run(server.serve(sockets=[sock]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
