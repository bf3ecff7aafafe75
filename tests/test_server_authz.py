"""The authorization matrix (issue 7): every operation of the OpenAPI document × every kind of
principal × its own scope and another, asserting allowed or denied.

Principals: an admin; a regulator of district D1 (sees project A only); a city regulator (no
district: sees everything); an officer of A; a user of A's general contractor; a data-sharing
user on A; a data-sharing API key granted A. The other scope is project B in district D2 with
its own enterprise, worker, device, alert (with evidence), rules, blacklist entry and BIM
model, all with distinctive ids ("zulu", its credit code, its alert ids) so that a leak shows
up by searching the response text.

Expectations: a role the operation admits gets a success on its own scope; a role it refuses
gets 403; another scope reads as absent (404; 403 where the role is refused first; 422 where
the scope is named in the body and the API says "unknown or outside your scope"). The admin
and the city regulator see B as their own. Anonymous callers get 401 except on the public
operations. Lists without a scope in the path must show the own scope's ids and never B's to
a principal that does not see B, and no response ever carries a full ID number.

Reads share one world; each write operation gets a fresh one, refused callers first (the
state must not change), allowed ones last, each allowed call on a target prepared for it.
"""

from __future__ import annotations

import functools
import io
import json
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pyarrow.parquet as pq
import pytest
from api_helpers import PASSWORD, id_number, project, uscc, user
from fastapi.testclient import TestClient
from pydantic import SecretStr
from test_server_alerts import JPEG, PNG, make_alert
from test_server_bim import _small_ifc
from test_server_rules import crane_spec

from alerts import lifecycle as lc
from alerts.credit import BlacklistIn, RecordIn, add_blacklist, add_record
from alerts.rule_store import RuleChange, put_rule
from bim import placement, store
from bim.models import DevicePlacementIn
from emergency import duty as dt
from emergency import incidents as inc
from emergency import warnings as wn
from inspections import draw as dr
from inspections import records as rec
from server import users as users_module
from server.principal import KeyGrant
from server.security import create_token, hash_password
from server.users import create_api_key
from smartsite.db.registry import (
    DeviceIn,
    EnterpriseIn,
    PermitIn,
    PersonIn,
    link_enterprise,
    upsert_device,
    upsert_enterprise,
    upsert_permit,
    upsert_person,
)
from smartsite.secrets import secret_key
from smartsite.settings import Settings

# --- the two scopes -----------------------------------------------------------------------------

D1, D2 = "110105", "110108"
A, B = "PA-ALFA", "PB-ZULU"
GC = {A: uscc(101), B: uscc(909909909)}
PERSON = {A: "WA-ALFA", B: "WB-ZULU"}
ID_NUMBER = {A: id_number(121), B: id_number(909)}
DEVICE = {A: f"{A}-crane", B: f"{B}-crane"}
NAME = {A: "Alfa", B: "Zulu"}
DISTRICT = {A: D1, B: D2}
# the inspector pool is city-wide (every draw's snapshot lists every inspector): neutral ids
INSPECTOR = {A: f"INS-{D1}", B: f"INS-{D2}"}
RULE_KEY = "crane_moment"
METRIC = "moment_pct"

# --- the principals -----------------------------------------------------------------------------

PRINCIPALS = ("admin", "reg_d1", "reg_city", "officer", "enterprise", "ds_user", "ds_key")
ROLE = {
    "admin": "admin",
    "reg_d1": "regulator",
    "reg_city": "regulator",
    "officer": "officer",
    "enterprise": "enterprise",
    "ds_user": "data_sharing",
    "ds_key": "data_sharing",
}
SEES_B = frozenset({"admin", "reg_city"})
EVERYONE = frozenset(PRINCIPALS)
ANONYMOUS = "anonymous"


def roles(*names: str) -> frozenset[str]:
    return frozenset(p for p in PRINCIPALS if ROLE[p] in names)


def sees(who: str, pid: str) -> bool:
    return pid == A or who in SEES_B


def visible(who: str) -> tuple[str, ...]:
    return (A, B) if who in SEES_B else (A,)


# --- the world ----------------------------------------------------------------------------------


@functools.cache
def _password_hash() -> str:
    return hash_password(PASSWORD)


@dataclass
class World:
    db: psycopg.Connection
    key: bytes
    headers: dict[str, dict[str, str]] = field(default_factory=dict)
    user_ids: dict[str, int] = field(default_factory=dict)
    alert: dict[str, str] = field(default_factory=dict)
    evidence: dict[str, str] = field(default_factory=dict)
    overdue: dict[str, str] = field(default_factory=dict)
    blacklist: dict[str, int] = field(default_factory=dict)
    storey: dict[str, str] = field(default_factory=dict)
    draw: dict[str, int] = field(default_factory=dict)  # A: published; B: unpublished
    sealed: dict[str, int] = field(default_factory=dict)  # unpublished draws
    inspection: dict[str, int] = field(default_factory=dict)
    photo: dict[str, int] = field(default_factory=dict)
    incident: dict[str, int] = field(default_factory=dict)
    warning: dict[str, int] = field(default_factory=dict)

    def leak_tokens(self) -> list[str]:
        """What only B's scope holds, lower case, for searching response text."""
        tokens = ["zulu", GC[B].lower(), self.alert[B], self.overdue[B], self.evidence[B]]
        return [t.lower() for t in tokens]


SETUP = lc.Actor(name="setup", role="admin")


def alert_in(w: World, pid: str, status: lc.Status = lc.Status.OPEN) -> str:
    """A fresh alert of the project's crane, with an edge photo, moved on to ``status``."""
    aid = make_alert(w.db, pid, DEVICE[pid], evidence=JPEG)
    uid = uuid.UUID(aid)
    order = [lc.Status.OPEN, lc.Status.ACKNOWLEDGED, lc.Status.RECTIFYING, lc.Status.RESOLVED]
    steps = order.index(status)
    if steps >= 1:
        lc.acknowledge(w.db, uid, by=SETUP)
    if steps >= 2:
        deadline = datetime.now(UTC) + timedelta(days=1)
        lc.assign_rectification(w.db, uid, by=SETUP, responsible="foreman", deadline=deadline)
    if steps >= 3:
        photo = f"upload-{uuid.uuid4().hex}"
        w.db.execute(
            "INSERT INTO evidence (id, device_id, project_id, content_type, sha256, data)"
            " VALUES (%s, %s, %s, 'image/png', '\\x00', %s)",
            (photo, DEVICE[pid], pid, PNG),
        )
        lc.resolve(w.db, uid, by=SETUP, note="fixed", evidence_id=photo)
    return aid


