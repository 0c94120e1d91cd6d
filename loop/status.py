"""What `loopctl status` and the live line of `loopctl up` show: the loop's state, rates and lag."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path

from sqlalchemy import Engine, func, select
from sqlmodel import col

from schemas.messages import ACTIVE_JOB_STATES, CONSUMER_GROUPS
from schemas.tables import Adapter, Job, Sample
from services.settings import Settings
from services.store.queries import off_adapter



@dataclass
class LoopStatus:
    round: int | None
    target: int | None
    promoted: str | None
    mastered_scores: dict[int, float]
    samples: dict[str, int]
    accepted_per_s: float
    lag: dict[str, int | None]  # None: the group has never consumed (its service is not part of this loop)
    job: str | None = None  # the newest job not finished: "train_adapter 42% step 250/600, loss 0.31"
    kept_right: float | None = None  # the current round's kept labels that are right (measurement only)
    off_adapter: str = ""  # recent samples generated with an adapter other than the promoted one (services.store.queries)

    def line(self) -> str:
        accuracy = " ".join(f"{d}:{a:.2f}" for d, a in sorted(self.mastered_scores.items())) or "-"
        lag = " ".join(f"{g}={'-' if n is None else n}" for g, n in self.lag.items())
        return (f"round {self.round or '-'} | difficulty {self.target or '-'} | adapter {self.promoted or 'base'} | "
                f"{f'generated off the promoted adapter: {self.off_adapter} | ' if self.off_adapter else ''}"
                f"accepted {self.samples.get('accepted', 0)} ({self.accepted_per_s:.1f}/s) rejected {self.samples.get('rejected', 0)} | "
                f"{'' if self.kept_right is None else f'kept right {self.kept_right:.3f} | '}"
                f"held-out {accuracy} | {f'job {self.job} | ' if self.job else ''}lag {lag}")


def controller_state(settings: Settings) -> dict:
    path = settings.data_dir / "loop" / "controller.json"
    try:
        return json.loads(path.read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return {}


def read_status(settings: Settings, engine: Engine, lag_monitor=None, *, window_s: float = 60.0) -> LoopStatus:
    state = controller_state(settings)
    with engine.connect() as connection:
        counts: dict[str, int] = dict(
            connection.execute(select(col(Sample.status), func.count()).group_by(col(Sample.status))).all()
        )
        since = datetime.now(timezone.utc) - timedelta(seconds=window_s)
        recent = connection.execute(
            select(func.count())
            .select_from(Sample)
            .where(col(Sample.status) == "accepted", col(Sample.verdict_at) >= since)
        ).scalar_one()
        promoted = connection.execute(
            select(col(Adapter.id))
            .where(col(Adapter.status) == "promoted")
            .order_by(col(Adapter.updated_at).desc())
            .limit(1)
        ).scalar_one_or_none()
        active = connection.execute(
            select(col(Job.kind), col(Job.state), col(Job.progress), col(Job.message))
            .where(col(Job.state).in_(ACTIVE_JOB_STATES))
            .order_by(col(Job.created_at).desc()).limit(1)
        ).first()
        off = off_adapter(connection, window_s=window_s).text()
    lag: dict[str, int | None] = {}
    if lag_monitor is not None:
        for group, topics in CONSUMER_GROUPS.items():
            try:
                lag[group] = sum(lag_monitor.lag(group, topic) for topic in topics) if lag_monitor.consumed(group) else None
            except Exception:  # noqa: BLE001 - a status line must not die with Kafka
                lag[group] = -1
    scores = {int(s["difficulty"]): s["accuracy"] for s in state.get("promoted_scores") or []}
    known, right = kept_precision(engine, family=None, round_no=state.get("round"))
    return LoopStatus(state.get("round"), state.get("target"), state.get("promoted_id") or promoted, scores, counts,
                      recent / window_s, lag, _job_text(*active) if active else None,
                      right / known if known else None, off)


def kept_precision(engine: Engine, *, family: str | None, round_no: int | None) -> tuple[int, int]:
    """(kept samples of the round whose true answer is known, those of them labelled with it): measurement only."""
    if round_no is None:
        return 0, 0
    kept = [col(Sample.status) == "accepted", col(Sample.round) == round_no, col(Sample.true_answer).is_not(None)]
    if family is not None:
        kept.append(col(Sample.family) == family)
    with engine.connect() as connection:
        known = connection.execute(select(func.count()).select_from(Sample).where(*kept)).scalar_one()
        right = connection.execute(select(func.count()).select_from(Sample)
                                   .where(*kept, col(Sample.label) == Sample.true_answer)).scalar_one()
    return known, right


def _job_text(kind: str, state: str, progress: float | None, message: str) -> str:
    if state == "queued":
        return f"{kind} queued"
    return f"{kind} {100 * (progress or 0):.0f}% {message}".rstrip()


def read_rounds(settings: Settings) -> list[dict]:
    path = settings.data_dir / "loop" / "rounds.jsonl"
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def rounds_table(rounds: list[dict]) -> str:
    lengths = sorted({int(d) for r in rounds for d in r["scores"]})
    header = (f"{'round':>5} {'target':>6} {'adapter':<32} {'init':<6} {'decision':<9} {'accepted':>8} {'right':>7} "
              f"{'contra':>6} {'mastered':>8}  " + " ".join(f"{d:>5}" for d in lengths))
    lines = [header]
    for r in rounds:
        decision = "promoted" if r["promoted"] else "rejected"
        cells = " ".join(f"{r['scores'].get(str(d), r['scores'].get(d, float('nan'))):>5.2f}" for d in lengths)
        right, contra = r.get("kept_right"), r.get("contradicted")
        below = right is not None and right < r.get("precision_bound", 0.95)
        right_cell = "-" if right is None else f"{right:.3f}{'!' if below else ' '}"
        contra_cell = "-" if contra is None else f"{contra:.3f}"
        lines.append(f"{r['round']:>5} {r['target']:>6} {(r['adapter_id'] or 'base'):<32} {r.get('init') or '-':<6} {decision:<9} {r['accepted']:>8} "
                     f"{right_cell:>7} {contra_cell:>6} {r['mastered']:>8}  {cells}")
    lines.append("right: kept labels that are right (measurement only; ! below the policy's precision_bound); "
                 "contra: agreeing answers a relative contradicted; init: the adapter started fresh from the base "
                 "or continued the promoted one (parent)")
    return "\n".join(lines)


def plot_rounds(rounds: list[dict], path: Path) -> Path | None:
    if not rounds:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    lengths = sorted({int(d) for r in rounds for d in r["scores"]})
    fig, (ax, kept) = plt.subplots(2, 1, figsize=(8, 7), sharex=True, height_ratios=(2, 1))
    measured = [r for r in rounds if r.get("kept_right") is not None]
    kept.plot([r["round"] for r in measured], [r["kept_right"] for r in measured], marker="o", color="black",
              label="kept labels right (measurement)")
    contra = [r for r in rounds if r.get("contradicted") is not None]
    kept.plot([r["round"] for r in contra], [r["contradicted"] for r in contra], marker="x", color="tab:red",
              label="agreeing answers a relative contradicted")
    bound = max((r.get("precision_bound", 0.95) for r in rounds), default=0.95)
    kept.axhline(bound, color="grey", linestyle="--", linewidth=0.8)
    for r in measured:
        if r["kept_right"] < r.get("precision_bound", 0.95):
            kept.annotate(f"{r['kept_right']:.2f}", (r["round"], r["kept_right"]), color="tab:red", fontsize=8)
    kept.set(xlabel="round", ylabel="share", ylim=(-0.02, 1.02))
    kept.legend(fontsize=8)
    for length in lengths:
        points = [(r["round"], r["scores"][str(length)]) for r in rounds if str(length) in r["scores"]]
        ax.plot([p[0] for p in points], [p[1] for p in points], marker="o", label=f"{length} digits")
    ax.axhline(0.95, color="grey", linestyle="--", linewidth=0.8)
    ax.set(ylabel="held-out accuracy", title="held-out accuracy per length, and the kept labels, by round", ylim=(-0.02, 1.02))
    ax.legend(ncol=2, fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def wait_for(predicate, timeout: float, interval: float = 0.5):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    return None
