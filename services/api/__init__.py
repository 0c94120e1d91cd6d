"""The HTTP API and web dashboard over the SQL store and the job runner (``python -m services.api``)."""

from services.api.app import create_app

__all__ = ["create_app"]
