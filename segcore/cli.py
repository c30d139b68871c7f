"""The ``segcore`` command line: one command per stage, thin wrappers over segcore functions.

Every command reads ``params.yaml`` (``--params`` to use another file); its options
override single keys of its section. Bad input ends with a message that names the file
or key and the fix, and exit code 2, never a traceback.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from segcore.errors import EXIT_USER_ERROR, SegcoreError
from segcore.params import DEFAULT_PARAMS_FILE, Params, load_params, override

app = typer.Typer(
    name="segcore",
    help="Semantic segmentation for industrial inspection: HALCON's workflow as a pipeline.\n\n"
    "Stages in order: synth -> dataset -> split -> preprocess -> train -> evaluate -> register; "
    "infer and export-onnx use a trained model bundle.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode="rich",
    context_settings={"help_option_names": ["-h", "--help"]},
)

out = Console()
err_console = Console(stderr=True)

ParamsOpt = Annotated[
    Path,
    typer.Option("--params", "-p", help="Parameter file; options below override its keys."),
]


def _params(path: Path) -> Params:
    return load_params(path)


# --------------------------------------------------------------------------- synth


@app.command()
def synth(
    params_file: ParamsOpt = Path(DEFAULT_PARAMS_FILE),
    out_dir: Annotated[
        str | None, typer.Option(help="Folder for images/ and labels/ (synth.out_dir).")
    ] = None,
    num_images: Annotated[
        int | None, typer.Option(help="Number of images (synth.num_images).")
    ] = None,
    seed: Annotated[int | None, typer.Option(help="Random seed (synth.seed).")] = None,
) -> None:
    """Generate the synthetic pill dataset (images and label images)."""
    from segcore.synth import generate_pills

    p = override(_params(params_file).synth, out_dir=out_dir, num_images=num_images, seed=seed)
    summary = generate_pills(
        p.out_dir,
        num_images=p.num_images,
        width=p.width,
        height=p.height,
        defect_free_fraction=p.defect_free_fraction,
        seed=p.seed,
    )
    out.print(summary)


# --------------------------------------------------------------------------- dataset


@app.command()
def dataset(
    params_file: ParamsOpt = Path(DEFAULT_PARAMS_FILE),
    image_dir: Annotated[
        str | None, typer.Option(help="Folder of images (dataset.image_dir).")
    ] = None,
    segmentation_dir: Annotated[
        str | None, typer.Option(help="Folder of label images (dataset.segmentation_dir).")
    ] = None,
    label_prefix: Annotated[
        str | None, typer.Option(help="Label file name prefix (dataset.label_prefix).")
    ] = None,
    label_suffix: Annotated[
        str | None, typer.Option(help="Label file name suffix (dataset.label_suffix).")
    ] = None,
    ignore_unmatched: Annotated[
        bool | None,
        typer.Option(
            "--ignore-unmatched/--no-ignore-unmatched",
            help="Skip unpaired images/labels (dataset.ignore_unmatched).",
        ),
    ] = None,
    out_file: Annotated[
        str | None, typer.Option("--out", help="Dataset table to write (dataset.out).")
    ] = None,
) -> None:
    """Read images and label images into the dataset table (read_dl_dataset_segmentation)."""
    from segcore.dataset import read_dataset

    p = override(
        _params(params_file).dataset,
        image_dir=image_dir,
        segmentation_dir=segmentation_dir,
        label_prefix=label_prefix,
        label_suffix=label_suffix,
        ignore_unmatched=ignore_unmatched,
        out=out_file,
        option_names={"out": "--out"},
    )
    ds = read_dataset(
        p.image_dir,
        p.segmentation_dir,
        p.class_names,
        p.class_ids,
        label_prefix=p.label_prefix,
        label_suffix=p.label_suffix,
        ignore_unmatched=p.ignore_unmatched,
    )
    path = ds.save(p.out)
    out.print(f"Dataset: {len(ds)} samples, {len(ds.class_ids)} classes -> {path}")


# --------------------------------------------------------------------------- split


@app.command()
def split(
    params_file: ParamsOpt = Path(DEFAULT_PARAMS_FILE),
    training_percent: Annotated[
        float | None, typer.Option(help="Percent for training (split.training_percent).")
    ] = None,
    validation_percent: Annotated[
        float | None,
        typer.Option(help="Percent for validation; the rest is test (split.validation_percent)."),
    ] = None,
    seed: Annotated[int | None, typer.Option(help="Random seed (split.seed).")] = None,
    overwrite: Annotated[
        bool | None,
        typer.Option("--overwrite/--keep", help="Re-split an existing split (split.overwrite)."),
    ] = None,
) -> None:
    """Split into train / validation / test, stratified by class presence (split_dl_dataset)."""
    from segcore.dldataset import DLDataset
    from segcore.split import split_dataset

    p = override(
        _params(params_file).split,
        training_percent=training_percent,
        validation_percent=validation_percent,
        seed=seed,
        overwrite=overwrite,
    )
    loaded = DLDataset.load(p.dataset)
    ds = split_dataset(
        loaded,
        training_percent=p.training_percent,
        validation_percent=p.validation_percent,
        seed=p.seed,
        overwrite=p.overwrite,
    )
    if loaded.has_split and not p.overwrite:
        out.print(f"{p.dataset} already has a split: kept it (--overwrite re-splits).")
    path = ds.save(p.out)
    counts = ds.samples["split"].value_counts()
    summary = ", ".join(f"{name} {counts.get(name, 0)}" for name in ("train", "validation", "test"))
    out.print(f"Split: {summary} -> {path}")


# --------------------------------------------------------------------------- stats


@app.command()
def stats(
    params_file: ParamsOpt = Path(DEFAULT_PARAMS_FILE),
    dataset_file: Annotated[
        str | None,
        typer.Option("--dataset", help="Dataset table (default: split.out, else dataset.out)."),
    ] = None,
    out_file: Annotated[
        Path,
        typer.Option("--out", help="Where to write the statistics (CSV; JSON beside it)."),
    ] = Path("reports/dataset_stats.csv"),
) -> None:
    """Class pixel frequencies and per-split sample counts."""
    from segcore.dldataset import DLDataset
    from segcore.stats import dataset_stats, print_stats, write_stats

    p = _params(params_file)
    if dataset_file is None:
        dataset_file = p.split.out if Path(p.split.out).is_file() else p.dataset.out
    st = dataset_stats(DLDataset.load(dataset_file))
    print_stats(st, out)
    csv_path, json_path = write_stats(st, out_file)
    out.print(f"Written: {csv_path}, {json_path}")


# --------------------------------------------------------------------------- preprocess
# (segcore preprocess: see issue "Preprocessing")


@app.command()
def preprocess(
    params_file: ParamsOpt = Path(DEFAULT_PARAMS_FILE),
    dataset_file: Annotated[
        str | None,
        typer.Option("--dataset", help="Split dataset table to preprocess (preprocess.dataset)."),
    ] = None,
    out_dir: Annotated[
        str | None,
        typer.Option(help="Folder for dataset.parquet and samples/ (preprocess.out_dir)."),
    ] = None,
    workers: Annotated[
        int | None,
        typer.Option(
            help="Worker processes; 0 = one per CPU core, 1 = no extra process "
            "(preprocess.workers)."
        ),
    ] = None,
    overwrite: Annotated[
        bool | None,
        typer.Option(
            "--overwrite/--keep",
            help="Rewrite every sample, or keep the up-to-date ones (preprocess.overwrite).",
        ),
    ] = None,
) -> None:
    """Preprocess images and labels, compute class weights and weight images
    (preprocess_dl_dataset, calculate_dl_segmentation_class_weights,
    gen_dl_segmentation_weight_images)."""
    from rich.table import Table

    from segcore.dldataset import DLDataset
    from segcore.preprocess import run_preprocess

    p = override(
        _params(params_file).preprocess,
        dataset=dataset_file,
        out_dir=out_dir,
        workers=workers,
        overwrite=overwrite,
        option_names={"dataset": "--dataset"},
    )
    result = run_preprocess(
        DLDataset.load(p.dataset),
        p.param,
        p.out_dir,
        class_weights=p.class_weights,
        workers=p.workers,
        overwrite=p.overwrite,
    )
    ds = result.dataset
    table = Table(title="Class weights (train split, preprocessed labels)")
    for column in ("class id", "class name", "train pixels", "weight"):
        table.add_column(column, justify="left" if column == "class name" else "right")
    for cid, name, pixels, weight in zip(
        ds.class_ids, ds.class_names, result.train_pixels.tolist(), ds.class_weights, strict=True
    ):
        table.add_row(str(cid), name, str(pixels), f"{weight:.4g}")
    out.print(table)
    out.print(
        f"Preprocess: {len(ds)} samples: {result.written} written, {result.skipped} skipped "
        f"(up to date), {result.removed} stale files removed -> {result.path}"
    )


# --------------------------------------------------------------------------- train
# (segcore train: see issue "Models and training")

# --------------------------------------------------------------------------- evaluate / infer / export-onnx
# (see issue "Evaluation, report with plots, inference on new images, ONNX export")

# --------------------------------------------------------------------------- register
# (see issue "The pipeline")


def main() -> None:
    """Console-script entry point: user errors become a message and exit code 2."""
    try:
        app()
    except SegcoreError as err:
        err_console.print(f"[bold red]error:[/] {err.render()}", highlight=False)
        sys.exit(EXIT_USER_ERROR)
    except KeyboardInterrupt:
        err_console.print(
            "[yellow]interrupted[/]: nothing half-written is kept; run again to finish"
        )
        sys.exit(130)


if __name__ == "__main__":
    main()
