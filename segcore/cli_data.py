"""The data commands of ``segcore``: synth, dataset, split, stats, preprocess, and the
labelling tools' import-labels and export-coco (registered in :mod:`segcore.cli`)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from segcore.cli_common import OPTION_NAMES, ParamsOpt, out, read_params
from segcore.cli_options import Overrides, section_command
from segcore.params import (
    DEFAULT_PARAMS_FILE,
    DatasetParams,
    ImportLabelsParams,
    PreprocessStageParams,
    SplitParams,
    SynthParams,
)

# --------------------------------------------------------------------------- synth


@section_command(SynthParams, "synth", OPTION_NAMES)
def synth(overrides: Overrides, params_file: ParamsOpt = Path(DEFAULT_PARAMS_FILE)) -> None:
    """Generate the synthetic pill dataset (images and label images)."""
    from segcore.pipeline.stage_synth import run_synth

    params = read_params(params_file, "synth")
    p = overrides.apply(params.synth)
    out.print(run_synth(params.model_copy(update={"synth": p})).value)


# --------------------------------------------------------------------------- dataset


@section_command(DatasetParams, "dataset", OPTION_NAMES)
def dataset(overrides: Overrides, params_file: ParamsOpt = Path(DEFAULT_PARAMS_FILE)) -> None:
    """Read images and label images into the dataset table (read_dl_dataset_segmentation)."""
    from segcore.pipeline.stage_dataset import run_dataset

    params = read_params(params_file, "dataset")
    p = overrides.apply(params.dataset)
    out.print(run_dataset(params.model_copy(update={"dataset": p})).summary)


# --------------------------------------------------------------------------- split


@section_command(SplitParams, "split", OPTION_NAMES)
def split(overrides: Overrides, params_file: ParamsOpt = Path(DEFAULT_PARAMS_FILE)) -> None:
    """Split into train / validation / test, stratified by class presence (split_dl_dataset)."""
    from segcore.pipeline.stage_split import run_split

    params = read_params(params_file, "split")
    p = overrides.apply(params.split)
    out.print(run_split(params.model_copy(update={"split": p})).summary)


# --------------------------------------------------------------------------- stats


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
    from segcore.data.dldataset import DLDataset
    from segcore.data.stats import dataset_stats, print_stats, write_stats

    p = read_params(params_file)
    if dataset_file is None:
        dataset_file = p.split.out if Path(p.split.out).is_file() else p.dataset.out
    st = dataset_stats(DLDataset.load(dataset_file))
    print_stats(st, out)
    csv_path, json_path = write_stats(st, out_file)
    out.print(f"Written: {csv_path}, {json_path}")


# --------------------------------------------------------------------------- preprocess
# (segcore preprocess: see issue "Preprocessing")


@section_command(PreprocessStageParams, "preprocess", OPTION_NAMES)
def preprocess(overrides: Overrides, params_file: ParamsOpt = Path(DEFAULT_PARAMS_FILE)) -> None:
    """Preprocess images and labels, compute class weights and weight images
    (preprocess_dl_dataset, calculate_dl_segmentation_class_weights,
    gen_dl_segmentation_weight_images)."""
    from rich.table import Table

    from segcore.pipeline.stage_preprocess import run_preprocess

    params = read_params(params_file, "preprocess")
    p = overrides.apply(params.preprocess)
    stage = run_preprocess(params.model_copy(update={"preprocess": p}))
    result = stage.value
    ds = result.dataset
    table = Table(title="Class weights (train split, preprocessed labels)")
    for column in ("class id", "class name", "train pixels", "weight"):
        table.add_column(column, justify="left" if column == "class name" else "right")
    for cid, name, pixels, weight in zip(
        ds.class_ids, ds.class_names, result.train_pixels.tolist(), ds.class_weights, strict=True
    ):
        table.add_row(str(cid), name, str(pixels), f"{weight:.4g}")
    out.print(table)
    out.print(stage.summary)


# --------------------------------------------------------------------------- labels


@section_command(ImportLabelsParams, "import_labels", OPTION_NAMES)
def import_labels_command(
    overrides: Overrides,
    params_file: ParamsOpt = Path(DEFAULT_PARAMS_FILE),
    write: Annotated[
        bool,
        typer.Option(
            "--write",
            help="Write the classes into the parameter file: dataset.class_names/class_ids "
            "and import_labels.class_names/class_ids, and dataset.segmentation_dir := out_dir.",
        ),
    ] = False,
) -> None:
    """Turn a labelling tool's export (COCO JSON, CVAT for images 1.1 XML, LabelMe JSON
    folder, Label Studio JSON) into the label images `segcore dataset` reads. Every problem
    is listed at once and then nothing is written."""
    from rich.table import Table

    from segcore.annotations import import_labels
    from segcore.params import update_params_file

    params = read_params(params_file)
    p = overrides.apply(params.import_labels)
    result = import_labels(**p.import_kwargs())
    table = Table(title=f"Classes ({result.format} export)")
    table.add_column("class id", justify="right")
    table.add_column("class name")
    for cid, name in zip(result.class_ids, result.class_names, strict=True):
        table.add_row(str(cid), name)
    out.print(table)
    for o in result.overlaps[:20]:
        out.print(f"overlap: {o.image}: {o.top} covers {o.under} on {o.pixels} pixels")
    if len(result.overlaps) > 20:
        out.print(f"... and {len(result.overlaps) - 20} more overlaps")
    skipped = f", {len(result.skipped)} images without shapes skipped" if result.skipped else ""
    out.print(f"Labels: {result.written} label images -> {result.out_dir}{skipped}")
    if write:
        names, ids = list(result.class_names), list(result.class_ids)
        update_params_file(
            params_file,
            {
                ("dataset", "class_names"): names,
                ("dataset", "class_ids"): ids,
                ("dataset", "segmentation_dir"): p.out_dir,
                ("import_labels", "class_names"): names,
                ("import_labels", "class_ids"): ids,
            },
        )
        out.print(f"Written to {params_file}: dataset.class_names/class_ids, segmentation_dir")


def export_coco_command(
    seg_dir: Annotated[
        Path,
        typer.Argument(help="Segmentation images: `segcore infer` output or a label folder."),
    ],
    out_file: Annotated[Path, typer.Option("--out", "-o", help="COCO JSON file to write.")],
    image_dir: Annotated[
        Path | None,
        typer.Option(
            "--images", help="The images, for file names and sizes as the labelling tool has them."
        ),
    ] = None,
    encoding: Annotated[
        str, typer.Option(help="rle (exact masks) or polygon (editable outlines).")
    ] = "rle",
    params_file: ParamsOpt = Path(DEFAULT_PARAMS_FILE),
) -> None:
    """Export segmentation images as COCO annotations (classes from dataset.class_names and
    class_ids), to correct predictions in a labelling tool and import them back."""
    from segcore.annotations import export_coco

    d = read_params(params_file).dataset
    path = export_coco(seg_dir, image_dir, out_file, d.class_names, d.class_ids, encoding=encoding)  # type: ignore[arg-type]
    out.print(f"COCO: {path}")
