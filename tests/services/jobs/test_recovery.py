"""A job whose worker is killed while it runs is queued again by the next worker on the embedded broker."""

import os
import signal
import subprocess
import sys

import pytest

from services.jobs import job_status, submit_job
from services.jobs.app import make_app
from schemas.messages import JobEvent
from services.jobs.recovery import Stranded, StrandedWatch, find_stranded, give_back, other_workers_here
from services.settings import Settings

from .conftest import start_worker

pytestmark = pytest.mark.kafka


def test_a_job_whose_worker_was_killed_runs_again_in_the_next_worker(embedded, tmp_path):
    settings, events, workers = embedded
    first = start_worker(settings, workers, "first")
    job_id = submit_job("sleepy", {"steps": 40, "step_s": 0.1, "marker": str(tmp_path / "ran")}, settings=settings)
    events.wait_for(job_id, "progress")
    killed_pid = int((tmp_path / "ran").read_text())
    os.killpg(first.pid, signal.SIGKILL)  # no warm shutdown: the job's message stays taken
    first.process.wait()
    assert job_status(job_id, settings=settings).state in ("started", "progress")

    second = start_worker(settings, workers, "second")
    done = events.wait_for(job_id, "succeeded", timeout=60)
    states = [e.state for e in done]
    assert states.count("started") == 2 and states.count("succeeded") == 1
    requeued = [e for e in done if e.state == "queued" and "stopped while it ran" in e.message]
    assert len(requeued) == 1 and f"pid {killed_pid}" in requeued[0].message
    assert done[-1].result["pid"] != killed_pid and done[-1].result["pid"] in second.children()
    assert job_status(job_id, settings=settings).state == "succeeded"


def test_a_worker_starting_beside_a_running_job_leaves_it_alone(embedded):
    settings, events, workers = embedded
    start_worker(settings, workers, "running")
    job_id = submit_job("sleepy", {"steps": 30, "step_s": 0.1}, settings=settings)
    events.wait_for(job_id, "progress")
    start_worker(settings, workers, "beside")
    done = events.wait_for(job_id, "succeeded", timeout=60)
    assert [e.state for e in done].count("started") == 1
    assert not [e for e in done if e.state == "queued" and "stopped while it ran" in e.message]


def take_without_running(settings: Settings, queue: str) -> str:
    """Take one message off ``queue`` the way a worker does, in a process that then dies without running it."""
    script = (
        "import os, signal, sys\n"
        "from services.jobs.app import make_app\n"
        "from services.settings import Settings\n"
        "app = make_app(Settings.model_validate_json(sys.argv[1]))\n"
        "with app.connection_for_write() as connection:\n"
        "    message = connection.default_channel.basic_get(sys.argv[2], no_ack=False)\n"
        "    print(message.headers['id'], flush=True)\n"
        "    os.kill(os.getpid(), signal.SIGKILL)  # before closing: a closed channel gives back what it holds\n"
    )
    done = subprocess.run([sys.executable, "-c", script, settings.model_dump_json(), queue],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == -signal.SIGKILL, done.stderr
    return done.stdout.strip()


def test_a_job_taken_by_a_worker_that_died_before_starting_it_runs(embedded):
    settings, events, workers = embedded
    job_id = submit_job("sleepy", {"steps": 2, "step_s": 0.1}, settings=settings)
    assert take_without_running(settings, "default") == job_id
    assert job_status(job_id, settings=settings).state == "queued"

    after = start_worker(settings, workers, "after")
    others = set(other_workers_here())
    assert after.pid in others and not after.children() & others  # its pool's processes are not other workers
    done = events.wait_for(job_id, "succeeded", timeout=90)
    states = [e.state for e in done]
    assert states.count("started") == 1 and states.count("succeeded") == 1
    released = [e for e in done if e.state == "queued" and "never started it" in e.message]
    assert len(released) == 1


def test_a_stranded_message_is_found_only_while_its_job_is_queued_and_given_back_once(embedded):
    settings, events, _ = embedded
    app = make_app(settings)
    waiting = submit_job("sleepy", {"steps": 1}, settings=settings)
    taken = submit_job("sleepy", {"steps": 1}, settings=settings)
    later = submit_job("sleepy", {"steps": 1}, settings=settings, countdown=600)
    for job_id in (waiting, taken, later):
        assert take_without_running(settings, "default") == job_id
    app.backend.store_result(taken, {"pid": 1}, "STARTED")  # a live worker began this one: not stranded

    (stranded,) = find_stranded(app)  # the countdown's job waits in its taker's hands until its time: not stranded
    assert stranded.job_id == waiting and stranded.kind == "sleepy" and stranded.queue == "default"
    event = JobEvent(job_id=waiting, kind="sleepy", state="queued", message="given back")
    assert give_back(app, stranded.message_id, stranded.version, event)
    assert not give_back(app, stranded.message_id, stranded.version, event)  # its version moved on: one copy only
    assert find_stranded(app) == []  # visible again: the next worker takes it
    assert [e.message for e in events.wait_for(waiting, "queued") if e.message == "given back"] == ["given back"]


def test_a_stranded_message_is_due_only_after_it_stayed_so():
    watch = StrandedWatch(after_s=45)
    first = Stranded(1, 3, "job-1", "sleepy", "default", "")
    assert watch.due([first], now=100.0) == []
    assert watch.due([first], now=140.0) == []
    assert watch.due([first], now=145.0) == [first]
    moved = Stranded(1, 4, "job-1", "sleepy", "default", "")  # its row changed (given back, taken again): anew
    assert watch.due([moved], now=150.0) == []
    assert watch.due([], now=160.0) == [] and watch.first_seen == {}
