"""The verifier's jobs, imported by every jobs worker (``services.jobs.app.discover_job_modules``)."""

from workers.verifier.index_updater import rebuild_index

__all__ = ["rebuild_index"]
