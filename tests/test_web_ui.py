"""The web UI in a real browser (issue 7): the built single-page app (web/dist) served by the
real server, driven through Debian's chromium with Playwright.

The alert is made the real way: an edge alert and its evidence photo published over MQTT, the
ingest worker storing the photo and the alert engine opening the alert, whose outbox entry
reaches the officer's open inbox over the WebSocket without a reload.

Build the UI first: ``npm --prefix web ci && npm --prefix web run build``. Screenshots go to
``$SMARTSITE_SCREENSHOTS`` (else the test's tmp_path); the path is printed."""

from __future__ import annotations

import io
import os
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import uvicorn
from api_helpers import PASSWORD, project, user
from conftest import wait_until
from mqtt_helpers import publish_raw

from alerts.engine import AlertEngine
from edge.simulator import register_site
from smartsite.embedded import free_port
from smartsite.protocol.messages import EdgeAlert, Reading, Telemetry, encode
from smartsite.protocol.topics import Kind, build
from smartsite.settings import Settings

WEB_DIST = Path(__file__).resolve().parent.parent / "web" / "dist"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
PROJECT = "P-WEBUI"
OTHER = "P-WEBOTHER"
GW = f"{PROJECT}-gw"
CRANE = f"{PROJECT}-towercrane-001"
IFC = Path(__file__).resolve().parents[2] / "shared" / "datasets" / "ifc"
HOUSE = IFC / "ThatOpen_engine_web-ifc" / "tests" / "ifcfiles" / "public" / "IfcOpenHouse_IFC4.ifc"
TIMEOUT_MS = 20_000

sync_api = pytest.importorskip("playwright.sync_api")


def _need_dist() -> None:
    if not (WEB_DIST / "index.html").is_file():
        pytest.fail(
            "web/dist is missing: build the web UI first with "
            "`npm --prefix web ci && npm --prefix web run build`",
            pytrace=False,
        )
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: apt-get install chromium", pytrace=False)


@contextmanager
def serve(settings: Settings, pg_url: str) -> Iterator[str]:
    """The real server (API, live stream, web UI) on a free port, in a background thread."""
    from server.app import create_app

    port = free_port()
    config = uvicorn.Config(
        create_app(settings, pg_url),
        host="127.0.0.1",
        port=port,
        log_level="warning",
        timeout_graceful_shutdown=2,
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name="web-ui-server", daemon=True)
    thread.start()
    wait_until(lambda: server.started, timeout=30, what="the server to start")
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=30)
        assert not thread.is_alive(), "the server did not stop"


@pytest.fixture
def shots(tmp_path: Path) -> Path:
    d = Path(os.environ.get("SMARTSITE_SCREENSHOTS") or tmp_path / "screenshots")
    d.mkdir(parents=True, exist_ok=True)
    print(f"\nscreenshots: {d}")
    return d


@pytest.fixture
def browser() -> Iterator[object]:
    _need_dist()
    with sync_api.sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield b
        finally:
            b.close()


def _jpeg(text: str, color: tuple[int, int, int]) -> bytes:
    from PIL import Image, ImageDraw

    img = Image.new("RGB", (320, 240), color)
    ImageDraw.Draw(img).text((20, 100), text, fill=(255, 255, 255))
    out = io.BytesIO()
    img.save(out, "JPEG")
    return out.getvalue()


def _place_gateway_on_a_wall(db) -> str | None:  # type: ignore[no-untyped-def]
    """Import a small IFC model and place the camera gateway on a wall, so that the alert's
    correlation has a BIM element to highlight (None: the model is not on this machine)."""
    if not HOUSE.is_file():
        return None
    from bim import placement, store
    from bim.models import DevicePlacementIn

    model = store.import_model(db, PROJECT, HOUSE).model
    row = db.execute(
        "SELECT global_id FROM bim_elements WHERE model_id = %s AND ifc_class LIKE 'IfcWall%%'"
        " AND storey_id IS NOT NULL ORDER BY global_id LIMIT 1",
        (model.id,),
    ).fetchone()
    assert row is not None
    placement.place_device(
        db, DevicePlacementIn(project_id=PROJECT, device_id=GW, target_id=row[0])
    )
    return str(row[0])


def _crane_readings(broker, prefix: str) -> None:  # type: ignore[no-untyped-def]
    now = datetime.now(UTC)
    msgs = [
        (
            build(prefix, PROJECT, GW, Kind.TELEMETRY),
            encode(
                Telemetry(
                    device=GW,
                    seq=100 + i,
                    ts=now - timedelta(seconds=10 * (8 - i)),
                    readings=[Reading(metric="moment_pct", value=v, unit="%", source=CRANE)],
                )
            ),
        )
        for i, v in enumerate([40, 55, 62, 70, 66, 58, 61, 64])
    ]
    publish_raw(broker.endpoint, msgs)


