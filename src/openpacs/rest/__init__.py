"""The admin REST API under /api (OpenAPI at /api/docs), and /health."""

from __future__ import annotations

from fastapi import APIRouter

from openpacs.rest import (
    archive,
    hl7,
    jobs,
    migrations,
    nodes,
    orders,
    qa,
    reading_lists,
    routes,
    session,
    system,
    users,
    workflow,
)


def router() -> APIRouter:
    """Every route of the admin API."""
    api = APIRouter()
    api.include_router(system.router)
    api.include_router(session.router)
    api.include_router(users.router)
    api.include_router(nodes.router)
    api.include_router(archive.router)
    api.include_router(qa.router)
    api.include_router(routes.router)
    api.include_router(jobs.router)
    api.include_router(migrations.router)
    api.include_router(hl7.router)
    api.include_router(orders.router)
    api.include_router(workflow.router)
    api.include_router(reading_lists.router)
    return api
