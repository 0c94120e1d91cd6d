"""`loopctl up`: the whole loop on one machine, as supervised processes, with live progress.

Starts the project's Kafka broker, creates the topics, makes sure the base model exists (the builtin
model is trained on first start, with a progress bar, then cached), then starts the store writer,
a Celery worker, a generator, a verifier, the controller and the API as child processes. Ctrl-C or
SIGTERM stops them in reverse order, each finishing and committing its batch. The controller keeps
its state in the data directory, so running `loopctl up` again resumes the round where it stopped.
"""

from __future__ import annotations

import contextlib
import importlib.util
import logging
import secrets
import signal
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

from loop.policy import LoopPolicy
from services.bus.lag import LagMonitor
from loop.status import controller_state, plot_rounds, read_rounds, read_status, rounds_table
from loop.supervisor import RestartLimit, Supervisor
from services.settings import get_settings
from tasks import FamilyError, get_family

log = logging.getLogger(__name__)


# Every service but the job worker runs this much nicer: on a small machine an adapter's training step waits for its
# slowest thread, and a light service that wakes up mid-step would otherwise take a core from one of them. While no
# job runs, nothing competes and the niceness costs nothing.
YIELD_TO_JOBS = 10


def add_loop_services(supervisor: Supervisor, policy: LoopPolicy, policy_file: Path, *,
                      limit: RestartLimit | None = None) -> None:
    """The loop's workers, in start order: the one list ``loopctl up`` and ``bench/loop_vs_offline.py`` run."""
    def add(name: str, module_args: list[str], nice: int = YIELD_TO_JOBS) -> None:
        supervisor.add(name, module_args, limit=limit, nice=nice)

    add("store-writer", ["services.store"])
    add("jobs-worker", ["services.jobs", "worker", "--queues", "train,eval,default"], nice=0)
    add("verifier", ["workers.verifier", "--agreement", str(policy.agreement), "--policy", str(policy_file)])
    add("generator", ["workers.generator", "--policy", str(policy_file)])
    if get_family(policy.family, **policy.family_options).verifier == "retrieval":
        add("index-updater", ["workers.verifier.index_updater"])  # the FAISS memory of accepted samples
    add("controller", ["loop.controller", "--policy", str(policy_file)])


class LiveStatus(threading.Thread):
    """The live status line, read in the background every ``every_s``: reading lags asks the broker, and a broker that
    is down (or restarting) must slow the line, never the loop that supervises the services and the broker itself."""

    def __init__(self, read: Callable[[LagMonitor], str], connect: Callable[[], LagMonitor], every_s: float = 10.0) -> None:
        super().__init__(name="live-status", daemon=True)
        self.read, self.connect, self.every_s = read, connect, every_s
        self._line, self._at = "starting", time.monotonic()
        self._closing = threading.Event()
        self._monitor: LagMonitor | None = None

    def run(self) -> None:
        while not self._closing.is_set():
            try:
                self._monitor = self._monitor or self.connect()
                self._line, self._at = self.read(self._monitor), time.monotonic()
            except Exception as exc:  # noqa: BLE001 - the broker is away: say so and ask again later
                self._line = f"status unavailable: {type(exc).__name__}: {exc}"
                self._at = time.monotonic()
                self._forget()
            self._closing.wait(self.every_s)
        self._forget()

    def line(self) -> str:
        """The latest line, with its age when a read is overdue (a read waiting on the broker)."""
        age = time.monotonic() - self._at
        return self._line if age < 2 * self.every_s else f"{self._line} (as of {age:.0f} s ago)"

    def close(self) -> None:
        self._closing.set()

    def _forget(self) -> None:
        if self._monitor is not None:
            with contextlib.suppress(Exception):
                self._monitor.close()
        self._monitor = None


def embedded_token(loop_dir: Path) -> str:
    """The API token of the embedded default when the environment sets none: generated once, kept (owner-only) in the
    data directory, so a restarted loop keeps the token a browser already holds."""
    path = loop_dir / "api-token"
    if path.exists():
        return path.read_text().strip()
    token = secrets.token_urlsafe(24)
    path.touch(mode=0o600)
    path.write_text(token + "\n")
    return token


def load_policy(policy_path: str | None, target: int | None) -> LoopPolicy:
    policy = LoopPolicy.model_validate_json(Path(policy_path).read_text()) if policy_path else LoopPolicy()
    if target is not None:
        policy = policy.model_copy(update={"target_difficulty": target})
    return policy


