"""Chinese identifiers: unified social credit code (GB 32100-2015), resident ID number
(GB 11643-1999, ISO 7064 MOD 11-2), and their masked forms for views and logs."""

from __future__ import annotations

from datetime import date

USCC_CHARSET = "0123456789ABCDEFGHJKLMNPQRTUWXY"  # 31 characters: no I, O, Z, S, V
USCC_WEIGHTS = (1, 3, 9, 27, 19, 26, 16, 17, 20, 29, 25, 13, 8, 24, 10, 30, 28)
ID_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
ID_CHECK = "10X98765432"


def uscc_check_char(first17: str) -> str:
    total = sum(USCC_CHARSET.index(c) * w for c, w in zip(first17, USCC_WEIGHTS, strict=True))
    return USCC_CHARSET[(31 - total % 31) % 31]


def validate_uscc(code: str) -> str:
    """Return the code upper-cased, or raise ValueError saying what is wrong."""
    code = code.strip().upper()
    if len(code) != 18:
        raise ValueError(f"unified social credit code must have 18 characters, got {len(code)}")
    bad = sorted({c for c in code if c not in USCC_CHARSET})
    if bad:
        raise ValueError(f"unified social credit code has invalid characters {bad}")
    if not code[2:8].isdigit():
        raise ValueError("unified social credit code: characters 3-8 must be the area code digits")
    if code[17] != uscc_check_char(code[:17]):
        raise ValueError("unified social credit code: check character does not match")
    return code


def id_check_digit(first17: str) -> str:
    return ID_CHECK[sum(int(c) * w for c, w in zip(first17, ID_WEIGHTS, strict=True)) % 11]


def validate_id_number(number: str) -> str:
    """Return the 18-digit resident ID number upper-cased, or raise ValueError.

    The message never repeats the number: it is personal data.
    """
    number = number.strip().upper()
    if (
        len(number) != 18
        or not number[:17].isdigit()
        or not (number[17].isdigit() or number[17] == "X")
    ):
        raise ValueError("resident ID number must be 17 digits and a check digit or X")
    try:
        date(int(number[6:10]), int(number[10:12]), int(number[12:14]))
    except ValueError:
        raise ValueError("resident ID number: birth date is not a valid date") from None
    if number[17] != id_check_digit(number[:17]):
        raise ValueError("resident ID number: check digit does not match (ISO 7064 MOD 11-2)")
    return number


def mask(value: str, keep_start: int, keep_end: int) -> str:
    hidden = len(value) - keep_start - keep_end
    if hidden <= 0:
        return "*" * len(value)
    return value[:keep_start] + "*" * hidden + value[len(value) - keep_end :]


def mask_id_number(number: str) -> str:
    """``110105********123X``: region kept, birth date and serial hidden."""
    return mask(number, 6, 4)


def mask_uscc(code: str) -> str:
    return mask(code, 4, 4)
