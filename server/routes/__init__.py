"""Every router of the API, in the order the OpenAPI document lists them."""

from fastapi import APIRouter

from server.routes import (
    admin,
    alerts,
    auth,
    bim,
    credit,
    emergency,
    faces,
    health,
    inspections,
    live,
    projects,
    registry,
    rules,
    sharing,
    telemetry,
)

ROUTERS: list[APIRouter] = [
    health.router,
    auth.router,
    projects.router,
    registry.router,
    telemetry.router,
    bim.router,
    alerts.router,
    alerts.stats_router,
    live.router,
    rules.router,
    credit.router,
    admin.router,
    faces.router,
    sharing.router,
    inspections.router,
    emergency.router,
]
