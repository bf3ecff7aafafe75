"""The platform modules' pages in a real browser (issues 7 and 8): early warnings with
per-project acknowledgement, an incident report graded per Order 493, a random spot-check
draw published to everyone, and a worker's face enrolled with consent from a real photo and
removed again.

The same set-up as tests/test_web_ui.py (its server thread, browser and screenshot fixtures):
the built single-page app (web/dist) served by the real server, Debian's chromium driven with
Playwright. Build the UI first: ``npm --prefix web ci && npm --prefix web run build``.
Screenshots go to ``$SMARTSITE_SCREENSHOTS`` (else the test's tmp_path)."""

from __future__ import annotations

from pathlib import Path

import pytest
import test_web_ui
from api_helpers import project, user
from test_web_ui import _login, serve

from smartsite.db.registry import PersonIn, upsert_person
from smartsite.identifiers import id_check_digit
from smartsite.secrets import secret_key
from smartsite.settings import Settings

A, B = "P-PLAT-A", "P-PLAT-B"
FACES = Path(__file__).resolve().parents[2] / "shared" / "datasets" / "faces"
OBAMA = FACES / "ageitgey_face_recognition" / "tests" / "test_images" / "obama.jpg"
OBAMA2 = FACES / "ageitgey_face_recognition" / "tests" / "test_images" / "obama2.jpg"
WORKER = "w-plat-1"

# tests/test_web_ui.py's fixtures: a headless chromium, the screenshot folder
browser = test_web_ui.browser
shots = test_web_ui.shots


def _id_number(serial: int) -> str:
    first17 = f"11010519900101{serial:03d}"
    return first17 + id_check_digit(first17)


@pytest.fixture
def world(db, settings: Settings):  # type: ignore[no-untyped-def]
    project(db, A, name="Tower A")
    project(db, B, name="Bridge B")
    for iid in ("I-1", "I-2", "I-3"):
        db.execute(
            "INSERT INTO inspectors (id, name, district_code) VALUES (%s, %s, %s)",
            (iid, f"Inspector {iid}", "110105"),
        )
    upsert_person(
        db, PersonIn(id=WORKER, name="Wang Wu", id_number=_id_number(7)), secret_key(settings)
    )
    db.execute("INSERT INTO project_workers (project_id, person_id) VALUES (%s, %s)", (A, WORKER))
    user(db, "reg1", "regulator", display_name="Regulator")
    user(db, "offa", "officer", display_name="Officer A", projects=[A])
    user(db, "admin1", "admin", display_name="Admin")
    return db


def test_warning_incident_spot_check_and_face_enrolment_pages(  # type: ignore[no-untyped-def]
    world, pg_url, settings, face_models_dir, browser, shots
) -> None:
    if not OBAMA.is_file():
        pytest.skip(f"{OBAMA} is missing (../shared/datasets/faces)")
    app_settings = settings.model_copy(update={"models_dir": face_models_dir})
    with serve(app_settings, pg_url) as base:
        _warning_acknowledged(world, base, browser, shots)
        _incident_graded(world, base, browser, shots)
        _spot_check_published(world, base, browser, shots)
        _face_enrolled_and_removed(world, base, browser, shots)
        _sharing_pages(world, base, browser, shots)


