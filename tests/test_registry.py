"""Registries on the real database: ID numbers never in clear, codes checked twice."""

from __future__ import annotations

from typing import get_args

import psycopg
import pytest
from cryptography.fernet import InvalidToken
from pydantic import ValidationError

from smartsite.db.registry import (
    DeviceIn,
    DeviceKind,
    EnterpriseIn,
    PersonIn,
    ProjectIn,
    reveal_id_number,
    upsert_device,
    upsert_enterprise,
    upsert_person,
    upsert_project,
)

KEY = b"test-key-0123456789-abcdefghijklmnopqrstuvwxyz"
OTHER_KEY = b"another-key-0123456789-abcdefghijklmnopqrstuvw"
NUMBER = "11010519491231002X"  # GB 11643-1999 sample
HUAWEI = "914403001922038216"


def person(pid: str = "w-001", number: str = NUMBER) -> PersonIn:
    return PersonIn(id=pid, name="张三", id_number=number, employer_uscc=HUAWEI, trade="rebar")


@pytest.fixture
def registered(db: psycopg.Connection) -> psycopg.Connection:
    upsert_enterprise(db, EnterpriseIn(uscc=HUAWEI, name="华为技术有限公司"))
    upsert_project(db, ProjectIn(id="P-REG", name="Registry test site"))
    return db


def test_person_is_stored_without_the_clear_id_number(registered: psycopg.Connection) -> None:
    upsert_person(registered, person(), KEY)
    row = registered.execute("SELECT p::text FROM persons p WHERE id = 'w-001'").fetchone()
    assert row is not None
    text = row[0]
    assert NUMBER not in text and NUMBER.lower() not in text
    assert NUMBER[6:14] not in text  # not even the birth date
    assert NUMBER.encode().hex() not in text  # nor its bytes in a bytea column
    masked, hashed, encrypted = registered.execute(
        "SELECT id_number_masked, id_number_hash, id_number_encrypted FROM persons"
    ).fetchone()  # type: ignore[misc]
    assert masked == "110105********002X"
    assert NUMBER.encode() not in bytes(hashed) + bytes(encrypted)


def test_id_number_is_revealed_only_with_the_right_key(registered: psycopg.Connection) -> None:
    upsert_person(registered, person(), KEY)
    assert reveal_id_number(registered, "w-001", KEY) == NUMBER
    with pytest.raises(InvalidToken):
        reveal_id_number(registered, "w-001", OTHER_KEY)
    with pytest.raises(KeyError):
        reveal_id_number(registered, "w-404", KEY)


@pytest.mark.parametrize("same_number", [NUMBER, NUMBER.lower(), f" {NUMBER} "])
def test_the_same_person_cannot_be_registered_twice(
    registered: psycopg.Connection, same_number: str
) -> None:
    upsert_person(registered, person("w-001"), KEY)
    with pytest.raises(psycopg.errors.UniqueViolation):
        upsert_person(registered, person("w-002", same_number), KEY)
    assert registered.execute("SELECT array_agg(id) FROM persons").fetchone() == (["w-001"],)


def test_updating_a_person_keeps_one_row(registered: psycopg.Connection) -> None:
    upsert_person(registered, person(), KEY)
    upsert_person(
        registered, PersonIn(id="w-001", name="张三", id_number=NUMBER, trade="welder"), KEY
    )
    assert registered.execute("SELECT trade, employer_uscc FROM persons").fetchall() == [
        ("welder", None)
    ]


def test_a_trade_longer_than_the_edge_gallery_takes_is_refused() -> None:
    """The trade travels to the gateways in FaceGallery.roles (64 characters at most)."""
    with pytest.raises(ValidationError) as err:
        PersonIn(id="w-9", name="李四", id_number=NUMBER, trade="x" * 65)
    assert [e["loc"] for e in err.value.errors()] == [("trade",)]


@pytest.mark.parametrize(
    ("number", "message"),
    [
        ("110105194912310021", "check digit does not match"),
        ("110105194902300020", "birth date is not a valid date"),
        ("11010519491231002", "must be 17 digits"),
    ],
)
def test_person_with_an_invalid_id_number_is_refused(number: str, message: str) -> None:
    with pytest.raises(ValidationError) as err:
        person(number=number)
    errors = err.value.errors()
    assert [e["loc"] for e in errors] == [("id_number",)]
    assert message in errors[0]["msg"]
    text = str(err.value)
    assert "id_number" in text
    assert number not in text, "the rejected number leaked into the error message"


@pytest.mark.parametrize(
    "code",
    [
        "914403001922038217",  # check character
        "91440300192203821",  # length
        "9144O3001922038216",  # letter O
        "9144030019220382I6",  # letter I
    ],
)
def test_enterprise_with_a_bad_code_is_refused_by_the_model(code: str) -> None:
    with pytest.raises(ValidationError) as err:
        EnterpriseIn(uscc=code, name="x")
    assert [e["loc"] for e in err.value.errors()] == [("uscc",)]


@pytest.mark.parametrize(
    "code",
    [
        "9144030019220382I6",  # letter I is not in the charset
        "91440O001922038216",  # letter in the area code
        "914403001922038s16",  # lower case
        "91440300192203821",  # length (char(18) pads it with a blank)
    ],
)
def test_enterprise_with_a_bad_code_is_refused_by_the_table(
    db: psycopg.Connection, code: str
) -> None:
    with pytest.raises(psycopg.errors.CheckViolation):
        upsert_enterprise(db, EnterpriseIn.model_construct(uscc=code, name="x", kind="x"))
    assert db.execute("SELECT count(*) FROM enterprises").fetchone() == (0,)


@pytest.mark.parametrize("kind", get_args(DeviceKind))
def test_every_kind_the_model_accepts_the_table_accepts(
    registered: psycopg.Connection, kind: str
) -> None:
    upsert_device(registered, DeviceIn(id=f"d-{kind}", project_id="P-REG", kind=kind))  # type: ignore[arg-type]
    assert registered.execute("SELECT kind FROM devices").fetchall() == [(kind,)]


@pytest.mark.parametrize("kind", ["drone", "Camera", "", "crane"])
def test_device_with_an_unknown_kind_is_refused(registered: psycopg.Connection, kind: str) -> None:
    with pytest.raises(ValidationError):
        DeviceIn(id="d-1", project_id="P-REG", kind=kind)  # type: ignore[arg-type]
    device = DeviceIn.model_construct(
        id="d-1", project_id="P-REG", kind=kind, name="", gateway_id=None, rated={}, placement={}
    )
    with pytest.raises(psycopg.errors.CheckViolation) as err:
        upsert_device(registered, device)
    assert "devices_kind_check" in str(err.value)
    assert registered.execute("SELECT count(*) FROM devices").fetchone() == (0,)
