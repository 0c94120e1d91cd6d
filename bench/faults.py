"""Faults cost time, never data: the loop on the embedded default with faults injected at random, then counted.

    python bench/faults.py --minutes 30 --faults 60 --seed 1 --model DIR --baseline RUN_DIR
    python bench/faults.py --minutes 5 --faults 10          # a quick look
    (tests/loop/test_faults_bench.py runs a three-minute form on a tiny model and a small policy)

Runs ``loopctl up --minutes M`` in a fresh data directory and, from a seeded RNG, injects one fault at a time, each
once the loop has made progress since the last (or after --recovery-bound seconds), at exponential gaps averaging
M * 60 / --faults seconds, none in the last --recovery-bound seconds (the run's end would cut its recovery short):
  kill     SIGKILL of a random service while it works: store writer, generator, verifier, controller, job worker,
           index updater (where the family runs one)
  train    SIGKILL of the job worker's pool process while it trains an adapter (a kill when nothing trains)
  broker   the Kafka broker stopped with SIGKILL; the supervisor starts it again on its port and log directory
  poison   malformed messages written into every topic a running group reads, by ``kcat`` (an independent client)
  db       with --postgres: the store's PostgreSQL server stopped at once (``pg_ctl stop -m immediate``, as a crash)
           and started again 2-10 s later
The embedded default's store is SQLite, a file in the data directory, with no server to stop: without --postgres the
line's db restarts stay 0. With it the bench runs its own PostgreSQL cluster (initdb, pg_ctl from Debian's
``postgresql``) in the run's folder, and the loop's store and job results live there. Progress is read from the store every second: verdicts stored, training or evaluation advancing, rounds ended. The
recovery of a fault is the time from the fault to the first progress after it.

After the run the broker is started again and the store writer drained; then every distinct key of
``loop.candidates`` must be one row of the store, every verdict must be reflected in its row, every adapter event
in the store, the store writer's offsets at the end of its topics, every poison message in ``loop.dlq``, and every
promoted adapter must pass the promotion gate against the one before it. The final digits are put beside those of a
run without faults of the same length (``--baseline``: a finished ``loopctl up`` data directory, e.g. a headline
run from the same base model). Ends with one line:
    faults: <T> faults in <M> min (<K> kills, <B> broker restarts, <P> db restarts), <L> lost, <D> doubled,
    <Q>/<I> malformed in DLQ, longest recovery <R> s, final <F> vs <F0> digits
One script, because the faults it injects and the checks it runs after are read together: each check is there for
what a fault may do.
"""

from __future__ import annotations

import argparse
import base64
import glob
import json
import os
import pwd
import random
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from sqlalchemy import func  # noqa: E402
from sqlmodel import Session, select  # noqa: E402

from loop.policy import LoopPolicy, promotion_gate  # noqa: E402
from schemas.messages import ACTIVE_JOB_STATES, CONSUMER_GROUPS, EvalScore  # noqa: E402
from schemas.tables import EvalRecord, Job, Sample  # noqa: E402
from services.bus.lag import LagMonitor  # noqa: E402
from services.kafka.launcher import KafkaBroker  # noqa: E402
from services.settings import Settings  # noqa: E402
from services.store.audit import audit, decoded  # noqa: E402
from services.store.db import open_store  # noqa: E402

SERVICES = {  # the module each service runs, as its command line names it
    "store-writer": "services.store", "generator": "workers.generator", "verifier": "workers.verifier",
    "controller": "loop.controller", "jobs-worker": "services.jobs", "index-updater": "workers.verifier.index_updater",
}
GROUP_SERVICE = {"store-writer": "store-writer", "verifiers": "verifier", "generators": "generator",
                 "controller": "controller", "index-updater": "index-updater"}  # consumer group -> its service
WEIGHTS = {"kill": 6, "train": 2, "broker": 2, "poison": 2}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, default=30.0)
    parser.add_argument("--faults", type=int, default=60, help="faults aimed for in the run")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--model", type=Path, help="a base model directory (default: bootstrap the builtin)")
    parser.add_argument("--baseline", type=Path, help="a finished loopctl up data directory without faults, from the "
                        "same base model (read up to --minutes)")
    parser.add_argument("--policy", type=Path, help="the loop's policy file (default: the recipe's)")
    parser.add_argument("--recovery-bound", type=float, default=60.0, help="seconds a recovery may take")
    parser.add_argument("--out", type=Path, default=ROOT / "data" / "bench" / "faults")
    parser.add_argument("--postgres", action="store_true", help="the store on a PostgreSQL server the bench restarts")
    return parser.parse_args(argv)


