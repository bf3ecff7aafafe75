"""``smartsite datasets``: build the detector's training set."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Annotated

import typer

app = typer.Typer(help="Training data for the person / PPE detector.", no_args_is_help=True)


def _split_list(values: list[str] | None) -> list[str] | None:
    if not values:
        return None
    return [v for value in values for v in value.split(",") if v]


@app.command("build")
def build_cmd(
    out: Annotated[Path, typer.Option("--out", help="Output folder (ultralytics layout).")],
    sources: Annotated[
        list[str] | None,
        typer.Option("--sources", help="Source folders or keys (repeat or comma list); all."),
    ] = None,
    subset: Annotated[
        str | None,
        typer.Option(help="Export only these classes (comma list), from sources labelling all."),
    ] = None,
    root: Annotated[
        Path | None, typer.Option(help="Datasets root (default ../shared/datasets).")
    ] = None,
    limit: Annotated[
        int | None, typer.Option(help="First N images per source (quick runs).")
    ] = None,
    val_fraction: Annotated[float, typer.Option(help="Share of groups in val.")] = 0.15,
) -> None:
    """Convert, map, de-duplicate and split the shared labelled photos into OUT."""
    from datasets.build import build, counts, tree_digest
    from datasets.sources import SHARED

    t0 = time.perf_counter()
    try:
        result = build(
            out,
            root or SHARED,
            _split_list(sources),
            _split_list([subset]) if subset else None,
            limit,
            val_fraction,
        )
    except (ValueError, KeyError, FileExistsError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from exc
    seconds = time.perf_counter() - t0
    c = counts(result)
    images = {s: dict(v) for s, v in sorted(c["images"].items())}
    n = len(result.exported)
    typer.echo(f"wrote {n} images to {out} in {seconds:.1f} s; see {out}/CARD.md")
    typer.echo(
        json.dumps(
            {
                "datasets": "build",
                "images": images,
                "removed": {
                    "augmented_copies": result.stats["augmented_copies"],
                    "near_duplicates": result.stats["near_duplicates"],
                },
                "seconds": round(seconds, 1),
                "digest": tree_digest(out),
            },
            sort_keys=True,
        )
    )
