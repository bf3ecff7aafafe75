"""Errors a user can act on: each says what is wrong with the file and what to do."""

from __future__ import annotations


class BimError(Exception):
    """Base of the BIM module's errors; the message is meant for the person who acted."""


class BimImportError(BimError):
    """The file was refused; nothing of it was stored."""


class EmptyFileError(BimImportError):
    def __init__(self, name: str) -> None:
        super().__init__(f"{name}: the file is empty (0 bytes); the upload may have failed")


class NotIfcError(BimImportError):
    def __init__(self, name: str, what: str) -> None:
        super().__init__(
            f"{name}: not an IFC file ({what}); export the model as IFC (STEP, .ifc) and retry"
        )


class TruncatedFileError(BimImportError):
    def __init__(self, name: str, size: int) -> None:
        super().__init__(
            f"{name}: the file is cut short ({size:,} bytes, no END-ISO-10303-21 at the end); "
            "the copy or upload was interrupted: copy it again"
        )


class CorruptFileError(BimImportError):
    def __init__(self, name: str, detail: str) -> None:
        super().__init__(f"{name}: the IFC file is damaged and cannot be read whole: {detail}")


class UnsupportedSchemaError(BimImportError):
    def __init__(self, name: str, schema: str, supported: str) -> None:
        super().__init__(
            f"{name}: IFC schema {schema!r} is not supported (supported: {supported}); "
            "export the model again as IFC4 or IFC2X3"
        )


class NoStoreysError(BimImportError):
    def __init__(self, name: str) -> None:
        super().__init__(
            f"{name}: the model has no building storey (IfcBuildingStorey), so alerts could not "
            "be placed on it; export it with its spatial structure (site, building, storeys)"
        )


class NoModelError(BimError):
    """The project has no imported model (or not the version asked for)."""


class PlacementError(BimError):
    """A placement names something the project or its model does not have."""