def _warning_acknowledged(db, base: str, browser, shots: Path) -> None:  # type: ignore[no-untyped-def]
    # --- the regulator warns projects A and B of strong wind --------------------------------
    ctx, page = _login(browser, base, "reg1")
    page.get_by_test_id("nav-emergency").click()
    page.get_by_test_id("tab-warnings").click()
    page.get_by_test_id("warning-new").click()
    form = page.get_by_test_id("warning-form")
    form.get_by_test_id("warning-kind").select_option("strong_wind")
    form.get_by_test_id("warning-level").select_option("orange")
    form.get_by_test_id("warning-title").fill("大风橙色预警")
    form.get_by_test_id("warning-text").fill("停止塔吊作业 stop tower-crane work")
    form.get_by_test_id("warning-target").select_option("projects")
    form.get_by_test_id(f"warning-project-{A}").check()
    form.get_by_test_id(f"warning-project-{B}").check()
    page.screenshot(path=str(shots / "p1-regulator-issues-warning.png"), full_page=True)
    form.get_by_test_id("warning-submit").click()
    detail = page.get_by_test_id("warning-detail")
    detail.locator('[data-project][data-acked="0"]').nth(1).wait_for()
    wid = int(page.url.rstrip("/").split("/")[-1])
    got = db.execute(
        "SELECT kind, level, target FROM emergency_warnings WHERE id = %s", (wid,)
    ).fetchone()
    assert got == ("strong_wind", "orange", "projects")
    ctx.close()

    # --- the officer of A sees it awaiting and acknowledges it (on a phone) ------------------
    ctx, page = _login(browser, base, "offa", phone=True)
    page.goto(f"{base}/emergency/warnings")
    awaiting = page.locator(f'[data-testid="awaiting"] [data-project="{A}"][data-warning="{wid}"]')
    awaiting.wait_for()
    assert page.locator(f'[data-testid="awaiting"] [data-project="{B}"]').count() == 0
    page.screenshot(path=str(shots / "p2-officer-awaiting-warning.png"), full_page=True)
    page.get_by_test_id("awaiting").get_by_role("link", name="大风橙色预警").click()
    page.get_by_test_id("ack-note").fill("cranes stopped and secured")
    page.get_by_test_id(f"ack-{A}").click()
    page.get_by_test_id("ack-done").wait_for()
    page.screenshot(path=str(shots / "p3-officer-acknowledged.png"), full_page=True)
    ctx.close()

    # --- the regulator sees A acknowledged and B still awaiting ------------------------------
    ctx, page = _login(browser, base, "reg1")
    page.goto(f"{base}/emergency/warnings/{wid}")
    page.locator(f'[data-testid="warning-detail"] [data-project="{A}"][data-acked="1"]').wait_for()
    page.locator(f'[data-testid="warning-detail"] [data-project="{B}"][data-acked="0"]').wait_for()
    assert "cranes stopped" in page.get_by_test_id("warning-detail").inner_text()
    page.screenshot(path=str(shots / "p4-regulator-sees-acknowledgement.png"), full_page=True)
    page.get_by_test_id("warning-back").click()
    page.locator(f'[data-testid="awaiting"] [data-project="{B}"][data-warning="{wid}"]').wait_for()
    assert page.locator(f'[data-testid="awaiting"] [data-project="{A}"]').count() == 0
    page.locator('[data-testid="warning-acks"][data-acked="1"][data-targets="2"]').wait_for()
    page.screenshot(path=str(shots / "p5-regulator-awaiting-list.png"), full_page=True)
    ctx.close()


