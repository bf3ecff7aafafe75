"""Every router of the API, in the order the OpenAPI document lists them."""

from fastapi import APIRouter

from server.routes import auth, health, live, projects

ROUTERS: list[APIRouter] = [health.router, auth.router, projects.router, live.router]
