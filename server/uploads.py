"""Photos uploaded with an action (a rectification, an inspection): size-capped, and typed by
their leading bytes, never by the file name or the client's Content-Type."""

from __future__ import annotations

from collections.abc import Callable

from fastapi import UploadFile

from server.errors import ApiError, forbidden
from server.principal import Principal

_MAGIC: tuple[tuple[Callable[[bytes], bool], str], ...] = (
    (lambda b: b[:3] == b"\xff\xd8\xff", "image/jpeg"),
    (lambda b: b[:8] == b"\x89PNG\r\n\x1a\n", "image/png"),
    (lambda b: b[:4] == b"RIFF" and b[8:12] == b"WEBP", "image/webp"),
)


def sniff(data: bytes) -> str | None:
    """The image type ``data`` starts like, or None."""
    return next((ctype for check, ctype in _MAGIC if check(data)), None)


def read_capped(photo: UploadFile, limit: int, what: str = "the photo") -> bytes:
    """The upload's bytes; 413 naming the limit when it is larger."""
    data = photo.file.read(limit + 1)
    if len(data) > limit:
        raise ApiError(
            413,
            "too_large",
            f"{what} is larger than {limit} bytes (SMARTSITE_UPLOAD_MAX_BYTES)",
            {"max_bytes": limit},
        )
    return data


def read_photo(photo: UploadFile, limit: int) -> tuple[bytes, str]:
    """(bytes, content type) of a JPEG, PNG or WebP photo; 413 or 415 with the reason."""
    data = read_capped(photo, limit)
    ctype = sniff(data)
    if ctype is None:
        raise ApiError(
            415,
            "unsupported_media_type",
            "the photo must be a JPEG, PNG or WebP image (judged by its content)",
            {"accepted": [c for _, c in _MAGIC]},
        )
    return data, ctype


def refuse_keys_photos(p: Principal) -> None:
    """Site photos show people: they are for the people working the alert or inspection,
    never handed to another bureau's API key, whatever its grant."""
    if p.kind == "key":
        raise forbidden("photos are not shared through API keys")