def _incident_graded(db, base: str, browser, shots: Path) -> None:  # type: ignore[no-untyped-def]
    ctx, page = _login(browser, base, "offa")
    page.get_by_test_id("nav-emergency").click()
    page.get_by_test_id("incident-new").click()
    form = page.get_by_test_id("incident-form")
    form.get_by_test_id("incident-place").fill("tower crane 2, north side")
    form.get_by_test_id("incident-summary").fill("the crane's jib fell on the formwork crew")
    form.get_by_test_id("incident-deaths").fill("3")
    form.get_by_test_id("incident-measures").fill("site closed, rescue under way")
    page.locator('[data-testid="grade-preview-box"][data-grade="larger"]').wait_for()
    page.screenshot(path=str(shots / "p6-officer-incident-form.png"), full_page=True)
    form.get_by_test_id("incident-submit").click()
    detail = page.get_by_test_id("incident-detail")
    grade = detail.locator('[data-testid="grade"][data-grade="larger"]')
    grade.wait_for()
    assert "较大" in grade.get_by_test_id("grade-label").inner_text()
    assert "larger" in grade.get_by_test_id("grade-label").inner_text()
    reason = grade.get_by_test_id("grade-reason").inner_text()
    assert "deaths 3" in reason and "≥ 3" in reason, reason
    assert detail.get_by_test_id("deadline-status").get_attribute("data-status") == "on_time"
    assert detail.get_by_test_id("revision").count() == 1
    page.screenshot(path=str(shots / "p7-incident-graded.png"), full_page=True)
    row = db.execute("SELECT project_id, grade FROM emergency_incidents").fetchall()
    assert row == [(A, "larger")]

    # --- the officer keeps the project's duty roster; who is on duty now follows ------------
    page.get_by_test_id("tab-duty").click()
    page.locator('[data-testid="duty-project-office"]').get_by_text("No roster").wait_for()
    editor = page.get_by_test_id("roster-form")
    editor.get_by_test_id("roster-name").fill("Tower A duty office")
    editor.get_by_test_id("roster-phone").fill("010-1234")
    editor.get_by_test_id("contact-add").click()
    editor.get_by_test_id("contact-name").fill("Zhao Liu")
    editor.get_by_test_id("contact-phone").fill("138-0000-0000")
    editor.get_by_test_id("shift-add").click()  # every day, 08:00 to 08:00 the next day
    editor.get_by_test_id("shift-contact").select_option("Zhao Liu")
    editor.get_by_test_id("roster-save").click()
    on_duty = page.locator('[data-testid="duty-project-office"] [data-testid="on-duty"]')
    on_duty.wait_for()
    assert "Zhao Liu" in on_duty.inner_text()
    page.screenshot(path=str(shots / "p7b-officer-duty-roster.png"), full_page=True)
    ctx.close()


def _spot_check_published(db, base: str, browser, shots: Path) -> None:  # type: ignore[no-untyped-def]
    ctx, page = _login(browser, base, "reg1")
    page.get_by_test_id("nav-spot-checks").click()
    page.get_by_test_id("tab-draws").click()
    page.get_by_test_id("draw-open").click()
    form = page.get_by_test_id("draw-form")
    form.get_by_test_id("draw-title").fill("2026 Q2 safety round")
    form.get_by_test_id("draw-k").fill("1")
    form.get_by_test_id("draw-m").fill("2")
    form.get_by_test_id("draw-submit").click()
    loaded = page.locator('[data-testid="draw-loaded"][data-published="0"]')
    loaded.wait_for()
    draw_id = int(page.url.rstrip("/").split("/")[-1])
    seed = page.get_by_test_id("draw-seed").inner_text().strip()
    assert seed == str(
        db.execute("SELECT seed FROM spot_check_draws WHERE id = %s", (draw_id,)).fetchone()[0]
    )
    assert page.get_by_test_id("draw-result").count() == 1
    assert page.get_by_test_id("draw-candidate").count() == 2  # A and B, with their weights
    page.get_by_test_id("draw-verify").click()
    page.locator('[data-testid="draw-verification"][data-ok="1"]').wait_for()
    page.screenshot(path=str(shots / "p8-regulator-draw-verified.png"), full_page=True)
    page.get_by_test_id("draw-publish").click()
    page.locator('[data-testid="draw-loaded"][data-published="1"]').wait_for()
    drawn = (
        page.get_by_test_id("draw-result").locator("[data-project]").get_attribute("data-project")
    )
    assert drawn in (A, B)
    ctx.close()

    ctx, page = _login(browser, base, "offa", phone=True)
    page.get_by_role("button", name="menu").click()
    page.get_by_test_id("nav-spot-checks").click()
    row = page.locator(f'[data-testid="published-row"] [data-draw="{draw_id}"]')
    row.wait_for()
    assert row.get_attribute("data-project") == drawn
    assert "2026 Q2 safety round" in page.get_by_test_id("published").inner_text()
    page.screenshot(path=str(shots / "p9-officer-published-result.png"), full_page=True)
    ctx.close()


