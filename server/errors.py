"""One error shape for every failure: ``{"error": {"code", "message", "detail"}}``."""

from __future__ import annotations

from typing import Any

import psycopg
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from starlette.exceptions import HTTPException as StarletteHTTPException


class ErrorBody(BaseModel):
    code: str
    message: str
    detail: Any = None


class ErrorOut(BaseModel):
    error: ErrorBody


class ApiError(Exception):
    """An error the client caused or must know about; ``code`` is stable, ``message`` human."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        detail: Any = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.detail = status, code, message, detail
        self.headers = headers


def not_found(what: str) -> ApiError:
    # Out of scope and absent look the same: a user never learns what another scope holds.
    return ApiError(404, "not_found", f"{what} not found")


def forbidden(message: str) -> ApiError:
    return ApiError(403, "forbidden", message)


def _body(code: str, message: str, detail: Any = None) -> dict[str, Any]:
    return ErrorOut(error=ErrorBody(code=code, message=message, detail=detail)).model_dump()


_STATUS_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    413: "too_large",
    415: "unsupported_media_type",
    422: "invalid",
    429: "too_many_requests",
}


def _db_message(exc: psycopg.Error) -> str:
    return f"rejected by the database: {exc.diag.message_primary or exc}"


def install(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def _api(_: Request, exc: ApiError) -> JSONResponse:
        return JSONResponse(
            _body(exc.code, exc.message, exc.detail), exc.status, headers=exc.headers
        )

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = _STATUS_CODES.get(exc.status_code, "error")
        return JSONResponse(
            _body(code, str(exc.detail)), exc.status_code, headers=getattr(exc, "headers", None)
        )

    # Values PostgreSQL refuses (a NUL character, a code too long for its column, a value a
    # CHECK rejects, an unknown reference, a duplicate) are the client's: 422 / 409, not 500.
    @app.exception_handler(psycopg.errors.UniqueViolation)
    async def _duplicate(_: Request, exc: psycopg.Error) -> JSONResponse:
        return JSONResponse(_body("conflict", _db_message(exc)), 409)

    @app.exception_handler(psycopg.DataError)
    @app.exception_handler(psycopg.IntegrityError)
    async def _refused(_: Request, exc: psycopg.Error) -> JSONResponse:
        return JSONResponse(_body("invalid", _db_message(exc)), 422)

    @app.exception_handler(RequestValidationError)
    async def _invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        errors = [{"loc": list(e["loc"]), "msg": e["msg"], "type": e["type"]} for e in exc.errors()]
        where = ", ".join(".".join(str(p) for p in e["loc"]) for e in errors)
        return JSONResponse(_body("invalid", f"invalid request: {where}", errors), 422)
