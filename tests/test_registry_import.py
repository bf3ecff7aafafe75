"""Registry import on the real database: all rows or none, a per-row report, no clear ID."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from typer.testing import CliRunner

from smartsite.cli import app
from smartsite.db.imports import ImportFileError, ImportReport, import_file
from smartsite.db.registry import EnterpriseIn, ProjectIn, upsert_enterprise, upsert_project
from smartsite.identifiers import id_check_digit
from smartsite.settings import get_settings

KEY = b"test-key-0123456789-abcdefghijklmnopqrstuvwxyz"
HUAWEI = "914403001922038216"
TENCENT = "91440300708461136T"
TENCENT_TECH = "9144030071526726XG"
NUMBER = "11010519491231002X"  # GB 11643-1999 sample
NUMBER2 = "44030519800101123" + id_check_digit("44030519800101123")
NUMBER3 = "32010219951130456" + id_check_digit("32010219951130456")
NUMBER4 = "51010719700605321" + id_check_digit("51010719700605321")
BAD_NUMBER = "110105194912310021"  # wrong check digit
BAD_USCC = "914403001922038217"  # wrong check character
TABLES = ("permits", "enterprises", "project_enterprises", "persons", "project_workers")


@pytest.fixture
def site(db: psycopg.Connection) -> psycopg.Connection:
    upsert_project(db, ProjectIn(id="P-1", name="Site one"))
    upsert_project(db, ProjectIn(id="P-2", name="Site two"))
    return db


@pytest.fixture
def employers(site: psycopg.Connection) -> psycopg.Connection:
    for code in (HUAWEI, TENCENT):
        upsert_enterprise(site, EnterpriseIn(uscc=code, name=f"Enterprise {code[-4:]}"))
    return site


def write(path: Path, text: str, bom: bool = False) -> Path:
    path.write_bytes((b"\xef\xbb\xbf" if bom else b"") + text.encode())
    return path


def snapshot(conn: psycopg.Connection) -> dict[str, list[str]]:
    return {
        t: sorted(r[0] for r in conn.execute(f"SELECT x::text FROM {t} x").fetchall())
        for t in (*TABLES, "certificates")
    }


def run(conn: psycopg.Connection, kind: str, path: Path, **kw: object) -> ImportReport:
    return import_file(conn, kind, path, key=KEY, **kw)  # type: ignore[arg-type]


# --- good files ------------------------------------------------------------------------------

PERMITS_CSV = """number,project_id,issued_on,expires_on,status,issuer
440300202501010101,P-1,2025-01-01,2027-01-01,valid,深圳市住房和建设局
440300202406300202,P-2,2024-06-30,,suspended,
"""
PERMITS_JSON = [
    {"number": "440300202501010101", "project_id": "P-1", "issued_on": "2025-01-01"},
    {"number": "440300202406300202", "project_id": "P-2", "issued_on": "2024-06-30"},
]


@pytest.mark.parametrize("bom", [False, True], ids=["plain", "bom"])
def test_permits_csv_imports(site: psycopg.Connection, tmp_path: Path, bom: bool) -> None:
    report = run(site, "permits", write(tmp_path / "p.csv", PERMITS_CSV, bom))
    assert (report.errors, report.rows, report.written) == ([], 2, True)
    rows = site.execute(
        "SELECT number, project_id, issued_on::text, expires_on::text, status, issuer "
        "FROM permits ORDER BY number"
    ).fetchall()
    assert rows == [
        ("440300202406300202", "P-2", "2024-06-30", None, "suspended", ""),
        ("440300202501010101", "P-1", "2025-01-01", "2027-01-01", "valid", "深圳市住房和建设局"),
    ]


def test_permits_json_imports(site: psycopg.Connection, tmp_path: Path) -> None:
    path = write(tmp_path / "p.json", json.dumps(PERMITS_JSON), bom=True)
    assert run(site, "permits", path).errors == []
    assert site.execute("SELECT count(*) FROM permits WHERE status = 'valid'").fetchone() == (2,)


ENTERPRISES_CSV = f"""uscc,name,kind,project_id,role
{HUAWEI},华为技术有限公司,contractor,P-1,general_contractor
{HUAWEI},华为技术有限公司,contractor,P-2,subcontractor
{TENCENT.lower()},深圳市腾讯计算机系统有限公司,supervisor,P-1,supervisor
{TENCENT_TECH},腾讯科技(深圳)有限公司,,,
"""


def test_enterprises_csv_imports_with_project_links(
    site: psycopg.Connection, tmp_path: Path
) -> None:
    report = run(site, "enterprises", write(tmp_path / "e.csv", ENTERPRISES_CSV))
    assert report.errors == [] and report.written
    assert site.execute("SELECT uscc, kind FROM enterprises ORDER BY uscc").fetchall() == [
        (HUAWEI, "contractor"),
        (TENCENT, "supervisor"),  # normalised to upper case
        (TENCENT_TECH, "contractor"),  # the default for an empty cell
    ]
    assert site.execute(
        "SELECT project_id, uscc, role FROM project_enterprises ORDER BY 1, 3"
    ).fetchall() == [
        ("P-1", HUAWEI, "general_contractor"),
        ("P-1", TENCENT, "supervisor"),
        ("P-2", HUAWEI, "subcontractor"),
    ]


def test_enterprises_json_imports(site: psycopg.Connection, tmp_path: Path) -> None:
    data = [
        {
            "uscc": HUAWEI,
            "name": "华为技术有限公司",
            "projects": [
                {"project_id": "P-1", "role": "builder"},
                {"project_id": "P-2", "role": "general_contractor"},
            ],
        },
        {"uscc": TENCENT, "name": "腾讯"},
    ]
    assert run(site, "enterprises", write(tmp_path / "e.json", json.dumps(data))).errors == []
    assert site.execute("SELECT count(*) FROM project_enterprises").fetchone() == (2,)
    assert site.execute("SELECT count(*) FROM enterprises").fetchone() == (2,)


WORKERS_HEADER = (
    "id,name,id_number,employer_uscc,trade,project_id,role,joined_on,"
    "certificate_type,certificate_number,certificate_issued_on,certificate_expires_on"
)
WORKERS_CSV = f"""{WORKERS_HEADER}
w-001,张三,{NUMBER},{HUAWEI},crane,P-1,operator,2025-02-01,special_operations:tower_crane_driver,T440300001,2023-01-01,2029-01-01
w-001,张三,{NUMBER.lower()},{HUAWEI},crane,,,,special_operations:signaller,S440300002,2023-05-01,2025-05-01
w-002,李四,{NUMBER2},{TENCENT},rebar,P-2,,,,,,
w-003,王五,{NUMBER3},,,,,,,,,
"""


def test_workers_csv_imports_without_clear_id_numbers(
    employers: psycopg.Connection, tmp_path: Path
) -> None:
    report = run(employers, "workers", write(tmp_path / "w.csv", WORKERS_CSV, bom=True))
    assert report.errors == [] and report.written
    db = employers
    assert db.execute(
        "SELECT id, employer_uscc, trade, id_number_masked FROM persons ORDER BY id"
    ).fetchall() == [
        ("w-001", HUAWEI, "crane", "110105********002X"),
        ("w-002", TENCENT, "rebar", f"440305********{NUMBER2[-4:]}"),
        ("w-003", None, "", f"320102********{NUMBER3[-4:]}"),
    ]
    assert db.execute(
        "SELECT project_id, person_id, role, joined_on IS NOT NULL FROM project_workers "
        "ORDER BY person_id"
    ).fetchall() == [("P-1", "w-001", "operator", True), ("P-2", "w-002", "worker", True)]
    assert db.execute(
        "SELECT person_id, type, expires_on::text FROM certificates ORDER BY number"
    ).fetchall() == [
        ("w-001", "special_operations:signaller", "2025-05-01"),
        ("w-001", "special_operations:tower_crane_driver", "2029-01-01"),
    ]
    text = " ".join(" ".join(v) for v in snapshot(db).values())
    for number in (NUMBER, NUMBER2, NUMBER3):
        assert number not in text and number[6:14] not in text
        assert number.encode().hex() not in text


def test_workers_json_imports(employers: psycopg.Connection, tmp_path: Path) -> None:
    data = [
        {
            "id": "w-010",
            "name": "赵六",
            "id_number": NUMBER2,
            "employer_uscc": HUAWEI,
            "projects": [{"project_id": "P-1"}, {"project_id": "P-2", "role": "foreman"}],
            "certificates": [
                {
                    "type": "special_operations:electrician",
                    "number": "E1",
                    "expires_on": "2030-01-01",
                }
            ],
        }
    ]
    assert run(employers, "workers", write(tmp_path / "w.json", json.dumps(data))).errors == []
    assert employers.execute(
        "SELECT count(*) FROM project_workers WHERE person_id = 'w-010'"
    ).fetchone() == (2,)
    assert employers.execute("SELECT number FROM certificates").fetchall() == [("E1",)]


@pytest.mark.parametrize(
    ("kind", "name", "text"),
    [
        ("permits", "p.csv", PERMITS_CSV),
        ("enterprises", "e.csv", ENTERPRISES_CSV),
        ("workers", "w.csv", WORKERS_CSV),
    ],
)
def test_reimport_changes_nothing(
    employers: psycopg.Connection, tmp_path: Path, kind: str, name: str, text: str
) -> None:
    path = write(tmp_path / name, text)
    assert run(employers, kind, path).errors == []
    before = snapshot(employers)
    assert run(employers, kind, path).errors == []
    assert snapshot(employers) == before


@pytest.mark.parametrize(
    ("kind", "name", "text"),
    [
        ("permits", "p.csv", PERMITS_CSV),
        ("enterprises", "e.csv", ENTERPRISES_CSV),
        ("workers", "w.csv", WORKERS_CSV),
    ],
)
def test_dry_run_imports_nothing(
    employers: psycopg.Connection, tmp_path: Path, kind: str, name: str, text: str
) -> None:
    before = snapshot(employers)
    report = run(employers, kind, write(tmp_path / name, text), dry_run=True)
    assert report.errors == [] and report.rows > 0 and not report.written
    assert snapshot(employers) == before


# --- bad files: nothing imported, the row and field named --------------------------------------


def _bad_permits() -> str:
    return PERMITS_CSV + "440300202501019999,P-404,2025-01-01,,valid,\n"


BAD_FILES = [
    # kind, file name, content, (row, field, message part)
    ("permits", "p.csv", _bad_permits(), (4, "project_id", "unknown project 'P-404'")),
    (
        "permits",
        "p.csv",
        PERMITS_CSV + "440300202502300303,P-1,2025-02-30,,valid,\n",
        (4, "issued_on", "valid date"),
    ),
    (
        "permits",
        "p.csv",
        PERMITS_CSV + "440300202503010404,P-1,2025-03-01,2024-03-01,valid,\n",
        (4, "", "expires_on is before issued_on"),
    ),
    (
        "permits",
        "p.json",
        json.dumps([*PERMITS_JSON, {"number": "440300X", "project_id": "P-1"}]),
        (3, "issued_on", "Field required"),
    ),
    (
        "enterprises",
        "e.csv",
        ENTERPRISES_CSV + f"{BAD_USCC},Bad Co,,,\n",
        (6, "uscc", "check character does not match"),
    ),
    (
        "enterprises",
        "e.csv",
        ENTERPRISES_CSV + f"{TENCENT_TECH},腾讯科技,,P-404,builder\n",
        (6, "project_id", "unknown project"),
    ),
    (
        "enterprises",
        "e.json",
        json.dumps([{"uscc": HUAWEI, "name": "x", "projects": [{"project_id": "P-1"}]}]),
        (1, "projects[0].role", "Field required"),
    ),
    (
        "workers",
        "w.csv",
        WORKERS_CSV + f"w-004,孙七,{BAD_NUMBER},,,,,,,,,\n",
        (6, "id_number", "check digit does not match"),
    ),
    (
        "workers",
        "w.csv",
        WORKERS_CSV + f"w-004,孙七,{NUMBER4},{TENCENT_TECH},,,,,,,,\n",
        (6, "employer_uscc", "no registered enterprise"),
    ),
    (
        "workers",
        "w.csv",
        WORKERS_CSV + f"w-004,孙七,{NUMBER2},,,,,,,,,\n",
        (6, "id_number", "same ID number as row 4"),
    ),
    (
        "workers",
        "w.csv",
        WORKERS_CSV + "w-004,孙七,4403051980010112,,,,,,c,1,2025-13-01,\n",
        (6, "certificate_issued_on", "valid date"),
    ),
    (
        "workers",
        "w.json",
        json.dumps([{"id": "w-9", "name": "x", "id_number": BAD_NUMBER, "projects": [{}]}]),
        (1, "projects[0].project_id", "Field required"),
    ),
]


@pytest.mark.parametrize(
    ("kind", "name", "text", "expected"),
    BAD_FILES,
    ids=[f"{k}-{e[1] or 'row'}-{n[-4:]}" for k, n, _, e in BAD_FILES],
)
def test_a_bad_row_imports_nothing_and_is_reported(
    employers: psycopg.Connection,
    tmp_path: Path,
    kind: str,
    name: str,
    text: str,
    expected: tuple[int, str, str],
) -> None:
    before = snapshot(employers)
    report = run(employers, kind, write(tmp_path / name, text))
    assert not report.written
    assert snapshot(employers) == before
    row, field, message = expected
    assert any(e.row == row and e.field == field and message in e.message for e in report.errors), (
        report.errors
    )
    shown = "\n".join(str(e) for e in report.errors)
    for number in (BAD_NUMBER, NUMBER, NUMBER2, NUMBER3, NUMBER4, "4403051980010112"):
        assert number not in shown


def test_id_number_of_another_registered_person_is_refused(
    employers: psycopg.Connection, tmp_path: Path
) -> None:
    assert run(employers, "workers", write(tmp_path / "w.csv", WORKERS_CSV)).errors == []
    other = write(tmp_path / "o.csv", f"id,name,id_number\nw-999,冒名,{NUMBER}\n")
    report = run(employers, "workers", other)
    assert [(e.row, e.field) for e in report.errors] == [(2, "id_number")]
    assert "already registered to person 'w-001'" in report.errors[0].message


def test_unreadable_files_are_refused_whole(site: psycopg.Connection, tmp_path: Path) -> None:
    with pytest.raises(ImportFileError, match="unknown column"):
        run(site, "permits", write(tmp_path / "p.csv", "number,project,issued_on\n"))
    with pytest.raises(ImportFileError, match="list of objects"):
        run(site, "permits", write(tmp_path / "p.json", '{"number": "x"}'))
    with pytest.raises(ImportFileError, match="not UTF-8"):
        (tmp_path / "g.csv").write_bytes("number\n许可".encode("gb18030"))
        run(site, "permits", tmp_path / "g.csv")


# --- the command -----------------------------------------------------------------------------


@pytest.fixture
def cli_env(monkeypatch: pytest.MonkeyPatch, pg_url: str, tmp_path: Path) -> Iterator[None]:
    monkeypatch.setenv("DATABASE_URL", pg_url)
    monkeypatch.setenv("SMARTSITE_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("SMARTSITE_SECRET_KEY", KEY.decode())
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


def test_command_imports_and_reports(
    employers: psycopg.Connection, tmp_path: Path, cli_env: None
) -> None:
    good = write(tmp_path / "w.csv", WORKERS_CSV, bom=True)
    r = CliRunner().invoke(app, ["import", "workers", str(good), "--dry-run"])
    assert r.exit_code == 0, r.output
    assert "4 row(s) valid, 3 workers (dry run)" in " ".join(r.output.split())
    assert employers.execute("SELECT count(*) FROM persons").fetchone() == (0,)

    r = CliRunner().invoke(app, ["import", "workers", str(good)])
    assert r.exit_code == 0, r.output
    assert "imported 3 workers from 4 row(s)" in " ".join(r.output.split())
    assert employers.execute("SELECT count(*) FROM persons").fetchone() == (3,)

    bad = write(tmp_path / "b.csv", f"id,name,id_number\nw-100,x,{NUMBER2}\nw-101,y,{BAD_NUMBER}\n")
    r = CliRunner().invoke(app, ["import", "workers", str(bad)])
    out = " ".join(r.output.split())
    assert r.exit_code == 1, out
    assert "row 2, id_number: already registered to person 'w-002'" in out
    assert "row 3, id_number: resident ID number: check digit does not match" in out
    assert "nothing imported" in out
    assert BAD_NUMBER not in out and NUMBER2 not in out
    assert employers.execute("SELECT count(*) FROM persons").fetchone() == (3,)

    r = CliRunner().invoke(app, ["import", "permits", str(write(tmp_path / "x.csv", "nope\n"))])
    assert r.exit_code == 1 and "unknown column" in r.output