def _face_enrolled_and_removed(db, base: str, browser, shots: Path) -> None:  # type: ignore[no-untyped-def]
    ctx, page = _login(browser, base, "admin1")
    page.get_by_test_id("nav-admin").click()
    section = page.get_by_test_id("admin-workers")
    section.get_by_test_id("workers-project").select_option(A)
    section.get_by_test_id(f"worker-{WORKER}").click()
    panel = page.locator(f'[data-testid="face-panel"][data-person="{WORKER}"]')
    panel.locator('[data-testid="face-state"][data-enrolled="0"]').wait_for()
    panel.get_by_test_id("face-photos").set_input_files([str(OBAMA), str(OBAMA2)])
    panel.get_by_test_id("face-consent-by").fill("Wang Wu")
    panel.get_by_test_id("face-consent-method").select_option("written")
    panel.get_by_test_id("face-consent-doc-input").fill("CF-2026-0042")
    panel.get_by_test_id("face-enrol").click()
    panel.locator('[data-testid="face-state"][data-enrolled="1"]').wait_for(timeout=60_000)
    assert panel.get_by_test_id("face-photo-count").inner_text() == "2"
    assert panel.get_by_test_id("face-consent-doc").inner_text() == "CF-2026-0042"
    shown = panel.get_by_test_id("face-state").inner_text()
    assert "embedding" not in shown.lower() and "[" not in shown  # the state, never the vectors
    got = db.execute(
        "SELECT photo_count, consent_document FROM face_enrolments WHERE person_id = %s",
        (WORKER,),
    ).fetchone()
    assert got == (2, "CF-2026-0042")
    page.evaluate("window.scrollTo(0, 0)")
    page.screenshot(path=str(shots / "p10-admin-face-enrolled.png"), full_page=True)
    panel.get_by_test_id("face-remove").click()
    panel.get_by_test_id("face-remove-confirm").click()
    panel.locator('[data-testid="face-state"][data-enrolled="0"]').wait_for()
    assert (
        db.execute("SELECT 1 FROM face_enrolments WHERE person_id = %s", (WORKER,)).fetchone()
        is None
    )
    page.screenshot(path=str(shots / "p11-admin-face-removed.png"), full_page=True)
    ctx.close()


def _sharing_pages(db, base: str, browser, shots: Path) -> None:  # type: ignore[no-untyped-def]
    ctx, page = _login(browser, base, "admin1")
    page.get_by_test_id("nav-sharing").click()
    form = page.get_by_test_id("key-form")
    form.get_by_test_id("key-name").fill("city open-data portal")
    form.get_by_test_id("key-resource-projects").check()
    form.get_by_test_id("key-fields-projects").fill("id, name, status")
    form.get_by_test_id("key-personal").select_option("masked")
    form.get_by_test_id("key-create").click()
    secret = page.get_by_test_id("key-secret")
    secret.wait_for()
    key_id = page.get_by_test_id("key-row").locator("[data-key-id]").get_attribute("data-key-id")
    assert key_id and key_id in secret.inner_text()
    grant = db.execute("SELECT grant_spec FROM api_keys WHERE id = %s", (key_id,)).fetchone()[0]
    assert grant["resources"] == ["projects"] and grant["fields"] == {
        "projects": ["id", "name", "status"]
    }
    page.screenshot(path=str(shots / "p12-admin-api-key-once.png"), full_page=True)
    page.get_by_test_id("tab-exports").click()
    page.get_by_test_id("export-dataset").select_option("projects")
    with page.expect_download() as got:
        page.get_by_test_id("export-download").click()
    csv_text = Path(got.value.path()).read_text(encoding="utf-8-sig")
    assert csv_text.splitlines()[0].startswith("id,") and A in csv_text
    page.get_by_test_id("export-msg").wait_for()
    page.get_by_test_id("tab-quality").click()
    page.get_by_test_id("quality-summary").wait_for()
    assert page.get_by_test_id("quality-projects_without_bim").get_attribute("data-count") == "2"
    page.screenshot(path=str(shots / "p13-admin-data-quality.png"), full_page=True)
    page.get_by_test_id("tab-audit").click()
    page.get_by_test_id("audit").wait_for()
    ctx.close()