def rule_change(pid: str | None = None, device: str | None = None) -> RuleChange:
    return RuleChange.model_validate(
        {
            "key": RULE_KEY,
            "device_kind": "tower_crane",
            "project_id": pid,
            "device_id": device,
            "spec": crane_spec(warning=80, alarm=95),
            "note": f"rule of {pid or device or 'the city'}",
        }
    )


def _ifc() -> Path | None:
    try:
        return _small_ifc()
    except pytest.skip.Exception:
        return None


def new_draw(db: psycopg.Connection, pid: str, title: str, *, publish: bool = False) -> int:
    """A draw of the project's district: the project, by its district's inspector."""
    params = dr.DrawParams.model_validate(DRAW_PARAMS | {"district": DISTRICT[pid]})
    draw_id = dr.create_draw(db, params, title=title, by="setup", as_of=date.today())
    if publish:
        dr.publish(db, draw_id, by="setup")
    return draw_id


DRAW_PARAMS: dict[str, Any] = {
    "projects": 1,
    "inspectors_per_project": 1,
    "statuses": ["planned", "under_construction"],
    "recent_days": 0,  # a project may be drawn again at once
    "district_rule": "same",
}


def finding_in(pid: str) -> dict[str, Any]:
    return {
        "category": "safety",
        "severity": "major",
        "description": f"{NAME[pid]} edge protection missing",
        "responsible_uscc": GC[pid],
        "rectification": {
            "requirement": f"{NAME[pid]} rails back up",
            "deadline": (datetime.now(UTC) + timedelta(days=3)).isoformat(),
        },
    }


def warning_in(pid: str) -> dict[str, Any]:
    now = datetime.now(UTC)
    return {
        "kind": "strong_wind",
        "level": "orange",
        "title": f"{NAME[pid]} gale warning",
        "starts_at": (now - timedelta(minutes=5)).isoformat(),
        "ends_at": (now + timedelta(hours=6)).isoformat(),
        "target": "projects",
        "projects": [pid],
    }


def new_warning(db: psycopg.Connection, pid: str) -> int:
    return wn.issue(db, wn.WarningIn.model_validate(warning_in(pid)), None, "setup")


def roster_in(name: str) -> dict[str, Any]:
    return {
        "name": name,
        "phone": "010-12345678",
        "contacts": [{"name": "Duty Wang", "title": "值班员", "phone": "13900000000"}],
        "shifts": [
            {
                "contact": "Duty Wang",
                "weekdays": [1, 2, 3, 4, 5, 6, 7],
                "start": "08:00",
                "end": "08:00",
            }
        ],
    }


def incident_in(pid: str) -> dict[str, Any]:
    return {
        "project_id": pid,
        "occurred_at": (datetime.now(UTC) - timedelta(hours=3)).isoformat(),
        "place": f"{NAME[pid]} hoist shaft",
        "summary": f"{NAME[pid]} fall from the hoist",
        "serious_injuries": 1,
        "reporter": "site manager 13800000000",
    }


def build_world(db: psycopg.Connection, settings: Settings, *, bim: bool) -> World:
    w = World(db=db, key=secret_key(settings))
    today = date.today()
    now = datetime.now(UTC)
    for pid, district in ((A, D1), (B, D2)):
        project(db, pid, district, name=f"{NAME[pid]} Tower")
        upsert_enterprise(db, EnterpriseIn(uscc=GC[pid], name=f"{NAME[pid]} General Co"))
        link_enterprise(db, pid, GC[pid], "general_contractor")
        upsert_permit(
            db,
            PermitIn(number=f"PERMIT-{NAME[pid].upper()}", project_id=pid, issued_on=today),
        )
        upsert_person(
            db,
            PersonIn(
                id=PERSON[pid],
                name=f"{NAME[pid]} Worker",
                id_number=SecretStr(ID_NUMBER[pid]),
                employer_uscc=GC[pid],
                trade="crane",
            ),
            w.key,
        )
        db.execute(
            "INSERT INTO project_workers (project_id, person_id) VALUES (%s, %s)",
            (pid, PERSON[pid]),
        )
        db.execute(
            "INSERT INTO certificates (person_id, type, number, issued_on, expires_on)"
            " VALUES (%s, 'special_operations:tower_crane_driver', %s, %s, %s)",
            (PERSON[pid], f"CERT-{NAME[pid]}", today, today + timedelta(days=300)),
        )
        upsert_device(db, DeviceIn(id=DEVICE[pid], project_id=pid, kind="tower_crane"))
        db.execute(
            "INSERT INTO telemetry (time, project_id, device_id, metric, value, unit, message_id)"
            " VALUES (%s, %s, %s, %s, 42, '%%', gen_random_uuid())",
            (now - timedelta(minutes=5), pid, DEVICE[pid], METRIC),
        )
        db.execute(
            "INSERT INTO attendance (time, project_id, device_id, worker_id, similarity,"
            " direction, message_id) VALUES (%s, %s, %s, %s, 0.93, 'in', gen_random_uuid())",
            (now - timedelta(minutes=10), pid, DEVICE[pid], PERSON[pid]),
        )
        w.alert[pid] = alert_in(w, pid)
        w.evidence[pid] = f"ev-{uuid.UUID(w.alert[pid]).hex[:8]}"
        w.overdue[pid] = alert_in(w, pid, lc.Status.RECTIFYING)
        db.execute(
            "UPDATE alerts SET deadline = now() - interval '2 hours' WHERE id = %s",
            (w.overdue[pid],),
        )
        put_rule(db, rule_change(pid), by="setup")
        db.execute(
            "INSERT INTO zone_certificate_requirements (project_id, zone, certificate_type)"
            " VALUES (%s, %s, 'special_operations:tower_crane_driver')",
            (pid, f"zone-{NAME[pid].lower()}"),
        )
        add_record(
            db,
            RecordIn(
                uscc=GC[pid],
                kind="violation",
                category="safety",
                points=5,
                reason=f"{NAME[pid]} guard rail",
                occurred_at=now,
                recorded_by="setup",
            ),
        )
        w.blacklist[pid] = add_blacklist(
            db,
            BlacklistIn(
                person_id=PERSON[pid],
                starts_at=now - timedelta(days=1),
                reason=f"{NAME[pid]} forged certificate",
                recorded_by="setup",
            ),
        )
        ifc = _ifc() if bim else None
        if ifc is not None:
            store.import_model(db, pid, ifc, file_name=f"{NAME[pid].lower()}.ifc")
            row = db.execute(
                "SELECT n.global_id FROM bim_nodes n JOIN bim_models m ON m.id = n.model_id"
                " WHERE m.project_id = %s AND n.kind = 'storey' ORDER BY n.position LIMIT 1",
                (pid,),
            ).fetchone()
            assert row is not None
            w.storey[pid] = row[0]
            placement.place_device(
                db, DevicePlacementIn(project_id=pid, device_id=DEVICE[pid], target_id=row[0])
            )
    put_rule(db, rule_change(), by="setup")  # the kind-level rule everyone reads
    spot_checks_and_emergency(w)

    ids = {
        "admin": user(db, "u-admin", "admin"),
        "reg_d1": user(db, "u-reg-d1", "regulator", district_code=D1),
        "reg_city": user(db, "u-reg-city", "regulator"),
        "officer": user(db, "u-officer-a", "officer", projects=[A]),
        "enterprise": user(db, "u-gc-a", "enterprise", enterprise_uscc=GC[A]),
        "ds_user": user(db, "u-share-a", "data_sharing", projects=[A]),
    }
    w.user_ids = ids
    for who, uid in ids.items():
        token, _ = create_token(w.key, uid, ROLE[who], 60)
        w.headers[who] = {"Authorization": f"Bearer {token}"}
    full = create_api_key(db, w.key, "bureau-alfa", KeyGrant(projects=[A]), by="test")
    w.headers["ds_key"] = {"X-API-Key": full}
    w.headers[ANONYMOUS] = {}
    return w


