"""Jobs: long, retriable, cancellable work run by Celery workers, with every job's life published on ``loop.jobs``.

``app`` builds the Celery app from the settings, ``lifecycle`` is what a job is written with (``job_task``,
``JobContext``), ``control`` what the rest of the loop uses on jobs (``submit_job``, ``request_cancel``,
``job_status``), ``recovery`` queues again a job whose worker died, ``tasks`` holds the jobs the services offer
themselves, and ``python -m services.jobs worker`` starts a worker.
"""

from services.jobs.app import QUEUES, get_app, make_app, queue_for
from services.jobs.control import job_status, request_cancel, submit_job
from services.jobs.lifecycle import JOBS, JobCancelled, JobContext, close_publishers, job_task

__all__ = [
    "JOBS",
    "QUEUES",
    "JobCancelled",
    "JobContext",
    "close_publishers",
    "get_app",
    "job_status",
    "job_task",
    "make_app",
    "queue_for",
    "request_cancel",
    "submit_job",
]
