"""Face detection (YuNet), embedding (SFace) and matching against enrolled workers.

YuNet runs through ``cv2.FaceDetectorYN`` (it carries the anchor decoding and NMS); SFace runs
through onnxruntime on the face aligned to its 5 landmarks (a similarity transform onto the
template OpenCV's ``FaceRecognizerSF.alignCrop`` uses), RGB, 112x112, raw 0-255 values, as
``FaceRecognizerSF.feature`` feeds it. Both keep to ``threads`` threads (``cv2.setNumThreads``
and the session's intra-op pool), so on a 2-core gateway they do not fight each other or the
PPE detector. Models come only from the registry (verified files, no downloads).

A gallery holds the enrolled workers' embeddings; ``match`` gives the best worker by cosine
similarity, or unknown below the threshold (``SMARTSITE_FACE_MATCH_THRESHOLD``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import cv2
import numpy as np
import numpy.typing as npt

from models.registry import model_path, spec

if TYPE_CHECKING:
    from smartsite.settings import Settings

DETECTOR = "face_detection_yunet"
RECOGNIZER = "face_recognition_sface"
EMBEDDING_DIM = 128
DEFAULT_THRESHOLD = 0.363  # OpenCV Zoo's cosine threshold for SFace

# Where the 5 landmarks (eyes, nose tip, mouth corners) land in the 112x112 crop: the template
# of OpenCV's FaceRecognizerSF::alignCrop (face_recognize.cpp), which SFace was trained on.
_TEMPLATE = np.array(
    [
        [38.2946, 51.6963],
        [73.5318, 51.5014],
        [56.0252, 71.7366],
        [41.5493, 92.3655],
        [70.7299, 92.2041],
    ],
    dtype=np.float64,
)
_CROP = 112

Image = npt.NDArray[np.uint8]
Vector = npt.NDArray[np.float32]


@dataclass(frozen=True)
class Face:
    """One detected face, in the pixel coordinates of the image it was found in."""

    box: tuple[float, float, float, float]  # x, y, width, height
    landmarks: tuple[tuple[float, float], ...]  # right eye, left eye, nose, mouth r, mouth l
    score: float

    @property
    def area(self) -> float:
        return self.box[2] * self.box[3]

    def as_row(self) -> npt.NDArray[np.float32]:
        """The 15 values of a YuNet row (what ``FaceRecognizerSF.alignCrop`` takes)."""
        values = [*self.box, *(v for pt in self.landmarks for v in pt), self.score]
        return np.array(values, dtype=np.float32)


def _similarity_transform(src: npt.NDArray[np.float64], dst: npt.NDArray[np.float64]) -> Vector:
    """2x3 least-squares similarity transform (rotation, uniform scale, shift) src -> dst
    (Umeyama 1991), as OpenCV's alignCrop computes it."""
    n = src.shape[0]
    mu_s, mu_d = src.mean(axis=0), dst.mean(axis=0)
    s, d = src - mu_s, dst - mu_d
    cov = d.T @ s / n
    u, sig, vt = np.linalg.svd(cov)
    sign = np.ones(2)
    if np.linalg.det(cov) < 0:
        sign[1] = -1
    rot = u @ np.diag(sign) @ vt
    scale = float((sig * sign).sum() / ((s**2).sum() / n))
    shift = mu_d - scale * rot @ mu_s
    return np.hstack([scale * rot, shift[:, None]]).astype(np.float32)


def align(image: Image, face: Face) -> Image:
    """The face warped onto SFace's 112x112 template by its 5 landmarks (BGR, like the input)."""
    m = _similarity_transform(np.asarray(face.landmarks, dtype=np.float64), _TEMPLATE)
    return cv2.warpAffine(image, m, (_CROP, _CROP))  # type: ignore[return-value]


def normalise(v: npt.ArrayLike) -> Vector:
    a = np.asarray(v, dtype=np.float32)
    norm = np.linalg.norm(a, axis=-1, keepdims=True)
    return a / np.maximum(norm, 1e-12)  # type: ignore[no-any-return]