class Postgres:
    """The bench's own PostgreSQL cluster in the run's folder (as the ``postgres`` user when run as root: initdb
    refuses root), stopped as by a crash and started again on the same port and data."""

    def __init__(self, root: Path) -> None:
        bins = sorted(Path(p) for p in glob.glob("/usr/lib/postgresql/*/bin") if Path(p, "pg_ctl").exists())
        if not bins:
            raise SystemExit("faults: --postgres needs PostgreSQL's server binaries (apt-get install postgresql)")
        self.bin, self.root = bins[-1], root
        self.data = root / "data"
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            self.port = sock.getsockname()[1]
        self.as_user: list[str] = []
        root.mkdir(parents=True, exist_ok=True)
        if os.geteuid() == 0:
            owner = pwd.getpwnam("postgres")
            os.chown(root, owner.pw_uid, owner.pw_gid)
            self.as_user = ["runuser", "-u", "postgres", "--"]
        self._run("initdb", "-D", str(self.data), "-U", "loop", "--auth=trust", "-E", "UTF8", "--locale=C")

    @property
    def url(self) -> str:
        return f"postgresql+psycopg://loop@127.0.0.1:{self.port}/postgres"

    def _run(self, tool: str, *args: str) -> None:
        subprocess.run([*self.as_user, str(self.bin / tool), *args], check=True, capture_output=True, cwd=self.root,
                       timeout=120)

    def start(self) -> None:
        options = f"-p {self.port} -c listen_addresses=127.0.0.1 -c unix_socket_directories={self.root}"
        self._run("pg_ctl", "-D", str(self.data), "-l", str(self.root / "postgres.log"), "-o", options, "-w", "start")

    def stop(self) -> None:
        self._run("pg_ctl", "-D", str(self.data), "-m", "immediate", "-w", "stop")


class Loop:
    """The running ``loopctl up`` and what can be read of it."""

    def __init__(self, data_dir: Path, settings: Settings, process: subprocess.Popen) -> None:
        self.data_dir, self.settings, self.process = data_dir, settings, process
        self.store = open_store(settings)
        self.members: set[str] = set()  # the services this loop runs, as first seen

    def services(self) -> dict[str, list[psutil.Process]]:
        found: dict[str, list[psutil.Process]] = {}
        for child in psutil.Process(self.process.pid).children(recursive=True):
            try:
                command = child.cmdline()
            except psutil.Error:
                continue
            if "kafka.Kafka" in command:
                found.setdefault("broker", []).append(child)
            elif "-m" in command and command.index("-m") + 1 < len(command):
                module = command[command.index("-m") + 1]
                name = next((n for n, m in SERVICES.items() if m == module), None)
                if name:
                    found.setdefault(name, []).append(child)
        return found

    def progress(self) -> tuple:
        """What moves while the loop works: verdicts stored, jobs' progress and ends, evaluations, rounds."""
        try:
            with Session(self.store) as session:
                verdicts = session.exec(select(func.count()).select_from(Sample).where(Sample.status != "pending")).one()
                jobs = session.exec(select(func.sum(Job.progress), func.count()).select_from(Job)
                                    .where(Job.state.in_([*ACTIVE_JOB_STATES, "succeeded"]))).one()
                evals = session.exec(select(func.count()).select_from(EvalRecord)).one()
        except Exception:  # noqa: BLE001 - the store is being written or restarted: no progress seen this time
            return ()
        state = self.data_dir / "loop" / "controller.json"
        round_no = json.loads(state.read_text()).get("round") if state.exists() else None
        return verdicts, round(float(jobs[0] or 0), 3), jobs[1], evals, round_no

    def training(self) -> bool:
        state = self.data_dir / "loop" / "controller.json"
        return state.exists() and json.loads(state.read_text()).get("training_job") is not None