def spot_checks_and_emergency(w: World) -> None:
    """Per scope: an inspector of the district; draws (A's published, B's not; an unpublished
    one of each); an inspection with a finding, its rectification order and a photo; a late
    incident report; a warning in force; the project's duty roster. Duty rosters of both
    districts and the city (a regulator's office is everyone's to read)."""
    db = w.db
    setup = inc.By("setup", "admin")
    for pid in (A, B):
        db.execute(
            "INSERT INTO inspectors (id, name, district_code) VALUES (%s, %s, %s)",
            (INSPECTOR[pid], f"Inspector {DISTRICT[pid]}", DISTRICT[pid]),
        )
    for pid in (A, B):
        w.draw[pid] = new_draw(db, pid, f"{NAME[pid]} round", publish=pid == A)
        w.sealed[pid] = new_draw(db, pid, f"{NAME[pid]} sealed round")
        body = rec.InspectionIn(draw_id=w.draw[pid], project_id=pid, inspected_on=date.today())
        w.inspection[pid] = rec.create_inspection(db, body, by="setup")
        rec.add_finding(
            db, w.inspection[pid], rec.FindingIn.model_validate(finding_in(pid)), by="setup"
        )
        w.photo[pid] = rec.add_photo(
            db, w.inspection[pid], PNG, "image/png", by="setup", caption=f"{NAME[pid]} rail"
        )
        w.incident[pid] = inc.report(db, inc.IncidentIn.model_validate(incident_in(pid)), setup)
        w.warning[pid] = new_warning(db, pid)
        dt.put_roster(
            db,
            "project",
            None,
            pid,
            dt.RosterIn.model_validate(roster_in(f"{NAME[pid]} site office")),
            "setup",
        )
    for district in (D1, D2, None):
        office = dt.RosterIn.model_validate(roster_in(f"duty office {district or 'city'}"))
        dt.put_roster(db, "regulator", district, None, office, "setup")


# --- requests and expectations ------------------------------------------------------------------


@dataclass
class Req:
    params: dict[str, Any] = field(default_factory=dict)
    query: dict[str, Any] = field(default_factory=dict)
    json: Any = None
    data: dict[str, Any] | None = None
    files: dict[str, Any] | None = None

    def text(self) -> str:
        return json.dumps([self.params, self.query, self.json, self.data], default=str).lower()


Target = Callable[[World, str], Req]
Tokens = Callable[[World, str], list[str]]
Check = Callable[[World, str, httpx.Response], str | None]


@dataclass(frozen=True)
class Case:
    op: str
    variant: str = ""
    target: Target | None = None  # scope → request (writes: prepares a fresh target)
    scoped: bool = True  # has an own and an other scope
    allowed: frozenset[str] = EVERYONE
    write: bool = False
    public: bool = False
    other: int = 404  # what an allowed principal gets on a scope it does not see
    refused: int = 403  # what a refused one gets (404: the target reads as absent to it)
    tokens: Tokens | None = None  # ids that must show, for a principal, in an unscoped list
    check: Check | None = None
    bim: bool = False  # needs the BIM models
    # besides a success, what else shows that an allowed call got past authorization
    passed: Callable[[httpx.Response], bool] | None = None

    @property
    def name(self) -> str:
        return f"{self.op}[{self.variant}]" if self.variant else self.op

    def request(self, w: World, pid: str) -> Req:
        return self.target(w, pid) if self.target else Req()


def read(op: str, target: Target | None = None, *, scoped: bool = True, **kw: Any) -> Case:
    return Case(op=op, target=target, scoped=scoped and target is not None, **kw)


def write(op: str, target: Target | None, allowed: frozenset[str], **kw: Any) -> Case:
    return Case(op=op, target=target, allowed=allowed, write=True, **kw)


def project_path(w: World, pid: str) -> Req:
    return Req(params={"project_id": pid})


def each_visible(*make: Callable[[World, str], str]) -> Tokens:
    return lambda w, who: [m(w, p) for p in visible(who) for m in make]


def _trend_count(w: World, who: str, r: httpx.Response) -> str | None:
    n = sum(d["warning"] + d["alarm"] for d in r.json()["series"])
    want = 2 * len(visible(who))  # two alerts opened per project today
    return None if n == want else f"counted {n} alerts, expected {want}"


def _login(w: World, pid: str) -> Req:
    return Req(json={"username": "u-officer-a", "password": PASSWORD})