def run_up(*, minutes: float | None, rounds: int | None, target: int | None, policy_path: str | None,
           api_port: int = 8000) -> int:
    from services.bus import create_topics
    from services.kafka.launcher import KafkaBroker, KafkaCluster
    from services.store.db import open_store
    from workers.model.resolve import base_model_dir

    settings = get_settings()
    stopping = False

    def request_stop(*_: object) -> None:
        nonlocal stopping
        stopping = True

    loop_dir = settings.data_dir / "loop"
    loop_dir.mkdir(parents=True, exist_ok=True)
    policy = load_policy(policy_path, target)
    try:  # a family that cannot be built stops everything before anything starts
        family = get_family(policy.family, **policy.family_options)
    except FamilyError as exc:
        print(f"loopctl: cannot run the policy's task family: {exc}", file=sys.stderr)
        return 2
    for note in family.load_report():
        print(f"loopctl: {policy.family}: {note}")
    policy_file = loop_dir / "policy.json"
    policy_file.write_text(policy.model_dump_json(indent=2))
    print(f"loopctl: data directory {settings.data_dir}")
    model_dir = base_model_dir(settings)  # trains the builtin model on first start; Ctrl-C there just exits
    print(f"loopctl: base model {model_dir}")
    signal.signal(signal.SIGTERM, request_stop)  # from here on, a stop is orderly: every service finishes its batch
    signal.signal(signal.SIGINT, request_stop)

    port = int(settings.kafka_bootstrap.split(",")[0].rpartition(":")[2])
    kafka_dir = settings.data_dir / "kafka"
    if settings.kafka_nodes > 1:
        cluster = KafkaCluster(kafka_dir, settings.kafka_nodes, port=port, nice=YIELD_TO_JOBS)
        brokers, stop_kafka = cluster.nodes, cluster.stop
        cluster.start()
        settings = settings.model_copy(update={"kafka_bootstrap": cluster.bootstrap})
    else:
        broker = KafkaBroker(kafka_dir, port=port, nice=YIELD_TO_JOBS)
        brokers, stop_kafka = [broker], broker.stop
        broker.start()
    print(f"loopctl: Kafka answering at {settings.kafka_bootstrap}")
    token = settings.api_token or embedded_token(loop_dir)
    supervisor = Supervisor(settings.data_dir / "logs",
                            env={"LOOP_API_TOKEN": token, "LOOP_KAFKA_BOOTSTRAP": settings.kafka_bootstrap})
    # The brokers are supervised like every service: restarted where they stopped (port and log directory kept).
    for broker in brokers:
        assert broker.process is not None  # started above
        supervisor.adopt(f"kafka-{broker.node_id}" if len(brokers) > 1 else "kafka", broker.process, broker.command(),
                         log_path=broker.output_path, cwd=broker.data_dir, on_start=broker.remember_pid)
    engine = open_store(settings)
    live = None
    started = time.monotonic()
    first_round = controller_state(settings).get("round", 1)
    try:
        create_topics(settings)
        add_loop_services(supervisor, policy, policy_file)
        if api_port and importlib.util.find_spec("services.api.__main__") is not None:
            supervisor.add("api", ["services.api", "--port", str(api_port)], nice=YIELD_TO_JOBS)
            print(f"loopctl: dashboard and API at http://127.0.0.1:{api_port}/#token={token}")
        supervisor.start()
        print(f"loopctl: services started; logs in {supervisor.log_dir}; Ctrl-C stops everything")
        live = LiveStatus(lambda monitor: read_status(settings, engine, monitor).line(), lambda: LagMonitor(settings))
        live.start()
        deadline = started + minutes * 60 if minutes else None
        last_line = 0.0
        reported: list[str] = []
        while not stopping and (deadline is None or time.monotonic() < deadline):
            held = supervisor.check()
            if held and held != reported:
                print(f"loopctl: {', '.join(held)} kept crashing, held back before the next try; see "
                      f"{supervisor.log_dir}", file=sys.stderr)
            reported = held
            if rounds is not None and controller_state(settings).get("round", 1) - first_round >= rounds:
                print(f"loopctl: {rounds} rounds done")
                break
            if time.monotonic() - last_line >= 10:
                last_line = time.monotonic()
                elapsed = (time.monotonic() - started) / 60
                suffix = f" | held back: {', '.join(held)}" if held else ""
                print(f"[{elapsed:5.1f} min] {live.line()}{suffix}", flush=True)
            time.sleep(1.0)
        return 0
    finally:
        print("loopctl: stopping")
        if live is not None:
            live.close()
        supervisor.stop()
        stop_kafka()
        history = read_rounds(settings)
        if history:
            print(rounds_table(history))
            print(f"loopctl: plot {plot_rounds(history, loop_dir / 'heldout_accuracy.png')}")
