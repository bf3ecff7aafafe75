"""The hub keeps its gateways' face galleries in step with enrolment.

Migration 0017 announces on the ``face_gallery`` channel every project whose gallery may have
changed (an enrolment added or removed, a worker who leaves, a worker joining or leaving the
project, a gateway registered or moved). :class:`GalleryPublisher` LISTENs there, gathers
the announcements for a moment (a bulk import is one republish per project, not one per row)
and retains the project's :class:`FaceGallery` anew on each of its active gateways' ``gallery``
topics, as the hub (the same publish as ``smartsite edge push-config``, gallery only: the
retained config with zones and thresholds is left alone). A removed enrolment is thus gone
from the gateways within seconds instead of at the next push-config.

A notification can be missed (the hub down, the database connection lost), and time alone
changes a gallery (a worker's ``left_on`` date passing), so the publisher also republishes
every project with an active gateway when it starts, after every reconnection to the
database, and every ``resync_s`` (an hour by default).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterable

import psycopg

from server.edge_config import EdgeConfigError, galleries, publish_galleries
from smartsite.db import connect
from smartsite.protocol.messages import FaceGallery
from smartsite.secrets import secret_key
from smartsite.settings import MqttEndpoint, Settings

log = logging.getLogger(__name__)

CHANNEL = "face_gallery"
RETRY_S = 10.0  # after a failed publish: the pending projects again, then
MAX_GATHER_S = 5.0  # a steady stream of notifications still publishes this often


class GalleryPublisher:
    """A daemon thread republishing a project's retained galleries when it is announced."""

    def __init__(
        self,
        database_url: str,
        endpoint: MqttEndpoint,
        settings: Settings,
        *,
        debounce_s: float = 0.5,
        resync_s: float = 3600.0,
        timeout_s: float = 30.0,
    ) -> None:
        self.database_url = database_url
        self.endpoint = endpoint
        self.prefix = settings.topic_prefix
        self.key = secret_key(settings)
        self.debounce_s = debounce_s
        self.resync_s = resync_s
        self.timeout_s = timeout_s
        self.published = 0  # galleries retained since start
        self.resyncs = 0  # full resyncs done
        self.listening = threading.Event()  # set once LISTEN is in place (the first time)
        self._sent: dict[tuple[str, str], str] = {}  # (project, gateway) -> version retained
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="gallery-sync", daemon=True)

    def start(self) -> GalleryPublisher:
        self._thread.start()
        return self

    def stop(self, timeout: float = 30.0) -> None:
        self._stop.set()
        self._thread.join(timeout)

    def sync(self, projects: Iterable[str] | None = None, *, force: bool = False) -> int:
        """Retain the current gallery of each active gateway of ``projects`` (None: every
        project with a gateway), and delete the retained gallery of the project's inactive
        gateways and of those this publisher served there before (moved away); returns how
        many topics were written. Without ``force`` what this publisher already retained
        unchanged is skipped."""
        items: list[FaceGallery] = []
        clear: list[tuple[str, str]] = []
        with connect(self.database_url, autocommit=True) as conn:
            if projects is None:
                projects = [
                    str(r[0])
                    for r in conn.execute("SELECT project_id FROM devices WHERE kind = 'gateway'")
                ]
            for project_id in sorted(set(projects)):
                try:
                    current = galleries(conn, self.key, project_id)
                except EdgeConfigError as e:  # over the size limit: the others still go
                    log.error("gallery sync: project %s not published: %s", project_id, e)
                    continue
                items += current
                served = {g.device for g in current}
                inactive = conn.execute(
                    "SELECT id FROM devices WHERE project_id = %s AND kind = 'gateway'"
                    " AND NOT active",
                    (project_id,),
                ).fetchall()
                gone = {str(r[0]) for r in inactive}
                gone |= {d for p, d in self._sent if p == project_id and d not in served}
                clear += [(project_id, d) for d in sorted(gone)]
        if not force:
            items = [g for g in items if self._sent.get((g.project, g.device)) != g.version]
            clear = [c for c in clear if self._sent.get(c) != ""]
        if items or clear:
            publish_galleries(self.endpoint, self.prefix, items, self.timeout_s, clear=clear)
        for c in clear:
            self._sent[c] = ""
            log.info("gallery sync: %s/%s gallery deleted (not an active gateway)", *c)
        for g in items:
            self._sent[(g.project, g.device)] = g.version
            log.info(
                "gallery sync: %s/%s gallery %s (%d workers)",
                g.project,
                g.device,
                g.version[:12],
                len(g.workers),
            )
        self.published += len(items) + len(clear)
        return len(items) + len(clear)

    def _run(self) -> None:
        listener: psycopg.Connection | None = None
        pending: set[str] = set()
        next_resync = 0.0  # monotonic time of the next full resync; 0: now
        while not self._stop.is_set():
            try:
                if listener is None or listener.closed:
                    listener = connect(self.database_url, autocommit=True)
                    listener.execute(f"LISTEN {CHANNEL}")
                    self.listening.set()
                    next_resync = 0.0  # whatever was announced meanwhile went unheard
                if time.monotonic() >= next_resync:
                    try:
                        self.sync(force=True)
                        self.resyncs += 1
                        pending.clear()
                        next_resync = time.monotonic() + self.resync_s
                    except EdgeConfigError as e:  # the broker: the whole resync again soon
                        log.warning("gallery sync: resync failed (%s); retrying", e)
                        next_resync = time.monotonic() + RETRY_S
                pending |= self._gather(listener, next_resync)
                if pending:
                    try:
                        self.sync(pending)
                        pending.clear()
                    except EdgeConfigError as e:
                        log.warning("gallery sync: %s not published (%s); retrying", pending, e)
                        self._stop.wait(RETRY_S)
            except psycopg.OperationalError as exc:
                log.warning("gallery sync: database unavailable (%s); retrying", exc)
                if listener is not None:
                    listener.close()
                listener = None
                self._stop.wait(2.0)
            except Exception:
                log.exception("gallery sync failed; resyncing shortly")
                next_resync = time.monotonic() + RETRY_S
                self._stop.wait(RETRY_S)
        if listener is not None:
            listener.close()

    def _gather(self, listener: psycopg.Connection, until: float) -> set[str]:
        """The projects announced: waits (in slices of a second, so that stop() is heard)
        until one is, or ``until``; then keeps gathering until ``debounce_s`` passes
        without another (at most ``MAX_GATHER_S`` in all)."""
        projects: set[str] = set()
        deadline = until  # first: the next resync; once announced: the end of the quiet
        last = until
        while not self._stop.is_set():
            wait = min(deadline, last) - time.monotonic()
            if wait <= 0:
                break
            for n in listener.notifies(timeout=min(wait, 1.0), stop_after=1):
                now = time.monotonic()
                if not projects:
                    last = now + MAX_GATHER_S
                projects.add(n.payload)
                deadline = now + self.debounce_s
        return projects