OPEN, ACK, RECT, RES = (
    lc.Status.OPEN,
    lc.Status.ACKNOWLEDGED,
    lc.Status.RECTIFYING,
    lc.Status.RESOLVED,
)
SITE_SIDE = roles("admin", "officer")
VERIFIERS = roles("admin", "regulator")
EDITORS = roles("admin", "regulator", "officer")
CREDIT_WRITERS = roles("admin", "regulator")
CITY_WIDE = frozenset({"admin", "reg_city"})
ADMIN = frozenset({"admin"})


def _alert(status: lc.Status, **body: Any) -> Target:
    def target(w: World, pid: str) -> Req:
        return Req(params={"alert_id": alert_in(w, pid, status)}, json=body or None)

    return target


def _resolve(w: World, pid: str) -> Req:
    return Req(
        params={"alert_id": alert_in(w, pid, RECT)},
        data={"note": "limiter recalibrated"},
        files={"photo": ("after.png", PNG, "image/png")},
    )


def _upload(w: World, pid: str) -> Req:
    src = _ifc()
    assert src is not None
    return Req(
        params={"project_id": pid},
        files={"file": (src.name, src.read_bytes(), "application/octet-stream")},
    )


def _put_rule(w: World, pid: str) -> Req:
    return Req(json=rule_change(pid).model_dump(mode="json"))


def _put_device_rule(w: World, pid: str) -> Req:
    return Req(json=rule_change(device=DEVICE[pid]).model_dump(mode="json"))


def _put_kind_rule(w: World, pid: str) -> Req:
    return Req(json=rule_change().model_dump(mode="json"))


def _delete_rule(w: World, pid: str) -> Req:
    return Req(params={"rule_id": put_rule(w.db, rule_change(pid), by="setup").id})


def _delete_kind_rule(w: World, pid: str) -> Req:
    return Req(params={"rule_id": put_rule(w.db, rule_change(), by="setup").id})


def _record(subject: str) -> Target:
    def target(w: World, pid: str) -> Req:
        who = {"uscc": GC[pid]} if subject == "enterprise" else {"person_id": PERSON[pid]}
        return Req(
            json={
                **who,
                "kind": "violation",
                "category": "safety",
                "points": 3,
                "reason": "no helmet",
                "source": f"authz:{uuid.uuid4().hex}",
                "occurred_at": datetime.now(UTC).isoformat(),
            }
        )

    return target


def _blacklist(w: World, pid: str) -> Req:
    start = datetime.now(UTC) - timedelta(hours=1)
    return Req(json={"uscc": GC[pid], "starts_at": start.isoformat(), "reason": "forged permit"})


def _edit_blacklist(w: World, pid: str) -> Req:
    return Req(
        params={"entry_id": w.blacklist[pid]},
        json={"reason": f"corrected {uuid.uuid4().hex[:6]}", "note": "typo in the reason"},
    )


def _face(w: World, pid: str) -> Req:
    return Req(params={"person_id": PERSON[pid]})


def _enrol(w: World, pid: str) -> Req:
    return Req(
        params={"person_id": PERSON[pid]},
        data={
            "consent_given_by": f"{NAME[pid]} Worker",
            "consent_given_at": datetime.now(UTC).isoformat(),
            "consent_method": "written",
            "consent_document": "CONSENT-1",
        },
        files={"photos": ("face.png", PNG, "image/png")},
    )


def _add_user(w: World, pid: str) -> Req:
    name = f"new-{uuid.uuid4().hex[:8]}"
    return Req(json={"username": name, "password": PASSWORD, "role": "officer", "projects": [A]})


def _new_key(w: World, pid: str) -> Req:
    return Req(json={"name": f"key-{uuid.uuid4().hex[:6]}", "grant": {"projects": [A]}})


def _revoke_key(w: World, pid: str) -> Req:
    full = create_api_key(w.db, w.key, "spare", KeyGrant(projects=[A]), by="test")
    return Req(params={"key_id": full.split("_", 2)[1]})


# --- emergency, spot checks, sharing --------------------------------------------------------------


def _param(name: str, ids: Callable[[World], dict[str, Any]], **query: Any) -> Target:
    return lambda w, p: Req(params={name: ids(w)[p]}, query=query)


def _incident(w: World, pid: str) -> Req:
    return Req(params={"incident_id": w.incident[pid]})


def _fresh_warning(body: dict[str, Any]) -> Target:
    return lambda w, p: Req(params={"warning_id": new_warning(w.db, p)}, json=body)


def _fresh_draw(w: World, pid: str) -> Req:
    return Req(params={"draw_id": new_draw(w.db, pid, f"{NAME[pid]} round {uuid.uuid4().hex[:6]}")})


def _new_inspection(w: World, pid: str) -> Req:
    draw_id = new_draw(w.db, pid, f"{NAME[pid]} round {uuid.uuid4().hex[:6]}")
    return Req(
        json={"draw_id": draw_id, "project_id": pid, "inspected_on": date.today().isoformat()}
    )


def _confirm(w: World, pid: str) -> Req:
    finding = rec.FindingIn.model_validate(finding_in(pid))
    fid = rec.add_finding(w.db, w.inspection[pid], finding, by="setup")
    return Req(
        params={"inspection_id": w.inspection[pid], "finding_id": fid}, json={"note": "heard"}
    )


def _order(*, reported: bool, body: dict[str, Any]) -> Target:
    """A fresh rectification order of the scope's inspection (reported done, or open)."""

    def target(w: World, pid: str) -> Req:
        finding = rec.FindingIn.model_validate(finding_in(pid))
        fid = rec.add_finding(w.db, w.inspection[pid], finding, by="setup")
        row = w.db.execute(
            "SELECT id FROM rectification_orders WHERE finding_id = %s", (fid,)
        ).fetchone()
        assert row is not None
        if reported:
            rec.report_rectification(w.db, row[0], note="rails back", by="setup")
        return Req(params={"order_id": row[0]}, json=body)

    return target


def _inspection_photo(w: World, pid: str) -> Req:
    return Req(
        params={"inspection_id": w.inspection[pid]},
        data={"caption": "guard rail gone"},
        files={"photo": ("rail.png", PNG, "image/png")},
    )


