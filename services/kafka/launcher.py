"""Run Apache Kafka (KRaft, combined broker+controller) on the installed JDK, without Docker: one node, or a cluster
of three (``KafkaCluster``).

The jars come from Maven Central through ``pom.xml`` next to this file (resolved once, cached by the pom's hash);
everything the broker writes (its data, its logs, its pid file) stays in the broker's ``data_dir``::

    data_dir/server.properties   written on every start
    data_dir/log4j2.xml          the broker's logging: INFO to logs/server.log, errors also to kafka.out
    data_dir/kraft-log/          the topics and the cluster metadata (formatted once; a restart keeps them)
    data_dir/logs/server.log     the broker's own log, rolled at 10 MB, 3 files kept
    data_dir/kafka.out           the JVM's stdout and stderr
    data_dir/kafka.pid           the running broker's pid, so that another command can stop it

One module, because its parts (the classpath, the ports, the configuration, the JVM's start and stop) are one
broker's life: each decision (a port reused across restarts, a stranger on the port) depends on the others.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import logging
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Collection, Iterator
from pathlib import Path
from xml.sax.saxutils import escape

from services.niceness import with_niceness

POM = Path(__file__).resolve().with_name("pom.xml")
NODE_ID = 1
# Kafka's default maximum record batch (1 MiB plus batch overhead); the loop's messages are far smaller.
MESSAGE_MAX_BYTES = 1_048_588
# For a 2-core laptop: a heap that grows from small (~60 MB less RSS), no GC threads, and C1-only JIT, which halves
# the time to answer here (4 s instead of 8 s) at no cost the loop's message rates notice.
JVM_FLAGS = (
    "-Xms32m",
    "-XX:+UseSerialGC",
    "-XX:TieredStopAtLevel=1",
    "-XX:+ExitOnOutOfMemoryError",
    "-Djava.awt.headless=true",
)

log = logging.getLogger(__name__)


class KafkaStartError(RuntimeError):
    """The broker did not come up; the message carries the tail of its output."""


def default_lib_dir() -> Path:
    """Where the broker's jars are cached: per user, shared by every data directory and test session."""
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return cache / "selfloop" / f"kafka-{_pom_digest()[:12]}" / "lib"


def resolve_classpath(lib_dir: Path) -> str:
    """Copy the broker's jars from Maven Central into ``lib_dir`` (once per pom) and return the classpath."""
    lib_dir = Path(lib_dir).resolve()
    lib_dir.mkdir(parents=True, exist_ok=True)
    marker, digest = lib_dir / ".resolved", _pom_digest()
    with _file_lock(lib_dir / ".lock"):  # two starts racing on a fresh cache resolve once
        if not (marker.exists() and marker.read_text().strip() == digest):
            mvn = shutil.which("mvn")
            if mvn is None:
                raise KafkaStartError("Maven (`mvn`) is needed once to fetch Kafka's jars; install Maven 3.6+")
            for jar in lib_dir.glob("*.jar"):  # jars of a previous pom would shadow the new ones
                jar.unlink()
            log.info("resolving Kafka's jars into %s (once)", lib_dir)
            command = [mvn, "-q", "-B", "-f", str(POM), "dependency:copy-dependencies", f"-DoutputDirectory={lib_dir}"]
            done = subprocess.run(command, cwd=lib_dir, stdin=subprocess.DEVNULL, capture_output=True, text=True)
            if done.returncode != 0:
                raise KafkaStartError(f"`{' '.join(command)}` failed:\n{_tail(done.stdout + done.stderr)}")
            marker.write_text(digest + "\n")
    jars = sorted(lib_dir.glob("*.jar"))
    if not jars:
        raise KafkaStartError(f"no jars in {lib_dir}; delete {marker} to resolve again")
    return os.pathsep.join(str(jar) for jar in jars)