class FaceModels:
    """YuNet and SFace loaded from the registry (sha256-verified), thread pools bounded."""

    def __init__(
        self,
        models_dir: Path,
        *,
        threads: int = 1,
        score_threshold: float = 0.8,
        nms_threshold: float = 0.3,
        max_side: int = 1280,
    ) -> None:
        import onnxruntime as ort

        cv2.setNumThreads(threads)  # process-wide: OpenCV's pool keeps to our share
        self.detector_path = model_path(DETECTOR, models_dir)
        self.recognizer_path = model_path(RECOGNIZER, models_dir)
        self.recognizer_sha256 = spec(RECOGNIZER).sha256  # verified by model_path
        self.max_side = max_side
        self._detector = cv2.FaceDetectorYN.create(
            str(self.detector_path), "", (320, 320), score_threshold, nms_threshold, 5000
        )
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
        opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        opts.log_severity_level = 3  # the SFace export lists its weights as inputs: warnings
        self._session = ort.InferenceSession(
            str(self.recognizer_path), opts, providers=["CPUExecutionProvider"]
        )
        self._input = self._session.get_inputs()[0].name

    @classmethod
    def from_settings(cls, settings: Settings) -> FaceModels:
        """With the models directory, thread count and detection score of ``settings``."""
        return cls(
            settings.models_path,
            threads=settings.ort_threads,
            score_threshold=settings.face_detect_score,
        )

    def detect(self, image: Image) -> list[Face]:
        """Faces in a BGR image, best first. Images larger than ``max_side`` are searched at
        that size (YuNet finds faces of about 10-300 px) and mapped back."""
        h, w = image.shape[:2]
        scale = min(1.0, self.max_side / max(h, w))
        work = image
        if scale < 1.0:
            work = cv2.resize(
                image, (round(w * scale), round(h * scale)), interpolation=cv2.INTER_AREA
            )  # type: ignore[assignment]
        self._detector.setInputSize((work.shape[1], work.shape[0]))
        _, rows = self._detector.detect(work)
        if rows is None:
            return []
        faces = []
        for r in rows:
            v = [float(x) / scale for x in r[:14]]
            faces.append(
                Face(
                    box=(v[0], v[1], v[2], v[3]),
                    landmarks=tuple((v[i], v[i + 1]) for i in range(4, 14, 2)),
                    score=float(r[14]),
                )
            )
        return sorted(faces, key=lambda f: f.score, reverse=True)

    def embed(self, image: Image, face: Face) -> Vector:
        """The L2-normalised 128-d SFace embedding of ``face`` in ``image``."""
        crop = align(image, face)
        blob = cv2.cvtColor(crop, cv2.COLOR_BGR2RGB).astype(np.float32).transpose(2, 0, 1)
        out = self._session.run(None, {self._input: blob[None]})[0]
        return normalise(out.reshape(-1))


# --- gallery and matching ------------------------------------------------------------------------

Strategy = Literal["max", "mean"]


@dataclass(frozen=True)
class Match:
    worker_id: str | None  # None: unknown
    similarity: float  # the best worker's, even when below the threshold

    @property
    def known(self) -> bool:
        return self.worker_id is not None


class Gallery:
    """Enrolled workers' embeddings. ``mean`` (the default): a face scores against the
    normalised mean of a worker's photos; ``max``: against each photo, taking the best.
    Measured on ../shared/datasets/faces (enrol two photos of p01, probe the third, tests/
    test_faces.py prints it), the mean template scores the same person higher and other people
    lower than the best single photo: averaging cancels each photo's pose and light."""

    def __init__(
        self, embeddings: Mapping[str, Sequence[npt.ArrayLike]], strategy: Strategy = "mean"
    ) -> None:
        self.strategy = strategy
        labels: list[str] = []
        rows: list[Vector] = []
        for worker, vectors in embeddings.items():
            vs = normalise(np.asarray(vectors, dtype=np.float32).reshape(-1, EMBEDDING_DIM))
            if len(vs) == 0:
                continue
            if strategy == "mean":
                vs = normalise(vs.mean(axis=0, keepdims=True))
            labels.extend([worker] * len(vs))
            rows.extend(vs)
        self.labels = labels
        self.matrix = np.stack(rows) if rows else np.zeros((0, EMBEDDING_DIM), dtype=np.float32)

    def __len__(self) -> int:
        return len(set(self.labels))

    def similarities(self, embedding: npt.ArrayLike) -> dict[str, float]:
        """Best cosine similarity per worker."""
        sims = self.matrix @ normalise(embedding)
        best: dict[str, float] = {}
        for label, s in zip(self.labels, sims, strict=True):
            best[label] = max(best.get(label, -1.0), float(s))
        return best


def match(
    embedding: npt.ArrayLike, gallery: Gallery, threshold: float = DEFAULT_THRESHOLD
) -> Match:
    """The enrolled worker most similar to ``embedding``, or unknown (``worker_id`` None) when
    even the best is below ``threshold``."""
    sims = gallery.similarities(embedding)
    if not sims:
        return Match(None, -1.0)
    worker, sim = max(sims.items(), key=lambda kv: kv[1])
    return Match(worker if sim >= threshold else None, sim)
