"""The same rounds through the services and through the offline loop, in one run.

    python bench/loop_vs_offline.py                     # builtin model, 4 rounds each, the recipe's settings
    python bench/loop_vs_offline.py --rounds 2 --problems 1000 --steps 300

The services run as separate processes on a Kafka broker this script starts (store writer, Celery
worker, generator, verifier, controller); the controller trains once every candidate of a round is
verified, with the same LoRA settings, problems per round and sampling as the offline loop. The
peak resident memory of the whole stack (every process, the Kafka JVM included) is sampled every
second and reported per round, to show whether it grows. Ends with one line:
    loop: <T_services> min vs <T_offline> min offline (<ratio>x), final <F_services> vs <F_offline> digits
"""

from __future__ import annotations

import argparse
import os
import shlex
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import psutil  # noqa: E402

from tasks import get_family  # noqa: E402
from bench.offline import OfflineConfig, run_offline  # noqa: E402
from loop.policy import RECIPE_LORA, RECIPE_PROBLEMS, LoopPolicy  # noqa: E402
from loop.status import controller_state, read_rounds  # noqa: E402
from loop.supervisor import NEVER_RESTART, Supervisor  # noqa: E402
from loop.up import YIELD_TO_JOBS, add_loop_services  # noqa: E402
from services.bus import create_topics  # noqa: E402
from services.kafka.launcher import KafkaBroker  # noqa: E402
from services.settings import Settings, get_settings  # noqa: E402
from workers.generator import SamplingSpec  # noqa: E402
from workers.model.builtin import labelled_options  # noqa: E402
from workers.model.resolve import ensure_builtin  # noqa: E402
from workers.trainer import LoraTrainingConfig  # noqa: E402


class MemorySampler(threading.Thread):
    """Peak RSS of a set of named process trees, sampled every ``interval`` seconds in one pass over the process
    table; the peak is also kept per round, and the CPU seconds each tree has used so far (where the cores went)."""

    def __init__(self, roots: dict[str, int], round_of, interval: float = 2.0) -> None:
        super().__init__(daemon=True)
        self.interval = interval
        self.roots, self.round_of = roots, round_of
        self.cpu: dict[str, dict[int, float]] = {name: {} for name in roots}  # name -> pid -> CPU seconds
        self.peak = 0
        self.per_round: dict[int, int] = {}
        self.samples: list[tuple[float, int, int]] = []  # (seconds since start, round, bytes)
        self._stopping = threading.Event()
        self.started = time.monotonic()

    def run(self) -> None:
        while not self._stopping.wait(self.interval):
            children: dict[int, list[int]] = {}
            usage: dict[int, tuple[int, float]] = {}  # pid -> (RSS bytes, CPU seconds)
            for process in psutil.process_iter(["ppid", "memory_info", "cpu_times"]):  # one pass over /proc
                children.setdefault(process.info["ppid"], []).append(process.pid)
                memory, cpu = process.info["memory_info"], process.info["cpu_times"]
                if memory is not None and cpu is not None:
                    usage[process.pid] = (memory.rss, cpu.user + cpu.system)
            total = 0
            for name, root in self.roots.items():
                tree = [root]
                while tree:
                    pid = tree.pop()
                    tree.extend(children.get(pid, ()))
                    if pid in usage:
                        total += usage[pid][0]
                        self.cpu[name][pid] = usage[pid][1]
            self.peak = max(self.peak, total)
            number = self.round_of()
            self.samples.append((time.monotonic() - self.started, number, total))
            self.per_round[number] = max(self.per_round.get(number, 0), total)

    def stop(self) -> None:
        self._stopping.set()

    def cpu_seconds(self) -> dict[str, float]:
        return {name: sum(per_pid.values()) for name, per_pid in self.cpu.items()}


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, default=None)
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--problems", type=int, default=RECIPE_PROBLEMS)
    parser.add_argument("--k", type=int, default=6)
    parser.add_argument("--temperature", type=float, default=1.0)
    parser.add_argument("--agreement", type=float, default=1.0)
    parser.add_argument("--steps", type=int, default=RECIPE_LORA["steps"])
    parser.add_argument("--rank", type=int, default=16)
    parser.add_argument("--lr", type=float, default=2e-3)
    parser.add_argument("--replay-share", type=float, default=RECIPE_LORA["replay_share"])
    parser.add_argument("--timeout-min", type=float, default=120)
    return parser.parse_args(argv)