def inject(kind: str, loop: Loop, rng: random.Random, poison_no: int,
           postgres: Postgres | None = None) -> tuple[str, list[str]]:
    """Do one fault; returns what was done and the markers of the poison messages written."""
    if kind == "db" and postgres is not None:
        postgres.stop()
        down = rng.uniform(2, 10)
        time.sleep(down)
        postgres.start()
        return f"db: PostgreSQL stopped at once, started {down:.0f} s later", []
    running = loop.services()
    if kind == "train":
        workers = running.get("jobs-worker", [])
        pool = [child for worker in workers for child in worker.children()] if loop.training() else []
        if pool:
            rng.choice(pool).send_signal(signal.SIGKILL)
            return "train: SIGKILL of the job worker's pool process mid-training", []
        kind = "kill"
    if kind == "broker" and running.get("broker"):
        running["broker"][0].send_signal(signal.SIGKILL)
        return "broker: SIGKILL of the Kafka broker", []
    if kind == "poison":
        markers = []
        topics = sorted({t for group, service in GROUP_SERVICE.items() if service in loop.members
                         for t in CONSUMER_GROUPS[group]})
        for topic in topics:
            marker = f"faults-poison-{poison_no}-{len(markers)}"
            payload = rng.choice([b"{not json " + marker.encode(), b'{"schema_version": 99, "m": "' + marker.encode() + b'"}',
                                  marker.encode() + b"\xff\xfe"])
            subprocess.run(["kcat", "-P", "-b", loop.settings.kafka_bootstrap.split(",")[0], "-t",
                            loop.settings.topic(topic), "-k", marker], input=payload, check=True, timeout=30,
                           capture_output=True)
            markers.append(marker)
        return f"poison: {len(markers)} malformed messages into {', '.join(topics)}", markers
    names = [name for name in SERVICES if running.get(name)]
    name = rng.choice(names)
    rng.choice(running[name]).send_signal(signal.SIGKILL)
    return f"kill: SIGKILL of the {name}", []