class KafkaBroker:
    """One KRaft node (broker and controller in one JVM) listening on 127.0.0.1.

    ``port=None`` reuses the port of a previous start in ``data_dir`` (so a restarted broker keeps its address)
    or else picks a free one; the same for ``controller_port``.
    """

    def __init__(
        self,
        data_dir: Path,
        port: int | None = None,
        controller_port: int | None = None,
        heap: str = "512m",
        *,
        lib_dir: Path | None = None,
        nice: int = 0,
        node_id: int = NODE_ID,
        voters: dict[int, int] | None = None,
        cluster_id: str | None = None,
        replicas: int = 1,
    ) -> None:
        """``nice``: run the JVM at that niceness (a loop on a small machine lets its training jobs go first).
        A node of a cluster (``KafkaCluster``) also gets its ``node_id``, the controller port of every voter, the
        cluster's id and how many replicas the cluster keeps of each partition."""
        self.data_dir = Path(data_dir).expanduser().resolve()
        self.heap = heap
        self.nice = nice
        self.node_id = node_id
        self.voters = voters
        self.cluster_id = cluster_id
        self.replicas = replicas
        self.lib_dir = lib_dir or default_lib_dir()
        self._fixed_ports = {p for p in (port, controller_port) if p is not None}
        previous = _read_ports(self.properties_path) or (None, None)
        free = iter(_free_ports(2, avoid=self._fixed_ports))
        self.port: int = port or previous[0] or next(free)
        self.controller_port: int = controller_port or previous[1] or next(free)
        self._process: subprocess.Popen | None = None

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def properties_path(self) -> Path:
        return self.data_dir / "server.properties"

    @property
    def log_dir(self) -> Path:
        return self.data_dir / "kraft-log"

    @property
    def pid_path(self) -> Path:
        return self.data_dir / "kafka.pid"

    @property
    def output_path(self) -> Path:
        return self.data_dir / "kafka.out"

    @property
    def pid(self) -> int | None:
        """The running broker's pid (started by this object or found through ``kafka.pid``), else None."""
        if self._process is not None:
            return self._process.pid if self._process.poll() is None else None
        try:
            pid = int(self.pid_path.read_text().strip())
        except (FileNotFoundError, ValueError):
            return None
        return pid if _is_broker_process(pid, self.properties_path) else None

    def is_running(self) -> bool:
        return self.pid is not None

    def answers(self, timeout: float = 5.0) -> bool:
        """Whether the broker answers a metadata request (a TCP probe first, so a dead port costs no client)."""
        try:
            socket.create_connection(("127.0.0.1", self.port), timeout=timeout).close()
        except OSError:
            return False
        from kafka import KafkaAdminClient  # deferred: importing the client costs ~0.3 s

        try:
            admin = KafkaAdminClient(
                bootstrap_servers=self.bootstrap,
                client_id="selfloop-launcher",
                request_timeout_ms=int(timeout * 1000),
                bootstrap_timeout_ms=int(timeout * 1000),
            )
        except Exception:  # noqa: BLE001 - any failure means "not yet"
            return False
        try:
            admin.list_topics()
            return True
        except Exception:  # noqa: BLE001
            return False
        finally:
            admin.close()

    def start(self, timeout: float = 90, *, detach: bool = False) -> "KafkaBroker":
        """Format the log directory if new, launch the JVM and return once the broker answers.

        ``timeout`` bounds the wait for the broker to answer (not the one-off Maven resolution). A broker started
        with ``detach=False`` is tied to this process: it gets Ctrl-C with it, and on Linux SIGTERM when the thread
        that called ``start`` ends, so a crashed test session leaves no JVM behind. ``detach=True`` starts it in a
        session of its own, so it outlives the command that started it.
        """
        for attempt in range(3):
            self.launch(detach=detach)
            try:
                self.wait_until_answering(timeout)
                return self
            except KafkaStartError as error:
                # A port seen free can be taken before the JVM binds it; then look again.
                if attempt == 2 or "Address already in use" not in str(error):
                    raise
        raise AssertionError("unreachable")

    def launch(self, *, detach: bool = False) -> None:
        """Write the configuration, format the log directory if new, and start the JVM, without waiting for it (a
        cluster launches every node before any can answer: each waits for a majority of the quorum)."""
        if self.is_running():
            raise KafkaStartError(f"a broker is already running from {self.data_dir} (pid {self.pid})")
        self.data_dir.mkdir(parents=True, exist_ok=True)
        classpath = resolve_classpath(self.lib_dir)
        self._move_off_busy_ports()
        self._write_config()
        if not (self.log_dir / "meta.properties").exists():
            self._format(classpath)
        self._launch(classpath, detach)

    def stop(self, timeout: float = 30) -> None:
        """Shut the broker down cleanly (SIGTERM); SIGKILL it if it is still running after ``timeout`` seconds."""
        pid = self.pid
        if pid is not None:
            log.info("stopping Kafka broker pid %s", pid)
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
            if not self._wait_for_exit(pid, timeout):
                log.warning("Kafka broker pid %s did not stop within %ss; killing it", pid, timeout)
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
                self._wait_for_exit(pid, 10)
        self._process = None
        self.pid_path.unlink(missing_ok=True)

    def __enter__(self) -> "KafkaBroker":
        if not self.is_running():
            self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def __repr__(self) -> str:
        return f"KafkaBroker({str(self.data_dir)!r}, bootstrap={self.bootstrap!r}, pid={self.pid})"

    # -- internals -----------------------------------------------------------------------------------------

    def _move_off_busy_ports(self) -> None:
        """Fail on a busy port the caller asked for; replace a busy port that was picked or reused."""
        busy = [port for port in (self.port, self.controller_port) if not _port_is_free(port)]
        if requested := [port for port in busy if port in self._fixed_ports]:
            raise KafkaStartError(f"127.0.0.1:{requested[0]} is already in use; is a broker running there?")
        if busy:
            fresh = iter(_free_ports(2, avoid=self._fixed_ports))
            self.port = next(fresh) if self.port in busy else self.port
            self.controller_port = next(fresh) if self.controller_port in busy else self.controller_port
            log.warning("port %s was in use; the broker moves to %s", busy[0], self.bootstrap)

    def _java_command(self, classpath: str, main: str, *args: str, heap: str | None = None) -> list[str]:
        return [
            _java(),
            f"-Xmx{heap or self.heap}",
            *JVM_FLAGS,
            f"-Dlog4j2.configurationFile={self.data_dir / 'log4j2.xml'}",
            "-cp",
            classpath,
            main,
            *args,
        ]

    def _format(self, classpath: str) -> None:
        cluster_id = self.cluster_id or _new_cluster_id()
        command = self._java_command(
            classpath, "kafka.tools.StorageTool", "format", "--cluster-id", cluster_id,
            "--config", str(self.properties_path), "--ignore-formatted", heap="128m",
        )  # fmt: skip
        done = subprocess.run(command, stdin=subprocess.DEVNULL, capture_output=True, text=True)
        if done.returncode != 0:
            raise KafkaStartError(f"formatting {self.log_dir} failed:\n{_tail(done.stdout + done.stderr)}")
        log.info("formatted %s for cluster %s", self.log_dir, cluster_id)

    @property
    def process(self) -> subprocess.Popen | None:
        """The broker's process, when this object started it."""
        return self._process

    def remember_pid(self, process: subprocess.Popen) -> None:
        """Record a process that runs this broker, started by someone else (a supervisor's restart)."""
        self.pid_path.write_text(f"{process.pid}\n")

    def command(self) -> list[str]:
        """The command that runs this broker on its formatted log directory, as ``start`` launched it (for a
        supervisor that restarts it; run it in ``data_dir``)."""
        return with_niceness(self._java_command(resolve_classpath(self.lib_dir), "kafka.Kafka",
                                                str(self.properties_path)), self.nice)

    def _launch(self, classpath: str, detach: bool) -> None:
        command = with_niceness(self._java_command(classpath, "kafka.Kafka", str(self.properties_path)), self.nice)
        with open(self.output_path, "wb") as output:
            self._process = subprocess.Popen(
                command,
                cwd=self.data_dir,
                stdin=subprocess.DEVNULL,
                stdout=output,
                stderr=subprocess.STDOUT,
                start_new_session=detach,
                preexec_fn=None if detach else _die_with_parent,
            )
        self.pid_path.write_text(f"{self._process.pid}\n")
        log.info("started Kafka broker pid %s at %s (logs in %s)", self._process.pid, self.bootstrap, self.data_dir)

    def wait_until_answering(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        process = self._process
        assert process is not None
        while True:
            if process.poll() is not None:
                self._process = None
                self.pid_path.unlink(missing_ok=True)
                raise KafkaStartError(self._failure(f"exited with status {process.returncode} while starting"))
            if self.answers(timeout=2.0) and process.poll() is None:  # ours answered, not a stranger on the port
                return
            if time.monotonic() > deadline:
                self.stop()
                raise KafkaStartError(self._failure(f"did not answer at {self.bootstrap} within {timeout}s"))
            time.sleep(0.2)

    def _failure(self, what: str) -> str:
        output = self.output_path.read_text(errors="replace") if self.output_path.exists() else ""
        # Stack frames bury the cause: keep the log lines and their "Caused by:" lines.
        summary = "\n".join(line for line in output.splitlines() if not re.match(r"\s+(at |\.\.\. \d+ more)", line))
        return f"Kafka broker in {self.data_dir} {what}; see {self.data_dir / 'logs' / 'server.log'}\n{_tail(summary)}"

    def _wait_for_exit(self, pid: int, timeout: float) -> bool:
        if self._process is not None and self._process.pid == pid:
            try:
                self._process.wait(timeout)
                return True
            except subprocess.TimeoutExpired:
                return False
        deadline = time.monotonic() + timeout
        while _is_broker_process(pid, self.properties_path):  # not our child: poll until it is gone
            if time.monotonic() > deadline:
                return False
            time.sleep(0.1)
        return True

    def _write_config(self) -> None:
        (self.data_dir / "logs").mkdir(exist_ok=True)
        voters = self.voters or {self.node_id: self.controller_port}
        min_isr = 2 if self.replicas >= 3 else 1  # acks=all then survives one node down, and never acks on one copy
        properties = {
            "node.id": self.node_id,
            "process.roles": "broker,controller",
            "listeners": f"PLAINTEXT://127.0.0.1:{self.port},CONTROLLER://127.0.0.1:{self.controller_port}",
            "advertised.listeners": f"PLAINTEXT://127.0.0.1:{self.port}",
            "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
            "inter.broker.listener.name": "PLAINTEXT",
            "controller.listener.names": "CONTROLLER",
            # A static quorum: the controller's address may change between restarts without reformatting.
            "controller.quorum.voters": ",".join(f"{node}@127.0.0.1:{port}" for node, port in sorted(voters.items())),
            "log.dirs": str(self.log_dir),
            "num.partitions": 1,
            "default.replication.factor": self.replicas,
            "min.insync.replicas": min_isr,
            "offsets.topic.replication.factor": self.replicas,
            "offsets.topic.num.partitions": 10,  # 50 by default: slow to create on two cores, no use on one node
            "transaction.state.log.replication.factor": self.replicas,
            "transaction.state.log.min.isr": min_isr,
            "transaction.state.log.num.partitions": 10,
            "share.coordinator.state.topic.replication.factor": self.replicas,
            "share.coordinator.state.topic.min.isr": min_isr,
            "group.initial.rebalance.delay.ms": 0,
            "auto.create.topics.enable": "false",  # topics are created on purpose, with their settings
            "message.max.bytes": MESSAGE_MAX_BYTES,
            "num.network.threads": 2,
            "num.io.threads": 4,
        }
        lines = ["# Written by services/kafka/launcher.py on every start; edits are overwritten."]
        lines += [f"{key}={_escape_property(str(value))}" for key, value in properties.items()]
        self.properties_path.write_text("\n".join(lines) + "\n")
        logs = escape(str(self.data_dir / "logs"), {'"': "&quot;"})
        (self.data_dir / "log4j2.xml").write_text(LOG4J2_XML.format(logs=logs))



class KafkaCluster:
    """``nodes`` KRaft nodes on 127.0.0.1, each a broker and a voter of the controller quorum, in
    ``data_dir/node-<id>``: one cluster id, every node's controller port in every node's static quorum, and each
    partition kept on min(3, nodes) of them (``min.insync.replicas`` 2 with three: a write acknowledged by all
    in-sync replicas survives the loss of any one node).

    Client ports are ``port``, ``port + 1``, ... (``port=None``: those of a previous start, else free ones); the
    controller ports and the cluster id are kept from the first start, so a restarted node rejoins as itself.
    """

    def __init__(self, data_dir: Path, nodes: int = 3, port: int | None = None, heap: str = "512m", *,
                 lib_dir: Path | None = None, nice: int = 0) -> None:
        if nodes < 1:
            raise ValueError("a cluster has at least one node")
        self.data_dir = Path(data_dir).expanduser().resolve()
        self.data_dir.mkdir(parents=True, exist_ok=True)
        dirs = [self.data_dir / f"node-{node}" for node in range(1, nodes + 1)]
        previous = [p for p in (_read_ports(d / "server.properties") for d in dirs) if p is not None]
        if len(previous) == nodes and (port is None or previous[0][0] == port):
            ports = previous
        else:
            free = iter(_free_ports(2 * nodes, avoid=range(port, port + nodes) if port else ()))
            clients = [port + i for i in range(nodes)] if port else [next(free) for _ in range(nodes)]
            ports = [(client, next(free)) for client in clients]
        id_path = self.data_dir / "cluster.id"
        if not id_path.exists():
            id_path.write_text(_new_cluster_id() + "\n")
        cluster_id = id_path.read_text().strip()
        voters = {node: controller for node, (_, controller) in enumerate(ports, start=1)}
        self.nodes = [
            KafkaBroker(d, port=client, controller_port=controller, heap=heap, lib_dir=lib_dir, nice=nice,
                        node_id=node, voters=voters, cluster_id=cluster_id, replicas=min(3, nodes))
            for node, (d, (client, controller)) in enumerate(zip(dirs, ports, strict=True), start=1)
        ]

    @property
    def bootstrap(self) -> str:
        """Every node's address, so a client starts even while one node is down."""
        return ",".join(node.bootstrap for node in self.nodes)

    def start(self, timeout: float = 120, *, detach: bool = False) -> "KafkaCluster":
        """Launch every node that is not running, then return once each answers."""
        for node in self.nodes:
            if not node.is_running():
                node.launch(detach=detach)
        deadline = time.monotonic() + timeout
        for node in self.nodes:
            if node.process is not None:
                node.wait_until_answering(max(1.0, deadline - time.monotonic()))
        return self

    def stop(self, timeout: float = 30) -> None:
        for node in reversed(self.nodes):
            node.stop(timeout)

    def is_running(self) -> bool:
        return any(node.is_running() for node in self.nodes)

    def __repr__(self) -> str:
        return f"KafkaCluster({str(self.data_dir)!r}, bootstrap={self.bootstrap!r})"


def cluster_size(data_dir: Path) -> int:
    """How many nodes the cluster in ``data_dir`` was started with (0: none was)."""
    return len(list(Path(data_dir).glob("node-*/server.properties")))

# Kafka's shutdown messages must reach the file, so log4j2's own shutdown hook (which runs first) is off.
LOG4J2_XML = """<?xml version="1.0" encoding="UTF-8"?>
<!-- Written by services/kafka/launcher.py on every start; edits are overwritten. -->
<Configuration status="warn" shutdownHook="disable">
  <Appenders>
    <RollingFile name="server" fileName="{logs}/server.log" filePattern="{logs}/server.log.%i">
      <PatternLayout pattern="[%d] %p %m (%c)%n"/>
      <SizeBasedTriggeringPolicy size="10MB"/>
      <DefaultRolloverStrategy max="3"/>
    </RollingFile>
    <Console name="errors" target="SYSTEM_ERR">
      <ThresholdFilter level="ERROR"/>
      <PatternLayout pattern="[%d] %p %m (%c)%n"/>
    </Console>
  </Appenders>
  <Loggers>
    <Root level="INFO"><AppenderRef ref="server"/><AppenderRef ref="errors"/></Root>
    <Logger name="kafka.request.logger" level="WARN"/>
    <Logger name="state.change.logger" level="WARN"/>
  </Loggers>
</Configuration>
"""


def _pom_digest() -> str:
    return hashlib.sha256(POM.read_bytes()).hexdigest()


@contextlib.contextmanager
def _file_lock(path: Path) -> Iterator[None]:
    import fcntl

    with open(path, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _java() -> str:
    home = os.environ.get("JAVA_HOME")
    java = str(Path(home) / "bin" / "java") if home else shutil.which("java")
    if not java or not Path(java).exists():
        raise KafkaStartError("Java 17+ is needed to run Kafka; install a JDK or set JAVA_HOME")
    return java


def _free_ports(count: int, avoid: Collection[int] = ()) -> list[int]:
    """Ports the OS reports free right now (held open together, so they differ from each other)."""
    sockets: list[socket.socket] = []
    try:
        while len(sockets) < count:
            sock = socket.socket()
            sock.bind(("127.0.0.1", 0))
            if sock.getsockname()[1] in avoid:
                sock.close()
                continue
            sockets.append(sock)
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


def _port_is_free(port: int) -> bool:
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the JVM binds: TIME_WAIT does not count
        try:
            sock.bind(("127.0.0.1", port))
            return True
        except OSError:
            return False


def _read_ports(properties: Path) -> tuple[int, int] | None:
    """The broker and controller ports of a previous start, from its server.properties."""
    try:
        text = properties.read_text()
    except FileNotFoundError:
        return None
    broker = re.search(r"PLAINTEXT://[^:,]+:(\d+)", text)
    controller = re.search(r"CONTROLLER://[^:,]+:(\d+)", text)
    return (int(broker[1]), int(controller[1])) if broker and controller else None


def _is_broker_process(pid: int, properties: Path) -> bool:
    """Whether ``pid`` is alive and is the broker started from ``properties`` (a recycled pid is not)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    try:
        command = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        if Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z":
            return False  # exited, waiting to be reaped by its parent
    except FileNotFoundError:
        if sys.platform.startswith("linux"):
            return False
        ps = subprocess.run(["ps", "-p", str(pid), "-o", "command="], capture_output=True, text=True)
        command = ps.stdout
    return "kafka.Kafka" in command and str(properties) in command


if sys.platform.startswith("linux"):
    import ctypes

    # Looked up here, not in the forked child, where loading a library could deadlock on a lock another thread held.
    _prctl = ctypes.CDLL(None, use_errno=True).prctl
else:
    _prctl = None


def _die_with_parent() -> None:
    """In the child before exec: ask Linux to SIGTERM the broker when the thread that started it ends."""
    if _prctl is not None:
        PR_SET_PDEATHSIG = 1
        _prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


def _new_cluster_id() -> str:
    """A KRaft cluster id as Kafka writes them: 16 random bytes, URL-safe base64, no padding, no leading '-'."""
    while True:
        cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not cluster_id.startswith("-"):
            return cluster_id


def _escape_property(value: str) -> str:
    return value.replace("\\", "\\\\")


def _tail(text: str, lines: int = 40) -> str:
    return "\n".join(text.strip().splitlines()[-lines:])
