"""Data sharing (数据共享交换): the shareable datasets page by page, bulk exports (CSV,
Parquet) and the registries' data-quality report, each scoped to the caller. For API keys
every row goes through the grant (``server.sharing.grants``: datasets, fields, personal
data) and every request is audited (``server.sharing.audit``)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import datetime
from typing import Annotated, Any
from zoneinfo import ZoneInfo

from fastapi import APIRouter, Query, Request
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, Field

from server import exports
from server.deps import Conn, Current, SettingsDep
from server.errors import ApiError, forbidden
from server.pagination import Paging
from server.principal import SHARED_FIELDS, KeyGrant, Principal
from server.sharing.datasets import DATASETS, count_rows, own_enterprise, page_rows, stream_rows
from server.sharing.grants import RowShaper, declare_access, require_resource, shape_iter
from server.sharing.quality import QualityReport, quality_report

router = APIRouter(tags=["sharing"])

Since = Annotated[
    datetime | None,
    Query(description="From this date or time on (inclusive; no zone: the hub's time zone)."),
]
Until = Annotated[
    datetime | None,
    Query(description="Before this date or time (exclusive; no zone: the hub's time zone)."),
]


def _check_range(since: datetime | None, until: datetime | None) -> None:
    if since is not None and until is not None:
        a = since if since.tzinfo else since.replace(tzinfo=ZoneInfo("UTC"))
        b = until if until.tzinfo else until.replace(tzinfo=ZoneInfo("UTC"))
        if a >= b:
            raise ApiError(422, "invalid", "since must be before until")


class SharedPage(BaseModel):
    resource: str
    fields: list[str] = Field(description="The fields each item carries (your grant's).")
    personal_data: str | None = Field(
        description="masked or clear: how resident ID numbers appear; null: none here."
    )
    items: list[dict[str, Any]]
    total: int
    limit: int
    offset: int


class GrantOut(BaseModel):
    kind: str = Field(description="key or user.")
    name: str
    projects: list[str] | None = Field(description="The projects in scope; null: every one.")
    resources: dict[str, list[str]] = Field(description="Each dataset you may read: its fields.")
    personal_data: str


@router.get("/api/sharing/grant")
def get_my_sharing_grant(p: Current) -> GrantOut:
    """What you may read through /api/sharing and /api/exports: datasets and their fields."""
    grant = p.grant or KeyGrant()
    return GrantOut(
        kind=p.kind,
        name=p.name,
        projects=p.pids,
        resources={r: list(grant.fields_of(r)) for r in SHARED_FIELDS if grant.allows(r)},
        personal_data=grant.personal_data,
    )


def _share_endpoint(resource: str) -> Callable[..., SharedPage]:
    ds = DATASETS[resource]

    def endpoint(
        request: Request,
        p: Current,
        conn: Conn,
        settings: SettingsDep,
        page: Paging,
        since: Since = None,
        until: Until = None,
        project: Annotated[
            str | None, Query(max_length=64, description="Only this project.")
        ] = None,
    ) -> SharedPage:
        require_resource(p, resource)
        _check_range(since, until)
        if project is not None and not p.sees(project):
            raise ApiError(404, "not_found", "project not found")
        tz = ZoneInfo(settings.alerts_timezone)
        total = count_rows(conn, ds, p, since=since, until=until, tz=tz, project=project)
        rows = page_rows(
            conn,
            ds,
            p,
            since=since,
            until=until,
            tz=tz,
            project=project,
            limit=page.limit,
            offset=page.offset,
        )
        shaper = RowShaper(request, p, resource)
        items = [shaper(r) for r in rows]
        return SharedPage(
            resource=resource,
            fields=list(shaper.fields),
            personal_data=shaper.access["personal_data"] or None,
            items=items,
            total=total,
            **page.model_dump(),
        )

    endpoint.__doc__ = (
        f"{resource.capitalize()} in your scope, page by page, as your grant lets them through"
        f" (date range on {ds.date_column.split('.')[-1]}; every key request is audited)."
    )
    return endpoint


for _resource in SHARED_FIELDS:
    router.add_api_route(
        f"/api/sharing/{_resource}",
        _share_endpoint(_resource),
        methods=["GET"],
        name=f"share_{_resource}",
        response_model=SharedPage,
        responses={403: {"description": "Your key's grant does not include this dataset."}},
    )


@router.get(
    "/api/exports/{dataset}",
    response_class=StreamingResponse,
    responses={
        200: {
            "content": {"text/csv": {}, "application/vnd.apache.parquet": {}},
            "description": "The file, streamed.",
        },
        403: {"description": "Your key's grant does not include this dataset."},
    },
)
def export_dataset(
    dataset: exports.ExportDataset,
    request: Request,
    p: Current,
    settings: SettingsDep,
    format: Annotated[exports.ExportFormat, Query(description="csv or parquet.")] = "csv",
    since: Since = None,
    until: Until = None,
) -> StreamingResponse:
    """A bulk export of projects, permits, alerts or credit records in your scope for a date
    range (projects: registered; permits: issued; alerts: created; credit: occurred)."""
    shaper = RowShaper(request, p, dataset)
    _check_range(since, until)
    tz = ZoneInfo(settings.alerts_timezone)
    pool = request.app.state.pool

    def body() -> Iterator[bytes]:
        with pool.connection() as conn:
            rows = stream_rows(conn, DATASETS[dataset], p, since=since, until=until, tz=tz)
            yield from exports.chunks(dataset, format, shaper.fields, shape_iter(shaper, rows))

    name = exports.file_name(dataset, format, since, until)
    return StreamingResponse(
        body(),
        media_type=exports.MEDIA_TYPES[format],
        headers={"Content-Disposition": f'attachment; filename="{name}"'},
    )


_QUALITY_NEEDS = ("projects", "permits", "enterprises", "workers", "devices")


def _quality_allowed(p: Principal) -> None:
    if p.grant is None:
        return
    for r in _QUALITY_NEEDS:
        if not p.grant.allows(r) or r in p.grant.fields:
            raise forbidden(f"the data-quality report needs a grant of all of {r} and more")


@router.get("/api/data-quality")
def get_data_quality_report(
    request: Request,
    p: Current,
    conn: Conn,
    settings: SettingsDep,
    silent_minutes: Annotated[
        int | None,
        Query(
            ge=1, le=100_000, description="Silent after N minutes, any kind (default: per kind)."
        ),
    ] = None,
    zone_days: Annotated[
        int, Query(ge=1, le=366, description="Workers seen in zones over the last N days.")
    ] = 30,
) -> QualityReport:
    """The registries' data quality in your scope: projects under construction without a
    valid permit, invalid credit codes and ID numbers (reported masked), silent devices,
    projects without a BIM model, workers in zones without the certificate the zone needs."""
    _quality_allowed(p)
    tz = ZoneInfo(settings.alerts_timezone)
    now = datetime.now(tz)
    report = quality_report(
        conn,
        pids=p.pids,
        own_enterprise=own_enterprise(p),
        key=request.app.state.secret_key,
        now=now,
        today=now.date(),
        silent_minutes=silent_minutes,
        zone_days=zone_days,
    )
    s = report.summary
    declare_access(request, "data-quality", (), sum(s.model_dump().values()))
    return report