def drain_store_writer(settings: Settings, env: dict) -> None:
    writer = subprocess.Popen([sys.executable, "-m", "services.store"], cwd=ROOT, env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    monitor = LagMonitor(settings)
    try:
        deadline = time.monotonic() + 300
        while sum(monitor.lag("store-writer", t) for t in CONSUMER_GROUPS["store-writer"]) and time.monotonic() < deadline:
            time.sleep(2)
        time.sleep(3)
    finally:
        monitor.close()
        writer.send_signal(signal.SIGTERM)
        writer.wait(timeout=60)


def check(loop: Loop, env: dict, markers: list[str]) -> dict:
    settings = loop.settings
    drain_store_writer(settings, env)
    store = audit(settings, loop.store)
    letters = decoded(settings, "loop.dlq")
    raw = [base64.b64decode(letter.raw_b64) + (letter.source_key or "").encode() for letter in letters]
    in_dlq = sum(1 for marker in markers if any(marker.encode() in r for r in raw))
    monitor = LagMonitor(settings)
    try:
        writer_lag = sum(monitor.lag("store-writer", t) for t in CONSUMER_GROUPS["store-writer"])
    finally:
        monitor.close()
    return {**store.as_dict(), "lost": store.lost + store.unreflected_verdicts + store.missing_adapters,
            "writer_lag": writer_lag, "in_dlq": in_dlq, "poisoned": len(markers),
            "bad_promotions": bad_promotions(loop.data_dir)}


def bad_promotions(data_dir: Path) -> int:
    """Promoted adapters that the gate, run again on the recorded scores, would have rejected."""
    policy_path = data_dir / "loop" / "policy.json"
    policy = LoopPolicy.model_validate_json(policy_path.read_text()) if policy_path.exists() else LoopPolicy()
    current, bad = None, 0
    for row in final_rounds(data_dir):
        scores = [EvalScore(family=policy.family, difficulty=int(d), accuracy=a, n=100) for d, a in row["scores"].items()]
        if row["adapter_id"] is None:
            current = scores
            continue
        if row["promoted"]:
            bad += not promotion_gate(current, scores, policy).promote
            current = scores
    return bad


def final_rounds(data_dir: Path) -> list[dict]:
    path = data_dir / "loop" / "rounds.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()] if path.exists() else []


def final_digits(data_dir: Path | None, minutes: float) -> str:
    """Digits mastered by the end of ``minutes`` of the run in ``data_dir`` (a longer baseline is read up to then)."""
    rounds = [r for r in final_rounds(data_dir) if r["minutes"] <= minutes] if data_dir else []
    return str(rounds[-1]["mastered"]) if rounds else "-"


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    print("command: python bench/faults.py " + " ".join(argv if argv is not None else sys.argv[1:]), flush=True)
    if shutil.which("kcat") is None:
        print("faults: needs kcat (apt-get install kcat) to write malformed messages", file=sys.stderr)
        return 2
    rng = random.Random(args.seed)
    data_dir = args.out / f"seed-{args.seed}"
    if data_dir.exists():
        shutil.rmtree(data_dir)
    data_dir.mkdir(parents=True)
    env = {**os.environ, "LOOP_DATA_DIR": str(data_dir), "PYTHONPATH": str(ROOT)}
    if args.model:
        env["LOOP_MODEL_DIR"] = str(args.model.resolve())
    postgres = Postgres(data_dir / "postgres") if args.postgres else None
    if postgres is not None:
        postgres.start()
        env["LOOP_DATABASE_URL"] = postgres.url
    settings = Settings(data_dir=data_dir, database_url=postgres.url if postgres else None)
    log = (data_dir / "up.log").open("w")
    policy = ["--policy", str(args.policy.resolve())] if args.policy else []
    up = subprocess.Popen([sys.executable, "-m", "loop.cli", "up", "--minutes", str(args.minutes), "--api-port", "0",
                           *policy], cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    loop = Loop(data_dir, settings, up)
    while not loop.progress() or loop.progress()[0] == 0:  # the base model's first verdicts: the loop is up
        if up.poll() is not None:
            raise SystemExit(f"loopctl up exited with {up.returncode}; see {data_dir / 'up.log'}")
        time.sleep(2)
    loop.members = set(loop.services())
    started = time.monotonic()
    # no fault in the run's last --recovery-bound seconds: a recovery cut short by the end could not be judged
    end = started + args.minutes * 60 - args.recovery_bound
    weights = {**WEIGHTS, **({"db": 2} if postgres else {})}
    kinds = list(weights)
    counts: Counter = Counter()
    markers: list[str] = []
    recoveries: list[float] = []
    with (data_dir / "faults.jsonl").open("w") as journal:
        while time.monotonic() < end and up.poll() is None:
            time.sleep(min(rng.expovariate(args.faults / (args.minutes * 60)), max(0.0, end - time.monotonic())))
            if time.monotonic() >= end:
                break
            kind = rng.choices(kinds, weights=[weights[k] for k in kinds])[0]
            before = loop.progress()
            while not before:  # the store is busy this instant
                time.sleep(0.2)
                before = loop.progress()
            at = time.monotonic()
            what, written = inject(kind, loop, rng, len(counts), postgres)
            markers += written
            counts[what.split(":")[0]] += 1
            recovered = None
            while time.monotonic() - at < args.recovery_bound * 3 and up.poll() is None:
                time.sleep(1.0)
                now = loop.progress()
                if now and now != before:
                    recovered = time.monotonic() - at
                    break
            recoveries.append(recovered if recovered is not None else float("inf"))
            minute = (at - started) / 60
            print(f"[{minute:5.1f} min] {what}; progress again after "
                  f"{'never' if recovered is None else f'{recovered:.0f} s'}", flush=True)
            journal.write(json.dumps({"minute": round(minute, 2), "fault": what, "recovery_s": recovered}) + "\n")
    up.wait()
    log.close()
    broker = KafkaBroker(data_dir / "kafka")
    broker.start()
    try:
        result = check(loop, env, markers)
    finally:
        broker.stop()
        if postgres is not None:
            postgres.stop()
    total = sum(counts.values())
    longest = max(recoveries, default=0.0)
    print(json.dumps(result | {"faults": dict(counts)}, indent=2))
    print(f"faults: {total} faults in {args.minutes:g} min ({counts['kill'] + counts['train']} kills, "
          f"{counts['broker']} broker restarts, {counts['db']} db restarts), {result['lost']} lost, "
          f"{result['doubled']} doubled, {result['in_dlq']}/{result['poisoned']} malformed in DLQ, longest recovery "
          f"{longest:.0f} s, final {final_digits(data_dir, args.minutes)} vs {final_digits(args.baseline, args.minutes)} digits")
    ok = (result["lost"] == 0 and result["doubled"] == 0 and result["in_dlq"] == result["poisoned"]
          and result["bad_promotions"] == 0 and longest <= args.recovery_bound)
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
