"""The API's routes, one module per resource, all under ``/api``."""

from fastapi import APIRouter

from services.api.routes import adapters, dead_letters, jobs, metrics, samples, snapshots

router = APIRouter(prefix="/api")
for module in (samples, snapshots, adapters, jobs, metrics, dead_letters):
    router.include_router(module.router)

__all__ = ["router"]