MANAGERS = roles("admin", "regulator")  # the spot-check and warning side
NOT_KEYS = frozenset(PRINCIPALS) - {"ds_key"}
D1_MANAGERS = frozenset({"admin", "reg_d1", "reg_city"})


def _draw_tokens(w: World, who: str) -> list[str]:
    """Published draws to all; unpublished ones to those who manage their district."""
    shown = ["alfa round"]
    if who in D1_MANAGERS:
        shown.append("alfa sealed round")
    if who in SEES_B:
        shown.append("zulu sealed round")
    return shown


def _no_sealed_draws(w: World, who: str, r: httpx.Response) -> str | None:
    if who not in D1_MANAGERS and "sealed" in r.text.lower():
        return "an unpublished draw shown to one who does not manage it"
    return None


SHARED = {
    "projects": lambda w, p: p,
    "permits": lambda w, p: f"PERMIT-{NAME[p].upper()}",
    "enterprises": lambda w, p: GC[p],
    "workers": lambda w, p: PERSON[p],
    "attendance": lambda w, p: PERSON[p],
    "alerts": lambda w, p: w.alert[p],
    "credit": lambda w, p: f"{NAME[p]} guard rail",
    "telemetry": lambda w, p: DEVICE[p],
    "devices": lambda w, p: DEVICE[p],
}
EXPORTS = ("projects", "permits", "alerts", "credit")


def _parquet_rows(dataset: str) -> Check:
    """Parquet is compressed: read it, then look for the own scope's ids and none of B's."""

    def check(w: World, who: str, r: httpx.Response) -> str | None:
        rows = pq.read_table(io.BytesIO(r.content)).to_pylist()
        text = json.dumps(rows, default=str).lower()
        absent = [t for t in each_visible(SHARED[dataset])(w, who) if t.lower() not in text]
        leaked = [t for t in w.leak_tokens() if t in text] if who not in SEES_B else []
        if absent or leaked:
            return f"parquet: own ids missing {absent}, other scope's shown {leaked}"
        return None

    return check


def _sharing_cases() -> Iterator[Case]:
    for resource, ident in SHARED.items():
        # no project named: the whole scope, own ids shown and never B's
        yield read(f"share_{resource}", tokens=each_visible(ident))
        # a project named: B reads as absent to those who do not see it
        yield Case(
            op=f"share_{resource}",
            variant="project",
            target=lambda w, p: Req(query={"project": p}),
        )
    for dataset in EXPORTS:
        yield Case(
            op="export_dataset",
            variant=f"{dataset}.csv",
            target=lambda w, p, d=dataset: Req(params={"dataset": d}),
            scoped=False,
            tokens=each_visible(SHARED[dataset]),
        )
        yield Case(
            op="export_dataset",
            variant=f"{dataset}.parquet",
            target=lambda w, p, d=dataset: Req(params={"dataset": d}, query={"format": "parquet"}),
            scoped=False,
            check=_parquet_rows(dataset),
        )


