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

from segcore.common.errors import EXIT_USER_ERROR, SegcoreError
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
    from segcore.pipeline.stages import run_synth

    params = _params(params_file)
    p = override(params.synth, out_dir=out_dir, num_images=num_images, seed=seed)
    out.print(run_synth(params.model_copy(update={"synth": p})).value)


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
    from segcore.pipeline.stages import run_dataset

    params = _params(params_file)
    p = override(
        params.dataset,
        image_dir=image_dir,
        segmentation_dir=segmentation_dir,
        label_prefix=label_prefix,
        label_suffix=label_suffix,
        ignore_unmatched=ignore_unmatched,
        out=out_file,
        option_names={"out": "--out"},
    )
    out.print(run_dataset(params.model_copy(update={"dataset": p})).summary)


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
    from segcore.pipeline.stages import run_split

    params = _params(params_file)
    p = override(
        params.split,
        training_percent=training_percent,
        validation_percent=validation_percent,
        seed=seed,
        overwrite=overwrite,
    )
    out.print(run_split(params.model_copy(update={"split": p})).summary)


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
    from segcore.data.dldataset import DLDataset
    from segcore.data.stats import dataset_stats, print_stats, write_stats

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

    from segcore.pipeline.stages import run_preprocess

    params = _params(params_file)
    p = override(
        params.preprocess,
        dataset=dataset_file,
        out_dir=out_dir,
        workers=workers,
        overwrite=overwrite,
        option_names={"dataset": "--dataset"},
    )
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


# --------------------------------------------------------------------------- train
# (segcore train: see issue "Models and training")


@app.command()
def train(
    params_file: ParamsOpt = Path(DEFAULT_PARAMS_FILE),
    resume: Annotated[
        bool,
        typer.Option(
            "--resume", help="Continue from OUT_DIR/checkpoint.pt (same params; --epochs may grow)."
        ),
    ] = False,
    epochs: Annotated[
        int | None, typer.Option("--epochs", help="Number of epochs (train.num_epochs).")
    ] = None,
    device: Annotated[
        str | None, typer.Option(help="auto, cpu, cuda or cuda:N (train.device).")
    ] = None,
    out_dir: Annotated[
        str | None, typer.Option(help="Folder for bundles and checkpoint (train.out_dir).")
    ] = None,
    dataset_file: Annotated[
        str | None, typer.Option("--dataset", help="Preprocessed dataset table (train.dataset).")
    ] = None,
    history: Annotated[
        str | None, typer.Option(help="Per-epoch history CSV (train.history).")
    ] = None,
    model: Annotated[
        str | None,
        typer.Option(help="compact, enhanced or an smp architecture, e.g. unet (train.model)."),
    ] = None,
    batch_size: Annotated[
        int | None, typer.Option(help="Samples per step and process (train.batch_size).")
    ] = None,
    learning_rate: Annotated[
        float | None, typer.Option(help="Initial learning rate (train.learning_rate).")
    ] = None,
    seed: Annotated[int | None, typer.Option(help="Random seed (train.seed).")] = None,
    num_threads: Annotated[
        int | None, typer.Option(help="CPU threads; 0 = torch's default (train.num_threads).")
    ] = None,
) -> None:
    """Train a segmentation model on the preprocessed train split (train_dl_model).

    Writes the bundles (best/, final/, ...), the checkpoint and the per-epoch history.
    Distributed: `torchrun --nproc_per_node=N -m segcore.cli train` (gloo on CPU, nccl on
    CUDA); batch size is per process and rank 0 writes.
    """
    import os

    from segcore.pipeline.stages import run_train

    params = _params(params_file)
    p = override(
        params.train,
        num_epochs=epochs,
        device=device,
        out_dir=out_dir,
        dataset=dataset_file,
        history=history,
        model=model,
        batch_size=batch_size,
        learning_rate=learning_rate,
        seed=seed,
        num_threads=num_threads,
        option_names={"num_epochs": "--epochs", "dataset": "--dataset"},
    )
    stage = run_train(params.model_copy(update={"train": p}), resume=resume)
    if os.environ.get("RANK", "0") != "0":
        return
    out.print(stage.summary)
    if stage.value is not None:
        out.print(f"History: {stage.value.history_path}; checkpoint: {stage.value.checkpoint}")


# --------------------------------------------------------------------------- evaluate / infer / export-onnx
# (see issue "Evaluation, report with plots, inference on new images, ONNX export")


