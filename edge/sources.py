"""Camera readers: a video file, a folder of images, a stream URL or a local device.

Each camera runs in its own threads, so a dead camera never stops the others:

* a **reader** opens the source (OpenCV ``VideoCapture``; a folder is read in name order),
  samples it at the configured fps and reconnects with exponential backoff when a stream
  drops;
* a **worker** hands each sampled frame to the sink (the camera's pipeline). Between them is a
  one-frame slot: from a live stream (URL, device) a newer frame replaces one the worker has
  not taken yet (never fall behind the stream); from a file or folder the reader waits (no
  frame lost).

The camera's state is ``starting``, ``ok``, ``reconnecting`` (with the reason and the next
attempt), ``ended`` (a file or folder was read to its end) or ``failed`` (a reason that does
not get better by retrying: a missing file, an empty folder). Each change of state goes to
``on_status``; the agent publishes it as the gateway's retained status. The first failure of
a camera is logged once as an error naming the camera and the source; retries log at debug
level, so a dead URL gives one clear error, not one per attempt.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from pathlib import Path
from typing import Any

# FFmpeg's own log lines would repeat every failed attempt of a dead stream on stderr; our
# log says it once, clearly. (Read when OpenCV first uses FFmpeg.)
os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")

import cv2
import numpy as np

from edge.config import CameraConfig, SourceKind

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff"}

Sink = Callable[[np.ndarray, datetime], Any]
StatusCallback = Callable[[str, "CameraState", str], None]


class CameraState(StrEnum):
    STARTING = "starting"
    OK = "ok"
    RECONNECTING = "reconnecting"
    ENDED = "ended"
    FAILED = "failed"
    STOPPED = "stopped"


class SourceError(Exception):
    """The source cannot be opened or read; ``permanent`` ones are not retried."""

    def __init__(self, reason: str, *, permanent: bool = False) -> None:
        super().__init__(reason)
        self.reason = reason
        self.permanent = permanent


class EndOfSourceError(Exception):
    """A file or folder was read to its end."""


def redact(source: str | int) -> str:
    """The source for logs: a URL without user and password."""
    s = str(source)
    if "@" in s and "://" in s:
        scheme, rest = s.split("://", 1)
        return f"{scheme}://***@{rest.split('@', 1)[1]}"
    return s


# --- frame iterators ---------------------------------------------------------------------------


def _folder_frames(folder: Path, fps: float) -> Iterator[tuple[np.ndarray, float]]:
    """Images of ``folder`` in name order, each one 1/fps later than the previous."""
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise SourceError(
            f"no images ({', '.join(sorted(IMAGE_SUFFIXES))}) in {folder}", permanent=True
        )
    for i, path in enumerate(files):
        frame = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if frame is None:
            log.warning("camera folder %s: %s is not a readable image, skipped", folder, path.name)
            continue
        yield frame, i / fps


def _open_capture(source: str | int, kind: SourceKind, open_timeout_s: float) -> cv2.VideoCapture:
    if kind is SourceKind.FILE and not Path(str(source)).is_file():
        raise SourceError(f"no such video file: {source}", permanent=True)
    if kind is SourceKind.URL:
        params = [
            cv2.CAP_PROP_OPEN_TIMEOUT_MSEC,
            int(open_timeout_s * 1000),
            cv2.CAP_PROP_READ_TIMEOUT_MSEC,
            int(open_timeout_s * 1000),
        ]
        cap = cv2.VideoCapture(str(source), cv2.CAP_FFMPEG, params)
    elif kind is SourceKind.DEVICE:
        cap = cv2.VideoCapture(int(source))
    else:
        cap = cv2.VideoCapture(str(source))
    if not cap.isOpened():
        cap.release()
        what = {
            SourceKind.URL: "cannot open stream",
            SourceKind.DEVICE: "cannot open device",
            SourceKind.FILE: "cannot decode video file",
        }[kind]
        # a file that exists but does not decode will not decode next time either
        raise SourceError(f"{what} {redact(source)}", permanent=kind is SourceKind.FILE)
    with contextlib.suppress(cv2.error):
        cap.set(cv2.CAP_PROP_BUFFERSIZE, 1)  # live sources: the newest frame, not a backlog
    return cap


def _capture_frames(
    cap: cv2.VideoCapture, kind: SourceKind, fps: float
) -> Iterator[tuple[np.ndarray, float]]:
    """Frames sampled at ``fps``: by the video's own clock for a file (frames in between are
    grabbed, not decoded into images), by the wall clock for a live source (every frame is
    read so the stream never backs up; the ones in between are skipped)."""
    step = 1.0 / fps
    next_t = 0.0
    if kind is SourceKind.FILE:
        native = cap.get(cv2.CAP_PROP_FPS) or 0.0
        index = 0
        while True:
            if not cap.grab():
                return
            t = cap.get(cv2.CAP_PROP_POS_MSEC) / 1000.0
            if native > 0 and (t <= 0 and index > 0):
                t = index / native  # containers without timestamps
            index += 1
            if t + 1e-6 < next_t:
                continue
            ok, frame = cap.retrieve()
            if not ok:
                return
            next_t = max(next_t + step, t)
            yield frame, t
    else:
        start = time.monotonic()
        while True:
            ok, frame = cap.read()
            if not ok or frame is None:
                raise SourceError(
                    f"stream stopped delivering frames after {time.monotonic() - start:.0f}s"
                )
            t = time.monotonic() - start
            if t + 1e-6 < next_t:
                continue
            next_t = max(next_t + step, t)
            yield frame, t


# --- camera ------------------------------------------------------------------------------------


@dataclass
class CameraStats:
    frames_read: int = 0
    frames_processed: int = 0
    frames_skipped: int = 0  # live frames replaced before the worker took them
    errors: int = 0
    reconnects: int = 0
    last_frame: float | None = None  # time.monotonic() of the last frame read
    process_seconds: float = 0.0
    extra: dict[str, float] = field(default_factory=dict)


class Camera:
    """One camera's reader and worker threads."""

    def __init__(
        self,
        config: CameraConfig,
        sink: Sink,
        *,
        on_status: StatusCallback | None = None,
        realtime: bool = True,
        opencv_threads: int | None = None,
    ) -> None:
        self.config = config
        self.id = config.id
        self.sink = sink
        self.on_status = on_status
        self.realtime = realtime  # pace files and folders at fps like a live camera
        self.opencv_threads = opencv_threads
        self.state = CameraState.STARTING
        self.reason = ""
        self.stats = CameraStats()
        self._stop = threading.Event()
        self._slot: tuple[np.ndarray, datetime] | None = None
        self._slot_cv = threading.Condition()
        self._reader_done = False
        self._logged_error = False
        self._threads: list[threading.Thread] = []

    # --- lifecycle ----------------------------------------------------------------------------

    def start(self) -> Camera:
        for name, target in (("reader", self._read_loop), ("worker", self._work_loop)):
            t = threading.Thread(target=target, name=f"camera-{self.id}-{name}", daemon=True)
            t.start()
            self._threads.append(t)
        return self

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        with self._slot_cv:
            self._slot_cv.notify_all()
        for t in self._threads:
            t.join(timeout)
        if self.state not in (CameraState.FAILED, CameraState.ENDED):
            self._set_state(CameraState.STOPPED, "")

    def join(self, timeout: float | None = None) -> None:
        for t in self._threads:
            t.join(timeout)

    @property
    def running(self) -> bool:
        return any(t.is_alive() for t in self._threads)

    def _set_state(self, state: CameraState, reason: str) -> None:
        if (state, reason) == (self.state, self.reason):
            return
        self.state, self.reason = state, reason
        if self.on_status:
            try:
                self.on_status(self.id, state, reason)
            except Exception:
                log.exception("camera %s: status callback", self.id)

    def status_text(self) -> str:
        return f"{self.state.value}: {self.reason}" if self.reason else self.state.value

    # --- reader ---------------------------------------------------------------------------------

    def _fail(self, err: SourceError, attempt: int, delay: float) -> None:
        self.stats.errors += 1
        src = redact(self.config.source)
        if err.permanent:
            self._set_state(CameraState.FAILED, err.reason)
            log.error("camera %s (%s): %s; the camera is stopped", self.id, src, err.reason)
            return
        self._set_state(
            CameraState.RECONNECTING,
            f"{err.reason} (attempt {attempt}, next in {delay:.1f}s)",
        )
        if not self._logged_error:
            log.error(
                "camera %s (%s): %s; retrying with backoff up to %.0fs (further failures of "
                "this camera are logged at debug level)",
                self.id,
                src,
                err.reason,
                self.config.reconnect_max_s,
            )
            self._logged_error = True
        else:
            log.debug("camera %s: %s (attempt %d)", self.id, err.reason, attempt)

    def _frames(self) -> Iterator[tuple[np.ndarray, float]]:
        cfg = self.config
        kind = cfg.source_kind
        if kind is SourceKind.FOLDER:
            yield from _folder_frames(Path(str(cfg.source)), cfg.fps)
            return
        cap = _open_capture(cfg.source_url(), kind, cfg.open_timeout_s)
        try:
            yield from _capture_frames(cap, kind, cfg.fps)
        finally:
            cap.release()

    def _read_loop(self) -> None:
        if self.opencv_threads is not None:
            cv2.setNumThreads(self.opencv_threads)
        with contextlib.suppress(AttributeError, cv2.error):  # OpenCV's "can't open" warnings
            cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_ERROR)
        cfg = self.config
        live = cfg.source_kind in (SourceKind.URL, SourceKind.DEVICE)
        attempt = 0
        try:
            while not self._stop.is_set():
                try:
                    wall0 = time.monotonic()
                    ts0 = datetime.now(UTC)
                    for frame, t in self._frames():
                        if self._stop.is_set():
                            return
                        if attempt or self.state is not CameraState.OK:
                            if attempt:
                                log.info("camera %s: frames again", self.id)
                            attempt = 0
                            self._logged_error = False
                            self._set_state(CameraState.OK, "")
                        if not live and self.realtime:
                            delay = wall0 + t - time.monotonic()
                            if delay > 0 and self._stop.wait(delay):
                                return
                        ts = datetime.now(UTC) if live else ts0 + timedelta(seconds=t)
                        self.stats.frames_read += 1
                        self.stats.last_frame = time.monotonic()
                        self._hand_over(frame, ts, replace=live)
                    if live:
                        raise SourceError("stream ended")
                    if self.stats.frames_read == 0:
                        raise SourceError("no frames in the source", permanent=True)
                    if not cfg.loop:
                        raise EndOfSourceError
                except EndOfSourceError:
                    self._set_state(CameraState.ENDED, "end of the source")
                    log.info("camera %s: end of %s", self.id, redact(cfg.source))
                    return
                except SourceError as e:
                    attempt += 1
                    delay = min(
                        cfg.reconnect_max_s, cfg.reconnect_initial_s * 2 ** min(attempt - 1, 30)
                    )
                    self._fail(e, attempt, delay)
                    if e.permanent:
                        return
                    self.stats.reconnects += 1
                    if self._stop.wait(delay):
                        return
                except Exception as e:  # a bug or an OpenCV error: report, back off, retry
                    attempt += 1
                    delay = min(
                        cfg.reconnect_max_s, cfg.reconnect_initial_s * 2 ** min(attempt, 30)
                    )
                    self._fail(SourceError(f"{type(e).__name__}: {e}"), attempt, delay)
                    log.debug("camera %s", self.id, exc_info=True)
                    if self._stop.wait(delay):
                        return
        finally:
            with self._slot_cv:
                self._reader_done = True
                self._slot_cv.notify_all()

    def _hand_over(self, frame: np.ndarray, ts: datetime, *, replace: bool) -> None:
        with self._slot_cv:
            if self._slot is not None:
                if replace:
                    self.stats.frames_skipped += 1
                else:
                    while self._slot is not None and not self._stop.is_set():
                        self._slot_cv.wait(0.5)
            self._slot = (frame, ts)
            self._slot_cv.notify_all()

    # --- worker ---------------------------------------------------------------------------------

    def _work_loop(self) -> None:
        while True:
            with self._slot_cv:
                while self._slot is None and not self._reader_done and not self._stop.is_set():
                    self._slot_cv.wait(0.5)
                if self._stop.is_set() or (self._slot is None and self._reader_done):
                    return
                item = self._slot
                self._slot = None
                self._slot_cv.notify_all()
            assert item is not None
            frame, ts = item
            t0 = time.perf_counter()
            try:
                self.sink(frame, ts)
            except Exception:
                self.stats.errors += 1
                log.exception("camera %s: processing a frame failed", self.id)
            self.stats.process_seconds += time.perf_counter() - t0
            self.stats.frames_processed += 1


class Cameras:
    """All cameras of a gateway."""

    def __init__(self) -> None:
        self.cameras: dict[str, Camera] = {}

    def add(self, camera: Camera) -> Camera:
        self.cameras[camera.id] = camera
        return camera

    def start(self) -> None:
        for c in self.cameras.values():
            c.start()

    def stop(self) -> None:
        for c in self.cameras.values():
            c._stop.set()
        for c in self.cameras.values():
            c.stop()

    def status(self) -> dict[str, str]:
        return {f"camera.{c.id}": c.status_text()[:200] for c in self.cameras.values()}