CASES: tuple[Case, ...] = (
    # public
    read("live", public=True),
    read("ready", public=True),
    read("login", _login, scoped=False, public=True),
    # every principal, own scope / other scope
    read("me", tokens=lambda w, who: [] if who in SEES_B else [A]),
    read("list_projects", tokens=each_visible(lambda w, p: p)),
    read("get_project", project_path),
    read("list_project_permits", project_path),
    read("list_project_enterprises", project_path),
    read("list_enterprises", tokens=each_visible(lambda w, p: GC[p])),
    read("get_enterprise", lambda w, p: Req(params={"uscc": GC[p]})),
    read("list_project_workers", project_path),
    read("list_project_devices", project_path),
    read("list_project_attendance", project_path),
    read("series_catalog", project_path),
    read("project_dashboard", project_path),
    read(
        "device_telemetry",
        lambda w, p: Req(params={"device_id": DEVICE[p]}, query={"metric": METRIC}),
    ),
    read("project_bim", project_path, bim=True),
    read("bim_manifest", project_path, bim=True),
    read(
        "storey_glb",
        lambda w, p: Req(params={"project_id": p, "storey_id": w.storey[p]}),
        bim=True,
    ),
    read("bim_placements", project_path, bim=True),
    read("list_alerts", tokens=each_visible(lambda w, p: w.alert[p], lambda w, p: w.overdue[p])),
    Case(
        op="list_alerts",
        variant="project=B",
        target=lambda w, p: Req(query={"project": B}),
        scoped=False,
        tokens=lambda w, who: [w.alert[B]] if who in SEES_B else [],
    ),
    read("list_overdue", tokens=each_visible(lambda w, p: w.overdue[p])),
    Case(
        op="list_overdue",
        variant="project=B",
        target=lambda w, p: Req(query={"project": B}),
        scoped=False,
        tokens=lambda w, who: [w.overdue[B]] if who in SEES_B else [],
    ),
    read("get_alert", lambda w, p: Req(params={"alert_id": w.alert[p]})),
    read("list_evidence", lambda w, p: Req(params={"alert_id": w.alert[p]})),
    read(
        "get_evidence",
        lambda w, p: Req(params={"alert_id": w.alert[p], "evidence_id": w.evidence[p]}),
        allowed=NOT_KEYS,  # photos never leave through API keys
    ),
    read("alert_trends", check=_trend_count),
    read("risk_ranking", tokens=each_visible(lambda w, p: p)),
    read("list_rules", tokens=each_visible(lambda w, p: f"rule of {p}")),
    read(
        "rule_history",
        lambda w, p: Req(query={"key": RULE_KEY}),
        scoped=False,
        tokens=each_visible(lambda w, p: f"rule of {p}"),
    ),
    read("get_zone_requirements", project_path),
    read("get_enterprise_credit", lambda w, p: Req(params={"uscc": GC[p]})),
    read("get_worker_credit", lambda w, p: Req(params={"person_id": PERSON[p]})),
    read("list_users", allowed=ADMIN),
    read("list_api_keys", allowed=ADMIN),
    read("list_audit", allowed=ADMIN),
    # writes
    write("upload_bim", _upload, SITE_SIDE, bim=True),
    write("acknowledge_alert", _alert(OPEN, note="seen"), SITE_SIDE),
    write(
        "assign_alert",
        _alert(
            ACK,
            responsible="foreman Li",
            deadline=(datetime.now(UTC) + timedelta(days=7)).isoformat(),
        ),
        SITE_SIDE,
    ),
    write("resolve_alert", _resolve, SITE_SIDE),
    write("close_alert", _alert(RES, note="verified"), VERIFIERS),
    write("reopen_alert", _alert(RES, note="still loose"), VERIFIERS),
    write("correlate_alert", _alert(OPEN), EDITORS),
    write("put_rule_change", _put_rule, EDITORS, variant="project"),
    write("put_rule_change", _put_device_rule, EDITORS, variant="device"),
    write("put_rule_change", _put_kind_rule, CITY_WIDE, variant="kind", scoped=False),
    write("delete_rule_by_id", _delete_rule, EDITORS, variant="project"),
    write("delete_rule_by_id", _delete_kind_rule, CITY_WIDE, variant="kind", scoped=False),
    write(
        "put_zone_requirements",
        lambda w, p: Req(
            params={"project_id": p},
            json=[{"zone": "crane", "certificate_type": "special_operations:signaller"}],
        ),
        EDITORS,
    ),
    write(
        "delete_zone_requirements",
        lambda w, p: Req(params={"project_id": p}, query={"zone": f"zone-{NAME[p].lower()}"}),
        EDITORS,
    ),
    write(
        "add_credit_record", _record("enterprise"), CREDIT_WRITERS, variant="enterprise", other=422
    ),
    write("add_credit_record", _record("person"), CREDIT_WRITERS, variant="person", other=422),
    write("add_credit_blacklist", _blacklist, CREDIT_WRITERS, other=422),
    write("edit_credit_blacklist", _edit_blacklist, CREDIT_WRITERS),
    read("get_worker_face_enrolment", _face, allowed=roles("admin", "regulator", "officer")),
    write(
        "enrol_worker_face",
        _enrol,
        SITE_SIDE,
        # without the face models (503) or with a photo that is no face (422) it is refused
        # after the scope check: authorization passed
        passed=lambda r: r.status_code in (422, 503),
    ),
    write(
        "remove_worker_face",
        _face,
        SITE_SIDE,
        passed=lambda r: r.status_code == 404 and "face enrolment" in r.text,
    ),
    write("add_user", _add_user, ADMIN, scoped=False),
    write(
        "edit_user",
        lambda w, p: Req(params={"user_id": w.user_ids["officer"]}, json={"display_name": "Li"}),
        ADMIN,
        scoped=False,
    ),
    write("create_key", _new_key, ADMIN, scoped=False),
    write("revoke_api_key", _revoke_key, ADMIN, scoped=False),
    # emergency: incidents
    write(
        "grade_incident_figures",
        lambda w, p: Req(json={"deaths": 1, "serious_injuries": 2, "direct_loss_yuan": 1e5}),
        EVERYONE,
        scoped=False,
    ),
    write("report_incident", lambda w, p: Req(json=incident_in(p)), SITE_SIDE),
    write(
        "register_incident_notice",
        lambda w, p: Req(json={**incident_in(p), "note": "heard on the radio"}),
        MANAGERS,
    ),
    write(
        "report_incident_follow_up",
        lambda w, p: Req(
            params={"incident_id": w.incident[p]}, json={"deaths": 1, "note": "died in hospital"}
        ),
        EDITORS,
    ),
    read("list_incidents", tokens=each_visible(lambda w, p: f"{NAME[p]} fall from the hoist")),
    Case(
        op="list_incidents",
        variant="project=B",
        target=lambda w, p: Req(query={"project": B}),
        scoped=False,
        tokens=lambda w, who: ["zulu fall"] if who in SEES_B else [],
    ),
    read(
        "list_late_incident_reports",
        tokens=each_visible(lambda w, p: f"{NAME[p]} fall from the hoist"),
    ),
    read("get_incident", _incident),
    # emergency: warnings
    write("issue_warning", lambda w, p: Req(json=warning_in(p)), MANAGERS),
    read("list_warnings", tokens=each_visible(lambda w, p: f"{NAME[p]} gale warning")),
    Case(
        op="list_warnings",
        variant="project=B",
        target=lambda w, p: Req(query={"project": B}),
        scoped=False,
        tokens=lambda w, who: ["zulu gale warning"] if who in SEES_B else [],
    ),
    read(
        "list_warnings_awaiting_acknowledgement",
        tokens=each_visible(lambda w, p: f"{NAME[p]} gale warning"),
    ),
    read("get_warning", _param("warning_id", lambda w: w.warning)),
    write("acknowledge_warning", _fresh_warning({"note": "cranes stopped"}), SITE_SIDE),
    write("cancel_warning", _fresh_warning({"reason": "the wind dropped"}), MANAGERS),
    # emergency: duty rosters (a regulator's office is everyone's to read, whatever district)
    write(
        "put_project_duty_roster",
        lambda w, p: Req(params={"project_id": p}, json=roster_in(f"{NAME[p]} office")),
        SITE_SIDE,
    ),
    read("get_project_duty_roster", project_path),
    read("who_is_on_duty_for_project", project_path),
    write(
        "put_district_duty_roster",
        lambda w, p: Req(params={"district": DISTRICT[p]}, json=roster_in("district office")),
        MANAGERS,
        other=403,  # a district regulator keeps its own district's roster only
    ),
    write(
        "put_district_duty_roster",
        lambda w, p: Req(params={"district": "city"}, json=roster_in("city office")),
        CITY_WIDE,
        variant="city",
        scoped=False,
    ),
    read(
        "get_district_duty_roster",
        lambda w, p: Req(params={"district": D2}),
        scoped=False,
        variant="another district",
    ),
    read("get_district_duty_roster", lambda w, p: Req(params={"district": "city"}), scoped=False),
    read(
        "who_is_on_duty_for_district",
        lambda w, p: Req(params={"district": D2}),
        scoped=False,
        variant="another district",
    ),
    # spot checks: the inspector pool
    write(
        "create_inspector",
        lambda w, p: Req(
            json={
                "id": f"ins-{uuid.uuid4().hex[:8]}",
                "name": "Inspector Zhao",
                "district_code": DISTRICT[p],
            }
        ),
        MANAGERS,
        other=403,  # a district regulator adds inspectors of its district only
    ),
    read("list_inspectors", allowed=MANAGERS, tokens=each_visible(lambda w, p: INSPECTOR[p])),
    write(
        "add_inspector_affiliation",
        lambda w, p: Req(
            params={"inspector_id": INSPECTOR[p]}, json={"uscc": GC[p], "note": "former employer"}
        ),
        MANAGERS,
    ),
    # spot checks: draws (A's published, B's not) and their publication
    write(
        "create_spot_check_draw",
        lambda w, p: Req(json={**DRAW_PARAMS, "title": "a round", "district": DISTRICT[p]}),
        MANAGERS,
        other=403,  # a district regulator draws in its district only
    ),
    read("list_spot_check_draws", tokens=_draw_tokens, check=_no_sealed_draws),
    read("list_published_spot_check_results", tokens=lambda w, who: [A, INSPECTOR[A]]),
    read("get_spot_check_draw", _param("draw_id", lambda w: w.draw)),
    read(
        "get_spot_check_draw",
        _param("draw_id", lambda w: w.sealed),
        variant="unpublished",
        allowed=MANAGERS,
        refused=404,  # before publication a draw is absent to all but those who manage it
    ),
    read("verify_spot_check_draw", _param("draw_id", lambda w: w.draw)),
    read(
        "verify_spot_check_draw",
        _param("draw_id", lambda w: w.sealed),
        variant="unpublished",
        allowed=MANAGERS,
        refused=404,
    ),
    write("publish_spot_check_draw", _fresh_draw, MANAGERS),
    # spot checks: inspections, findings, photos, rectification orders
    write("create_inspection", _new_inspection, MANAGERS),
    read("list_inspections", tokens=each_visible(lambda w, p: f"{NAME[p]} Tower")),
    read("get_inspection", _param("inspection_id", lambda w: w.inspection)),
    read(
        "get_inspection_photo",
        lambda w, p: Req(params={"inspection_id": w.inspection[p], "photo_id": w.photo[p]}),
        allowed=NOT_KEYS,
    ),
    write(
        "add_inspection_finding",
        lambda w, p: Req(params={"inspection_id": w.inspection[p]}, json=finding_in(p)),
        MANAGERS,
    ),
    write("upload_inspection_photo", _inspection_photo, MANAGERS),
    write("confirm_inspection_finding", _confirm, MANAGERS),
    write(
        "report_rectification_done",
        _order(reported=False, body={"note": "rails back up, photos attached"}),
        SITE_SIDE,
    ),
    write(
        "verify_rectification_order",
        _order(reported=True, body={"accept": True, "note": "checked on site"}),
        MANAGERS,
    ),
    read(
        "list_rectification_orders",
        tokens=each_visible(lambda w, p: f"{NAME[p]} rails back up"),
    ),
    # data sharing: users (no grant) read every dataset of their scope; the matrix's key has
    # a grant without resources, which reads every dataset (as keys issued before resources)
    read("get_my_sharing_grant", tokens=lambda w, who: [] if who in SEES_B else [A]),
    *_sharing_cases(),
    read("get_data_quality_report", tokens=each_visible(lambda w, p: DEVICE[p])),
)
READS = tuple(c for c in CASES if not c.write)
WRITES = tuple(c for c in CASES if c.write)


