"""BIM benchmark: per IFC model, the import (check, parse, space outlines, one transaction)
against the limit — bare ``ifcopenshell.open`` and touching every IfcProduct — in time and
peak memory, and the GLB export time of each storey.

Each measurement runs in a fresh process, so peak RSS is that step's alone and nothing is
warm from the step before.
"""

from __future__ import annotations

import os
import platform
import resource
import tempfile
import time
import uuid
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from smartsite.settings import Settings

SHARED_IFC = Path(__file__).resolve().parents[2] / "shared" / "datasets" / "ifc"


def default_models(directory: Path | None = None) -> list[Path]:
    """Every *.ifc under ``directory`` (default ../shared/datasets/ifc, else /work/shared)."""
    roots = [directory] if directory else [SHARED_IFC, Path("/work/shared/datasets/ifc")]
    for root in roots:
        if root and root.is_dir():
            return sorted(root.rglob("*.ifc"), key=lambda p: p.stat().st_size)
    return []


def _rss_mb() -> float:
    with Path("/proc/self/statm").open() as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def _peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def _limit(path: str) -> dict[str, Any]:
    import ifcopenshell

    base = _rss_mb()
    t0 = time.perf_counter()
    f = ifcopenshell.open(path)
    n = 0
    for p in f.by_type("IfcProduct"):
        _ = p.GlobalId  # touch each entity: the least an import must do
        n += 1
    return {
        "seconds": time.perf_counter() - t0,
        "peak_mb": _peak_mb(),
        "base_mb": base,
        "products": n,
        "schema": f.schema_identifier,
    }


def _import(path: str, url: str, project: str) -> dict[str, Any]:
    from bim.store import import_model
    from smartsite.db import connect

    base = _rss_mb()
    with connect(url, autocommit=True) as conn:
        t0 = time.perf_counter()
        report = import_model(conn, project, Path(path), create_project=True)
        seconds = time.perf_counter() - t0
    return {
        "seconds": seconds,
        "peak_mb": _peak_mb(),
        "base_mb": base,
        "counts": report.model.counts,
        "phases": report.phases,
    }


def _geometry(path: str, cache_dir: str) -> list[dict[str, Any]]:
    import hashlib

    import ifcopenshell

    from bim.geometry import GlbCache

    data = Path(path).read_bytes()
    sha = hashlib.sha256(data).hexdigest()
    ifc = ifcopenshell.open(path)
    cache = GlbCache(Path(cache_dir))
    out = []
    for s in cache.manifest(sha, lambda: ifc).storeys:
        file, seconds = cache.storey(sha, s.id, lambda: ifc)
        out.append(
            {
                "storey": s.name or s.id,
                "products": len(s.products),
                "seconds": seconds or 0.0,
                "bytes": file.stat().st_size,
            }
        )
    return out


def _in_child(fn: Any, *args: Any) -> Any:
    with ProcessPoolExecutor(1, mp_context=get_context("spawn")) as pool:
        return pool.submit(fn, *args).result()


def run_bench(
    settings: Settings, console: Console, models: list[Path], *, geometry: bool = True
) -> dict[str, Any]:
    from smartsite.db import connect
    from smartsite.db.migrate import upgrade
    from smartsite.embedded import services

    results: list[dict[str, Any]] = []
    run = uuid.uuid4().hex[:6]
    with services(settings, need_mqtt=False) as svc, tempfile.TemporaryDirectory() as tmp:
        upgrade(svc.database_url, settings)
        projects = []
        try:
            for i, path in enumerate(models):
                console.print(f"[dim]{path.name}: limit, import, geometry…[/dim]")
                limit = _in_child(_limit, str(path))
                project = f"BENCH-BIM-{run}-{i}"
                projects.append(project)
                imp = _in_child(_import, str(path), svc.database_url, project)
                storeys = _in_child(_geometry, str(path), tmp) if geometry else []
                results.append(
                    {
                        "model": path.name,
                        "schema": limit["schema"],
                        "bytes": path.stat().st_size,
                        "products": limit["products"],
                        "elements": imp["counts"]["elements"],
                        "storeys_n": imp["counts"]["storeys"],
                        "limit_s": round(limit["seconds"], 3),
                        "limit_peak_mb": round(limit["peak_mb"], 1),
                        "limit_delta_mb": round(limit["peak_mb"] - limit["base_mb"], 1),
                        "import_s": round(imp["seconds"], 3),
                        "import_peak_mb": round(imp["peak_mb"], 1),
                        "import_delta_mb": round(imp["peak_mb"] - imp["base_mb"], 1),
                        "import_over_limit": round(imp["seconds"] / max(limit["seconds"], 1e-6), 1),
                        "import_phases_s": {k: round(v, 3) for k, v in imp["phases"].items()},
                        "storeys": [{**s, "seconds": round(s["seconds"], 3)} for s in storeys],
                    }
                )
        finally:
            with connect(svc.database_url, autocommit=True) as conn:
                conn.execute("DELETE FROM projects WHERE id = ANY(%s)", (projects,))

    table = Table(title="BIM import vs the limit: bare ifcopenshell.open + every IfcProduct")
    for col in ("model", "schema", "MB", "products", "limit s", "import s", "×", "parse/geom/db s"):
        table.add_column(col, justify="left" if col == "model" else "right")
    table.add_column("peak MB limit / import (Δ)", justify="right")
    for r in results:
        ph = r["import_phases_s"]
        table.add_row(
            r["model"],
            r["schema"],
            f"{r['bytes'] / 2**20:.1f}",
            str(r["products"]),
            f"{r['limit_s']:.2f}",
            f"{r['import_s']:.2f}",
            f"{r['import_over_limit']:.1f}",
            f"{ph['parse']:.2f}/{ph['outlines']:.2f}/{ph['store']:.2f}",
            f"{r['limit_peak_mb']:.0f} (+{r['limit_delta_mb']:.0f}) / "
            f"{r['import_peak_mb']:.0f} (+{r['import_delta_mb']:.0f})",
        )
    console.print(table)
    if geometry:
        glb = Table(title="GLB export per storey (ifcopenshell glTF serializer, fresh process)")
        for col in ("model", "storey", "products", "seconds", "KiB"):
            glb.add_column(col, justify="left" if col in ("model", "storey") else "right")
        for r in results:
            for st in r["storeys"]:
                glb.add_row(
                    r["model"],
                    st["storey"],
                    str(st["products"]),
                    f"{st['seconds']:.2f}",
                    f"{st['bytes'] / 1024:.0f}",
                )
        console.print(glb)
    console.print(
        "import = check + parse + spatial tree + quantities + tasks + space outlines "
        "(ifcopenshell.geom) + one PostgreSQL transaction (COPY); Δ = peak over the process's "
        "RSS after its imports. GLB = ifcopenshell's glTF serializer, one file per storey."
    )
    return {
        "bench": "bim",
        "machine": f"{platform.machine()} {os.cpu_count()} CPU",
        "models": results,
        "total_import_s": round(sum(r["import_s"] for r in results), 3),
        "total_limit_s": round(sum(r["limit_s"] for r in results), 3),
        "total_glb_s": round(sum(s["seconds"] for r in results for s in r["storeys"]), 3),
    }