def run_services(args, model_dir: Path, options: dict, lora: LoraTrainingConfig, work: Path) -> tuple[float, int, dict]:
    broker = KafkaBroker(work / "kafka", nice=YIELD_TO_JOBS)
    broker.start()
    settings = Settings(data_dir=work / "services", kafka_bootstrap=broker.bootstrap, model_dir=model_dir)
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    create_topics(settings)
    policy = LoopPolicy(
        problems_per_round=args.problems, request_size=min(250, args.problems), retrain_after_verified=args.problems,
        k=args.k, temperature=args.temperature, agreement=args.agreement, eval_margin=2,
        jump_to_solved=True,  # the offline loop's curriculum: one past whatever is mastered
        base_eval_up_to=get_family("arithmetic", **options).easy_digits + 2, family_options=options,
        lora=lora.model_dump(),
    )
    policy_file = settings.data_dir / "policy.json"
    policy_file.write_text(policy.model_dump_json())
    supervisor = Supervisor(settings.data_dir / "logs", env={
        "LOOP_DATA_DIR": str(settings.data_dir), "LOOP_KAFKA_BOOTSTRAP": broker.bootstrap,
        "LOOP_MODEL_DIR": str(model_dir), "PYTHONPATH": str(REPO)})
    add_loop_services(supervisor, policy, policy_file, limit=NEVER_RESTART)  # what loopctl up runs, none restarted
    supervisor.start()
    processes = {service.name: service.process for service in supervisor.services}
    sampler = MemorySampler({"kafka": broker.pid, **{name: p.pid for name, p in processes.items()}},
                            lambda: controller_state(settings).get("round", 1))
    sampler.start()
    started = time.monotonic()
    bench_cpu = psutil.Process().cpu_times()
    try:
        while controller_state(settings).get("round", 1) <= args.rounds:
            failed = supervisor.check()
            if failed:
                raise RuntimeError(f"{', '.join(failed)} exited; see {supervisor.log_dir}")
            if time.monotonic() - started > args.timeout_min * 60:
                raise TimeoutError(f"services did not finish {args.rounds} rounds in {args.timeout_min} min")
            time.sleep(1.0)
        minutes = (time.monotonic() - started) / 60
    finally:
        sampler.stop()
        now = psutil.Process().cpu_times()
        bench_seconds = now.user + now.system - bench_cpu.user - bench_cpu.system
        supervisor.stop()
        broker.stop()
        sampler.join(timeout=5)
    rounds = read_rounds(settings)
    final = max((r["mastered"] for r in rounds), default=0)
    for r in rounds:
        print(f"  services round {r['round']}: target {r['target']} accepted {r['accepted']} mastered {r['mastered']} "
              f"{'promoted' if r['promoted'] else 'rejected'} at {r['minutes']:.1f} min")
    return minutes, final, {"peak": sampler.peak, "per_round": sampler.per_round, "samples": sampler.samples,
                            "cpu": {**sampler.cpu_seconds(), "this script (sampling, polling)": bench_seconds}}


def plot_memory(samples: list[tuple[float, int, int]], path: Path) -> None:
    """Resident memory of the whole stack over time, one colour per round: flat is what it should be."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 4))
    for number in sorted({r for _, r, _ in samples}):
        points = [(t / 60, b / 1024**3) for t, r, b in samples if r == number]
        ax.plot([p[0] for p in points], [p[1] for p in points], label=f"round {number}")
    ax.axhline(6.0, color="grey", linestyle="--", linewidth=0.8)
    ax.set_xlabel("minutes")
    ax.set_ylabel("GiB, every process (Kafka JVM included)")
    ax.set_ylim(0, 6.5)
    ax.set_title("resident memory of the embedded stack")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv: list[str] | None = None) -> str:
    args = parse_args(argv)
    print("command: python " + shlex.join(["bench/loop_vs_offline.py", *(sys.argv[1:] if argv is None else argv)]))
    settings = get_settings()
    model_dir = args.model or ensure_builtin(settings.builtin_model_dir)
    options = labelled_options(model_dir)
    family = get_family("arithmetic", **options)
    easy = family.easy_digits
    lora = LoraTrainingConfig(rank=args.rank, alpha=2 * args.rank, steps=args.steps, lr=args.lr,
                              replay_share=args.replay_share, batch_size=RECIPE_LORA["batch_size"])
    work = Path(tempfile.mkdtemp(prefix="loop-vs-offline-"))
    print(f"model {model_dir}, easy range 1-{easy}, {args.rounds} rounds of {args.problems} problems, work dir {work}")

    started, cpu_before = time.monotonic(), psutil.Process().cpu_times()
    offline = run_offline(
        base_model=model_dir, family=family, out_dir=work / "offline",
        config=OfflineConfig(rounds=args.rounds, minutes=args.timeout_min, problems_per_round=args.problems,
                             sampling=SamplingSpec(k=args.k, temperature=args.temperature), agreement=args.agreement,
                             lora=lora, gate=LoopPolicy()),
        on_round=lambda r: print(f"  offline round {r.round}: target {r.difficulty} kept {r.kept} mastered {r.mastered} "
                                 f"(min: {r.minutes})", flush=True),
    )
    t_offline = (time.monotonic() - started) / 60
    cpu_after = psutil.Process().cpu_times()
    offline_cpu = cpu_after.user + cpu_after.system - cpu_before.user - cpu_before.system
    print(f"offline: {offline_cpu:.0f} cpu seconds in {t_offline * 60:.0f} s wall")
    f_offline = max(r.mastered for r in offline)

    t_services, f_services, memory = run_services(args, model_dir, options, lora, work)
    gib = 1024**3
    per_round = ", ".join(f"round {k}: {v / gib:.2f}" for k, v in sorted(memory["per_round"].items()))
    print(f"memory: peak {memory['peak'] / gib:.2f} GiB for the whole stack (Kafka JVM included); per round GiB: {per_round}")
    cpu = ", ".join(f"{name} {seconds:.0f}" for name, seconds in sorted(memory["cpu"].items(), key=lambda x: -x[1]))
    print(f"cpu seconds per service over the run: {cpu} (wall {t_services * 60:.0f} s on {os.cpu_count()} cores)")
    plot_memory(memory["samples"], work / "memory.png")
    print(f"plot: {work / 'memory.png'}")
    line = (f"loop: {t_services:.1f} min vs {t_offline:.1f} min offline ({t_services / t_offline:.2f}x), "
            f"final {f_services} vs {f_offline} digits")
    print(line)
    return line


if __name__ == "__main__":
    main()