def expected(case: Case, who: str, pid: str) -> set[int] | None:
    """The statuses allowed for the call; None: any success (2xx)."""
    if who == ANONYMOUS:
        return None if case.public else {401}
    if case.public:
        return None
    if who not in case.allowed:
        return {case.refused} if sees(who, pid) else {case.refused, 404}
    if sees(who, pid):
        return None
    return {case.other}


def describe(want: set[int] | None) -> str:
    return "2xx" if want is None else "/".join(map(str, sorted(want)))


# --- the API document -----------------------------------------------------------------------------


@functools.cache
def _operations(settings_home: str) -> dict[str, tuple[str, str]]:
    """operationId → (method, path) of every operation in the OpenAPI document."""
    from server.app import create_app

    doc = create_app(Settings(home=Path(settings_home)), "postgresql:///unused", stream=False)
    ops: dict[str, tuple[str, str]] = {}
    for path, item in doc.openapi()["paths"].items():
        for method, op in item.items():
            ops[op["operationId"]] = (method.upper(), path)
    return ops


@pytest.fixture
def operations(tmp_path: Path) -> dict[str, tuple[str, str]]:
    return _operations(str(tmp_path))


def test_every_operation_of_the_api_is_in_the_matrix(
    operations: dict[str, tuple[str, str]],
) -> None:
    covered = {c.op for c in CASES}
    missing = sorted(set(operations) - covered)
    assert not missing, (
        f"operations without authorization expectations (add them to CASES): {missing}"
    )
    stale = sorted(covered - set(operations))
    assert not stale, f"CASES name operations the API no longer has: {stale}"
    for c in CASES:
        method, _ = operations[c.op]
        assert c.write or c.public or method == "GET", f"{c.name}: a {method} listed as a read"


# --- calling and judging --------------------------------------------------------------------------


@dataclass
class Judge:
    w: World
    client: TestClient
    ops: dict[str, tuple[str, str]]
    mismatches: list[tuple[str, str, str, str, str, str]] = field(default_factory=list)
    calls: int = 0

    def call(self, case: Case, who: str, pid: str, req: Req) -> httpx.Response:
        method, template = self.ops[case.op]
        self.calls += 1
        return self.client.request(
            method,
            template.format(**req.params),
            params=req.query or None,
            json=req.json,
            data=req.data,
            files=req.files,
            headers=self.w.headers[who],
        )

    def fail(self, case: Case, who: str, pid: str, want: str, r: httpx.Response, why: str) -> None:
        scope = "-" if not case.scoped else ("own" if pid == A else "other")
        self.mismatches.append(
            (case.name, who, scope, want, str(r.status_code), f"{why} {r.text[:100]!r}")
        )

    def judge(self, case: Case, who: str, pid: str, req: Req, r: httpx.Response) -> bool:
        """Record every way the response is wrong; True when the status was as expected."""
        want = expected(case, who, pid)
        if want is None:
            ok = 200 <= r.status_code < 300 or bool(case.passed and case.passed(r))
        else:
            ok = r.status_code in want
        if not ok:
            self.fail(case, who, pid, describe(want), r, "status")
        ctype = r.headers.get("content-type", "")
        text = r.content.decode("utf-8", "replace").lower() if "image" not in ctype else ""
        for pid_ in (A, B):
            if ID_NUMBER[pid_].lower() in text:
                self.fail(case, who, pid, describe(want), r, "full ID number in the response")
        if who not in SEES_B and who != ANONYMOUS:
            asked = req.text()
            leaked = [t for t in self.w.leak_tokens() if t in text and t not in asked]
            if leaked:
                self.fail(case, who, pid, describe(want), r, f"leaks other scope {leaked}")
        if ok and want is None and case.tokens is not None and who != ANONYMOUS:
            absent = [t for t in case.tokens(self.w, who) if t.lower() not in text]
            if absent:
                self.fail(case, who, pid, describe(want), r, f"own ids missing {absent}")
        if ok and want is None and case.check is not None and who != ANONYMOUS:
            why = case.check(self.w, who, r)
            if why:
                self.fail(case, who, pid, describe(want), r, why)
        return ok

    def report(self) -> str:
        head = ("operation", "principal", "scope", "expected", "got", "why")
        rows = [head, *self.mismatches]
        widths = [max(len(r[i]) for r in rows) for i in range(5)]
        return "\n".join(
            "  ".join(c.ljust(widths[i]) if i < 5 else c for i, c in enumerate(r)) for r in rows
        )


