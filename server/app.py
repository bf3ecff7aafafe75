"""The FastAPI application: routes, errors, metrics, the live alert stream and the web UI."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI
from fastapi.responses import FileResponse, HTMLResponse
from fastapi.routing import APIRoute
from fastapi.staticfiles import StaticFiles
from prometheus_client import make_asgi_app
from psycopg_pool import ConnectionPool

from server import errors
from server.routes import ROUTERS
from server.sharing.audit import KeyAccessAudit
from server.stream import AlertStream
from smartsite.secrets import secret_key
from smartsite.settings import Settings

# The built web UI (npm run build in web/); the API runs without it.
WEB_DIST = Path(__file__).resolve().parent.parent / "web" / "dist"


def _operation_id(route: APIRoute) -> str:
    # Stable operation ids for generated clients: the endpoint function's name.
    return route.name


def create_app(settings: Settings, database_url: str, *, stream: bool = True) -> FastAPI:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        pool = ConnectionPool(
            database_url, min_size=1, max_size=10, kwargs={"autocommit": True}, open=False
        )
        pool.open(wait=True, timeout=30)
        app.state.pool = pool
        app.state.stream = AlertStream(database_url) if stream else None
        if app.state.stream is not None:
            await app.state.stream.start()
        try:
            yield
        finally:
            if app.state.stream is not None:
                await app.state.stream.stop()
            pool.close()

    app = FastAPI(
        title="smartsite",
        version="1",
        summary="Smart construction-site supervision hub",
        lifespan=lifespan,
        generate_unique_id_function=_operation_id,
        responses={401: {"model": errors.ErrorOut}, 422: {"model": errors.ErrorOut}},
    )
    app.state.settings = settings
    app.state.secret_key = secret_key(settings)
    errors.install(app)
    app.add_middleware(KeyAccessAudit)  # every request made with an API key
    for router in ROUTERS:
        app.include_router(router)
    app.mount("/metrics", make_asgi_app())
    if (WEB_DIST / "index.html").is_file() and (WEB_DIST / "assets").is_dir():
        app.mount("/assets", StaticFiles(directory=WEB_DIST / "assets"), name="assets")

        @app.get("/{path:path}", include_in_schema=False)
        def web(path: str) -> FileResponse:
            # A single-page app: every non-API path is index.html, the router takes it there.
            candidate = (WEB_DIST / path).resolve()
            if path and candidate.is_file() and candidate.is_relative_to(WEB_DIST):
                return FileResponse(candidate)
            return FileResponse(WEB_DIST / "index.html")

    else:

        @app.get("/", include_in_schema=False)
        def web_missing() -> HTMLResponse:
            return HTMLResponse(_NOT_BUILT, status_code=503)

    return app


_NOT_BUILT = (
    "<!doctype html><title>smartsite</title><h1>The web UI is not built</h1>"
    "<p>Run <code>npm --prefix web ci &amp;&amp; npm --prefix web run build</code> and restart "
    "<code>smartsite server</code>. The API is up: <a href='/docs'>/docs</a>.</p>"
)