def _login(browser, base: str, username: str, *, phone: bool = False):  # type: ignore[no-untyped-def]
    """A fresh browser context (its own storage) logged in as ``username``."""
    size = {"width": 390, "height": 844} if phone else {"width": 1280, "height": 900}
    ctx = browser.new_context(locale="en-US", viewport=size)
    ctx.set_default_timeout(TIMEOUT_MS)
    page = ctx.new_page()
    page.goto(base + "/")
    page.get_by_test_id("login-username").fill(username)
    page.get_by_test_id("login-password").fill(PASSWORD)
    page.get_by_test_id("login-submit").click()
    page.get_by_test_id("sign-out").wait_for()
    return ctx, page


def _act(page, verb: str, *, note: str = "", fill: Callable[[object], None] | None = None) -> None:  # type: ignore[no-untyped-def]
    page.get_by_test_id(f"action-{verb}").click()
    form = page.get_by_test_id(f"form-{verb}")
    form.get_by_test_id("action-note").fill(note)
    if fill:
        fill(form)
    form.get_by_test_id("action-submit").click()
    form.wait_for(state="detached")


def _status_is(page, status: str) -> None:  # type: ignore[no-untyped-def]
    page.locator(f'[data-testid="alert-detail"][data-status="{status}"]').wait_for()


def test_officer_gets_a_live_alert_resolves_it_and_the_regulator_verifies(  # type: ignore[no-untyped-def]
    db, pg_url, broker, alert_settings, start_worker, browser, shots, tmp_path
) -> None:
    register_site(pg_url, PROJECT, 3)
    project(db, OTHER, district="110106")
    user(db, "officer1", "officer", display_name="Officer One", projects=[PROJECT])
    user(db, "officer2", "officer", display_name="Officer Two", projects=[OTHER])
    user(db, "regulator1", "regulator", display_name="Regulator")
    wall = _place_gateway_on_a_wall(db)
    start_worker(pg_url, broker.endpoint)
    engine = AlertEngine(pg_url, broker.endpoint, alert_settings).start()
    try:
        engine.wait_connected()
        with serve(alert_settings, pg_url) as base:
            _scenario(db, base, broker, alert_settings, browser, shots, tmp_path, wall)
    finally:
        engine.stop()