_SNAPSHOT = (
    ("alerts", "*"),
    ("alert_transitions", "*"),
    ("evidence", "id, project_id, device_id"),
    ("alert_rules", "*"),
    ("alert_rule_history", "*"),
    ("zone_certificate_requirements", "*"),
    ("credit_records", "*"),
    ("credit_blacklist", "*"),
    ("credit_blacklist_changes", "*"),
    ("enterprises", "*"),
    ("users", "*"),
    ("user_projects", "*"),
    ("api_keys", "id, name, grant_spec, expires_at, revoked_at"),
    ("bim_models", "id, project_id, version"),
    ("face_enrolments", "*"),
    ("emergency_incidents", "*"),
    ("emergency_incident_reports", "*"),
    ("emergency_warnings", "*"),
    ("emergency_warning_targets", "*"),
    ("emergency_warning_acks", "*"),
    ("emergency_duty_offices", "*"),
    ("emergency_duty_contacts", "*"),
    ("emergency_duty_shifts", "*"),
    ("inspectors", "*"),
    ("inspector_affiliations", "*"),
    ("spot_check_draws", "id, title, district_code, seed, published_at"),
    ("spot_check_results", "*"),
    ("spot_check_assignments", "*"),
    ("inspections", "*"),
    ("inspection_inspectors", "*"),
    ("inspection_findings", "*"),
    ("inspection_photos", "id, inspection_id, finding_id, caption"),
    ("rectification_orders", "*"),
)
_SNAPSHOT_SQL = "SELECT " + ", ".join(
    f"(SELECT md5(coalesce(string_agg(x::text, '|' ORDER BY x::text), ''))"
    f" FROM (SELECT {cols} FROM {table}) x)"
    for table, cols in _SNAPSHOT
)


def snapshot(db: psycopg.Connection) -> tuple[Any, ...]:
    row = db.execute(_SNAPSHOT_SQL).fetchone()
    assert row is not None
    return tuple(row)


def changed(before: tuple[Any, ...], after: tuple[Any, ...]) -> list[str]:
    return [t for (t, _), x, y in zip(_SNAPSHOT, before, after, strict=True) if x != y]


# --- fixtures -------------------------------------------------------------------------------------


@pytest.fixture
def fast_users(monkeypatch: pytest.MonkeyPatch) -> None:
    # every seeded account has the same password: hash it once (argon2 is slow on purpose)
    monkeypatch.setattr(users_module, "hash_password", lambda _: _password_hash())


@pytest.fixture
def judge(
    client: TestClient,
    db: psycopg.Connection,
    settings: Settings,
    operations: dict[str, tuple[str, str]],
    fast_users: None,
    request: pytest.FixtureRequest,
) -> Iterator[Judge]:
    bim = getattr(request, "param", None) == "bim"
    yield Judge(build_world(db, settings, bim=bim), client, operations)


# --- the tests ------------------------------------------------------------------------------------


@pytest.mark.parametrize("judge", ["bim"], indirect=True)
def test_reads_every_principal_own_and_other_scope(judge: Judge) -> None:
    w = judge.w
    skipped = []
    for case in READS:
        if case.bim and not w.storey:
            skipped.append(case.name)
            continue
        for who in PRINCIPALS:
            for pid in (A, B) if case.scoped else (A,):
                req = case.request(w, pid)
                judge.judge(case, who, pid, req, judge.call(case, who, pid, req))
    # anonymous callers: 401 everywhere but the public operations, and nothing changes
    for case in CASES:
        if case.bim and not w.storey:
            continue
        req = case.request(w, A)
        prepared = snapshot(w.db)
        judge.judge(case, ANONYMOUS, A, req, judge.call(case, ANONYMOUS, A, req))
        assert changed(prepared, snapshot(w.db)) == [], case.name
    assert not judge.mismatches, (
        f"{len(judge.mismatches)} of {judge.calls} calls not as expected:\n{judge.report()}"
    )
    if skipped:
        pytest.skip(f"no IFC file on this machine: {skipped} not checked")


@pytest.mark.parametrize("case", WRITES, ids=lambda c: c.name)
def test_writes_refused_callers_change_nothing_allowed_ones_succeed(
    case: Case, judge: Judge
) -> None:
    if case.bim and _ifc() is None:
        pytest.skip("no IFC file on this machine")
    w = judge.w
    calls = [(who, pid) for who in PRINCIPALS for pid in ((A, B) if case.scoped else (A,))]
    # refused first (403, then out of scope), allowed last: their changes disturb nothing
    calls.sort(key=lambda c: {403: 0, 404: 1, 422: 1}.get(min(expected(case, *c) or {999}), 2))
    for who, pid in calls:
        req = case.request(w, pid)
        before = snapshot(w.db)
        ok = judge.judge(case, who, pid, req, judge.call(case, who, pid, req))
        if ok and expected(case, who, pid) is not None:
            moved = changed(before, snapshot(w.db))
            if moved:
                judge.mismatches.append(
                    (case.name, who, "own" if pid == A else "other", "-", "-", f"changed {moved}")
                )
    assert not judge.mismatches, (
        f"{len(judge.mismatches)} of {judge.calls} calls not as expected:\n{judge.report()}"
    )