@app.command()
def evaluate(
    params_file: ParamsOpt = Path(DEFAULT_PARAMS_FILE),
    bundle: Annotated[
        str | None, typer.Option(help="Model bundle to evaluate (evaluate.bundle).")
    ] = None,
    dataset_file: Annotated[
        str | None,
        typer.Option("--dataset", help="Preprocessed dataset table (evaluate.dataset)."),
    ] = None,
    split: Annotated[
        str | None, typer.Option(help="train, validation or test (evaluate.split).")
    ] = None,
    measures: Annotated[
        list[str] | None,
        typer.Option(
            "--measure",
            help="A measure to compute; repeat for several; all gives every one "
            "(evaluate.measures).",
        ),
    ] = None,
    batch_size: Annotated[
        int | None, typer.Option(help="Samples per forward pass (evaluate.batch_size).")
    ] = None,
    worst_k: Annotated[
        int | None, typer.Option(help="Worst samples shown in the report (evaluate.worst_k).")
    ] = None,
    report_dir: Annotated[
        str | None,
        typer.Option(help="Folder for metrics.json and the report (evaluate.report_dir)."),
    ] = None,
    device: Annotated[
        str | None, typer.Option(help="auto, cpu, cuda or cuda:N (evaluate.device).")
    ] = None,
) -> None:
    """Evaluate a model on one split and write metrics.json, plots and report.html
    (evaluate_dl_model, dev_display_segmentation_evaluation)."""
    from segcore.pipeline.stages import run_evaluate

    params = _params(params_file)
    p = override(
        params.evaluate,
        bundle=bundle,
        dataset=dataset_file,
        split=split,
        measures=measures,
        batch_size=batch_size,
        worst_k=worst_k,
        report_dir=report_dir,
        device=device,
        option_names={"dataset": "--dataset", "measures": "--measure"},
    )
    stage = run_evaluate(params.model_copy(update={"evaluate": p}))
    out.print(stage.summary)
    out.print(f"Metrics: {Path(p.report_dir) / 'metrics.json'}")


@app.command()
def infer(
    bundle: Annotated[Path, typer.Argument(help="Model bundle folder, e.g. models/best.")],
    inputs: Annotated[
        list[Path], typer.Argument(help="Image files and folders (searched recursively).")
    ],
    out_dir: Annotated[Path, typer.Option("--out", "-o", help="Output folder.")],
    params_file: ParamsOpt = Path(DEFAULT_PARAMS_FILE),
    batch_size: Annotated[
        int | None, typer.Option(help="Images per forward pass (infer.batch_size).")
    ] = None,
    min_area: Annotated[
        int | None,
        typer.Option(help="Smallest region (pixels) in the regions table (infer.min_area)."),
    ] = None,
    backend: Annotated[
        str | None,
        typer.Option(help="torch, or onnx for the bundle's model.onnx (infer.backend)."),
    ] = None,
    device: Annotated[
        str | None, typer.Option(help="auto, cpu, cuda or cuda:N (infer.device).")
    ] = None,
    workers: Annotated[
        int | None,
        typer.Option(
            help="Threads for decoding and writing; 0 = half the cores, 1-4 (infer.workers)."
        ),
    ] = None,
) -> None:
    """Segment new images: per image the segmentation (class ids), confidence and overlay
    images, and one regions table (apply_dl_model). Exit code 3 when some inputs failed.
    Without a params.yaml in the working directory the infer defaults apply."""
    from segcore.common.errors import EXIT_PARTIAL_FAILURE
    from segcore.infer.apply import load_model
    from segcore.infer.files import run_inference
    from segcore.params import InferParams

    # Inference runs anywhere: without a params.yaml beside it, the defaults apply.
    default_missing = params_file == Path(DEFAULT_PARAMS_FILE) and not params_file.is_file()
    p = override(
        InferParams() if default_missing else _params(params_file).infer,
        batch_size=batch_size,
        min_area=min_area,
        backend=backend,
        device=device,
        workers=workers,
    )
    model = load_model(bundle, device=p.device, backend=p.backend)
    summary = run_inference(
        model,
        inputs,
        out_dir,
        batch_size=p.batch_size,
        min_area=p.min_area,
        workers=p.workers or None,
    )
    out.print(summary.render(), highlight=False)
    if summary.failed:
        raise typer.Exit(EXIT_PARTIAL_FAILURE)


@app.command("export-onnx")
def export_onnx_command(
    bundle: Annotated[Path, typer.Argument(help="Model bundle folder, e.g. models/best.")],
    out_file: Annotated[
        Path | None,
        typer.Option("--out", help="ONNX file (default: BUNDLE/model.onnx, used by infer)."),
    ] = None,
    opset: Annotated[int, typer.Option(help="ONNX opset, 17 or newer.")] = 17,
) -> None:
    """Export a bundle to ONNX (dynamic batch, and height/width where the network allows)
    for `segcore infer --backend onnx` and other runtimes."""
    from segcore.infer.onnx import describe, export_onnx

    path = export_onnx(bundle, out_file, opset=opset)
    out.print(f"ONNX: {path} ({describe(path)})")


# --------------------------------------------------------------------------- register
# (see issue "The pipeline")


@app.command()
def register(params_file: ParamsOpt = Path(DEFAULT_PARAMS_FILE)) -> None:
    """Register the evaluated model in MLflow (alias challenger) and move alias champion to
    it when its test measure (register.comparison_key) is at least the champion's."""
    from segcore.pipeline.stages import run_register

    out.print(run_register(_params(params_file)).summary)


def main() -> None:
    """Console-script entry point: user errors become a message and exit code 2."""
    from segcore.common.io import quiet_opencv

    quiet_opencv()
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