def _scenario(db, base, broker, settings, browser, shots: Path, tmp_path: Path, wall) -> None:  # type: ignore[no-untyped-def]
    _crane_readings(broker, settings.topic_prefix)
    # --- the officer's inbox is open and listening ----------------------------------------
    ctx, page = _login(browser, base, "officer1")
    page.wait_for_url("**/inbox")
    page.locator('[data-testid="live-status"][data-state="open"]').wait_for()
    no_hard_hat = page.locator('[data-testid="alert-item"][data-rule="no_hard_hat"]')
    assert no_hard_hat.count() == 0
    page.evaluate("window.__noReload = true")

    # --- the edge publishes a no-hard-hat alert and its snapshot over MQTT ------------------
    prefix, evidence = settings.topic_prefix, "ev-webui-1"
    photo = _jpeg("no hard hat", (200, 40, 40))
    publish_raw(broker.endpoint, [(build(prefix, PROJECT, GW, Kind.EVIDENCE, evidence), photo)])
    wait_until(
        lambda: (
            db.execute("SELECT 1 FROM evidence WHERE id = %s", (evidence,)).fetchone() is not None
        ),
        what="the evidence stored",
    )
    alert_msg = EdgeAlert(
        device=GW,
        seq=1,
        ts=datetime.now(UTC),
        rule="no_hard_hat",
        severity="warning",
        camera="cam-1",
        zone="gate",
        evidence_id=evidence,
        detail="worker without hard hat at the gate",
    )
    publish_raw(broker.endpoint, [(build(prefix, PROJECT, GW, Kind.ALERT), encode(alert_msg))])

    # --- it arrives without a reload ------------------------------------------------------
    item = no_hard_hat
    item.first.wait_for()
    assert item.count() == 1
    assert page.evaluate("window.__noReload") is True, "the page was reloaded"
    alert_id = item.first.get_attribute("data-alert-id")
    assert alert_id
    row = db.execute("SELECT project_id, status FROM alerts WHERE id = %s", (alert_id,)).fetchone()
    assert row == (PROJECT, "open")
    page.screenshot(path=str(shots / "1-officer-inbox-live.png"))

    # --- its evidence photo ---------------------------------------------------------------
    item.first.click()
    detail = page.get_by_test_id("alert-detail")
    detail.wait_for()
    thumb = page.locator('[data-testid="evidence-thumb"][data-kind="edge"]')
    thumb.click()
    full = page.get_by_test_id("evidence-full")
    full.wait_for()
    wait_until(
        lambda: full.evaluate("i => i.complete && i.naturalWidth") == 320,
        timeout=10,
        what="the evidence photo shown",
    )
    page.screenshot(path=str(shots / "2-evidence-photo.png"))
    page.get_by_test_id("modal-close").click()

    # --- acknowledge, assign, resolve with a note and a photo -----------------------------
    _act(page, "acknowledge", note="on my way")
    _status_is(page, "acknowledged")
    _act(
        page,
        "assign",
        note="fix today",
        fill=lambda f: f.get_by_test_id("action-responsible").fill("Foreman Wang"),  # type: ignore[attr-defined]
    )
    _status_is(page, "rectifying")
    fixed = tmp_path / "fixed.jpg"
    fixed.write_bytes(_jpeg("hard hat on", (40, 160, 60)))
    _act(
        page,
        "resolve",
        note="worker now wears a hard hat",
        fill=lambda f: f.get_by_test_id("action-photo").set_input_files(str(fixed)),  # type: ignore[attr-defined]
    )
    _status_is(page, "resolved")
    page.locator('[data-testid="evidence-thumb"][data-kind="resolution"]').wait_for()
    page.screenshot(path=str(shots / "3-officer-resolved.png"))
    got = db.execute(
        "SELECT status, responsible, resolution_note FROM alerts WHERE id = %s", (alert_id,)
    ).fetchone()
    assert got == ("resolved", "Foreman Wang", "worker now wears a hard hat")
    # the officer may not verify their own rectification
    assert page.get_by_test_id("action-close").count() == 0
    ctx.close()

    # --- the regulator verifies (closes) it -------------------------------------------------
    ctx, page = _login(browser, base, "regulator1")
    page.wait_for_url("**/overview")
    page.get_by_test_id("risk-row").first.wait_for()
    page.get_by_test_id("project-row").first.wait_for()
    page.screenshot(path=str(shots / "4-regulator-overview.png"))
    page.get_by_test_id("nav-inbox").click()
    page.locator(f'[data-testid="alert-item"][data-alert-id="{alert_id}"]').click()
    _status_is(page, "resolved")
    assert page.get_by_test_id("action-reopen").count() == 1
    _act(page, "close", note="checked on site")
    _status_is(page, "closed")
    page.screenshot(path=str(shots / "5-regulator-verified.png"))
    assert db.execute("SELECT status FROM alerts WHERE id = %s", (alert_id,)).fetchone() == (
        "closed",
    )
    # the project's dashboard: the crane's chart with its rule lines, permits, and the BIM
    # storey with the alert's wall highlighted
    page.goto(f"{base}/projects/{PROJECT}?alert={alert_id}")
    page.get_by_test_id("project-page").wait_for()
    page.get_by_test_id("permits").wait_for()
    page.locator(f'[data-testid="sensor-chart"][data-device="{CRANE}"] canvas').wait_for()
    if wall is not None:
        page.get_by_test_id("bim-focus").wait_for()
        page.locator('[data-testid="bim-canvas"][data-loaded="1"]').wait_for(timeout=60_000)
        assert int(page.get_by_test_id("bim-canvas").get_attribute("data-highlighted")) >= 1
    time.sleep(1)  # let the charts finish their animation
    page.screenshot(path=str(shots / "6-project-dashboard.png"), full_page=True)
    ctx.close()

    # --- another project's officer sees nothing of it ---------------------------------------
    ctx, page = _login(browser, base, "officer2", phone=True)
    page.wait_for_url("**/inbox")
    page.get_by_test_id("filter-status").select_option("closed")
    page.get_by_test_id("inbox-empty").wait_for()
    assert page.get_by_test_id("alert-item").count() == 0
    page.goto(f"{base}/inbox?alert={alert_id}")
    page.get_by_test_id("alert-detail").get_by_text("not found").wait_for()
    assert page.get_by_test_id("evidence-thumb").count() == 0
    page.screenshot(path=str(shots / "7-other-officer-sees-nothing.png"))
    ctx.close()


def test_chinese_language_switch_changes_labels(db, pg_url, settings, browser, shots) -> None:  # type: ignore[no-untyped-def]
    project(db, OTHER)
    user(db, "officer2", "officer", projects=[OTHER])
    with serve(settings, pg_url) as base:
        ctx = browser.new_context(locale="en-US")
        ctx.set_default_timeout(TIMEOUT_MS)
        page = ctx.new_page()
        page.goto(base + "/")
        assert page.get_by_test_id("login-submit").inner_text() == "Sign in"
        page.get_by_test_id("lang-switch").select_option("zh")
        assert page.get_by_test_id("login-submit").inner_text() == "登录"
        assert page.get_by_test_id("login-title").inner_text() == "智慧工地监管"
        page.reload()  # the choice is kept
        assert page.get_by_test_id("login-submit").inner_text() == "登录"
        page.get_by_test_id("login-username").fill("officer2")
        page.get_by_test_id("login-password").fill(PASSWORD)
        page.get_by_test_id("login-submit").click()
        page.get_by_test_id("nav-inbox").wait_for()
        assert page.get_by_test_id("nav-inbox").inner_text() == "预警处置"
        assert page.get_by_test_id("sign-out").inner_text() == "退出登录"
        page.screenshot(path=str(shots / "8-chinese.png"))
        page.get_by_test_id("lang-switch").select_option("en")
        assert page.get_by_test_id("nav-inbox").inner_text() == "Alert inbox"
        ctx.close()
