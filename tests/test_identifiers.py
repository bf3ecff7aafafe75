"""Unified social credit codes (GB 32100-2015) and resident ID numbers (GB 11643-1999)."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from smartsite.identifiers import (
    mask_id_number,
    mask_uscc,
    uscc_check_char,
    validate_id_number,
    validate_uscc,
)

# Published codes of real enterprises (national enterprise credit information publicity system).
REAL_USCC = [
    "914403001922038216",  # 华为技术有限公司
    "91440300708461136T",  # 深圳市腾讯计算机系统有限公司
    "9144030071526726XG",  # 腾讯科技(深圳)有限公司
]
GB11643_SAMPLE = "11010519491231002X"  # the example in GB 11643-1999


@pytest.mark.parametrize("code", REAL_USCC)
def test_real_enterprise_codes_are_valid(code: str) -> None:
    assert validate_uscc(code) == code
    # cross-check with the GB 32100-2015 weighting computed here, independently of the module
    charset = "0123456789ABCDEFGHJKLMNPQRTUWXY"
    weights = [pow(3, i, 31) for i in range(17)]
    total = sum(charset.index(c) * w for c, w in zip(code[:17], weights, strict=True))
    assert code[17] == charset[(31 - total % 31) % 31] == uscc_check_char(code[:17])


@pytest.mark.parametrize("code", REAL_USCC)
def test_codes_are_normalised_to_upper_case_without_blanks(code: str) -> None:
    assert validate_uscc(f"  {code.lower()} ") == code


def _replace(code: str, i: int, c: str) -> str:
    return code[:i] + c + code[i + 1 :]


@pytest.mark.parametrize("code", REAL_USCC)
@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda c: _replace(c, 17, "0" if c[17] != "0" else "1"), "check character does not match"),
        (lambda c: c[:16] + c[17] + c[16], "check character does not match"),  # transposition
        (lambda c: _replace(c, 10, str((int(c[10]) + 1) % 10)), "check character does not match"),
        (lambda c: c[:17], "must have 18 characters, got 17"),
        (lambda c: c + "0", "must have 18 characters, got 19"),
        (lambda c: _replace(c, 9, "O"), "invalid characters ['O']"),
        (lambda c: _replace(_replace(c, 12, "I"), 13, "Z"), "invalid characters ['I', 'Z']"),
        (lambda c: _replace(c, 4, "A"), "characters 3-8 must be the area code digits"),
        (lambda c: _replace(c, 5, "-"), "invalid characters ['-']"),
    ],
)
def test_mutated_codes_are_refused_saying_why(
    code: str, mutate: Callable[[str], str], message: str
) -> None:
    bad = mutate(code)
    assert bad != code
    with pytest.raises(ValueError) as err:
        validate_uscc(bad)
    assert message in str(err.value)


def test_uscc_masking_keeps_first_and_last_four() -> None:
    assert mask_uscc("914403001922038216") == "9144**********8216"


def test_the_gb11643_sample_number_is_valid() -> None:
    assert validate_id_number(GB11643_SAMPLE) == GB11643_SAMPLE
    assert validate_id_number(" 11010519491231002x ") == GB11643_SAMPLE


def test_a_leap_day_birth_date_is_valid() -> None:
    assert validate_id_number("110105200002290021") == "110105200002290021"


@pytest.mark.parametrize(
    ("number", "message"),
    [
        ("110105194912310021", "check digit does not match"),
        ("110105194912310020", "check digit does not match"),
        ("11010519491231003X", "check digit does not match"),
        ("110105194902300020", "birth date is not a valid date"),  # 30 February
        ("110105194902290029", "birth date is not a valid date"),  # 1949 is no leap year
        ("110105194913310021", "birth date is not a valid date"),  # month 13
        ("440301194912000023", "birth date is not a valid date"),  # day 0
        ("11010519491231002", "must be 17 digits and a check digit or X"),
        ("11010519491231002X0", "must be 17 digits and a check digit or X"),
        ("110105491231002", "must be 17 digits and a check digit or X"),  # old 15-digit form
        ("1101051949123100XX", "must be 17 digits and a check digit or X"),
        ("11010519491231002Y", "must be 17 digits and a check digit or X"),
        ("", "must be 17 digits and a check digit or X"),
    ],
)
def test_invalid_id_numbers_are_refused_without_repeating_the_number(
    number: str, message: str
) -> None:
    with pytest.raises(ValueError) as err:
        validate_id_number(number)
    text = str(err.value)
    assert message in text
    if number:
        assert number not in text
        assert number[6:14] not in text  # nor the birth date in it


@pytest.mark.parametrize(
    ("number", "masked"),
    [
        (GB11643_SAMPLE, "110105********002X"),
        ("110105200002290021", "110105********0021"),
    ],
)
def test_id_number_masking_keeps_region_and_last_four(number: str, masked: str) -> None:
    assert mask_id_number(number) == masked
    assert number[6:14] not in masked
