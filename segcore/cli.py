"""The ``segcore`` command line: one command per stage, thin wrappers over segcore functions.

Every command reads ``params.yaml`` (``--params`` to use another file); its options
override single keys of its section. Those options are generated from the section's
fields (:mod:`segcore.cli_options`), so a new parameter is on the command line with its
docstring as help; this module declares only what is not a parameter. Bad input ends
with a message that names the file or key and the fix, and exit code 2, never a
traceback.
"""

from __future__ import annotations

import signal
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from segcore import cli_project
from segcore.cli_options import Overrides, section_command
from segcore.common.errors import EXIT_USER_ERROR, SegcoreError
from segcore.params import (
    DEFAULT_PARAMS_FILE,
    CalibrationParams,
    DatasetParams,
    EvaluateParams,
    ImportLabelsParams,
    InferParams,
    Params,
    PreprocessStageParams,
    SplitParams,
    SynthParams,
    TrainParams,
    load_params,
)

app = typer.Typer(
    name="segcore",
    help="Semantic segmentation for industrial inspection: HALCON's workflow as a pipeline.\n\n"
    "Stages in order: synth -> dataset -> split -> preprocess -> train -> calibrate -> evaluate "
    "-> register; infer and export-onnx use a trained model bundle; init writes a project for "
    "your own data.",
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


OPTION_NAMES: dict[str, tuple[str, ...]] = {
    "train.num_epochs": ("--epochs", "--num-epochs"),
    "evaluate.measures": ("--measure",),
    "split.overwrite": ("--overwrite/--keep",),
    "preprocess.overwrite": ("--overwrite/--keep",),
}
"""Options not named ``--field-name`` (``--x/--no-x`` for a bool): short or established
names, and a singular for a repeatable option."""

NO_OPTION = frozenset({"train.nproc"})
"""Keys that get no option. ``train.nproc``: the torchrun ranks it starts read the
parameter file again, without the command line's options (see ``run_train``)."""


def _params(path: Path, stage: str | None = None) -> Params:
    """The params; a stage first checks its project's code fingerprint (pipeline.code)."""
    params = load_params(path)
    if stage is not None:
        cli_project.check_stage_code(path, stage)
    return params


# --------------------------------------------------------------------------- synth


@app.command()
@section_command(SynthParams, "synth", OPTION_NAMES)
def synth(overrides: Overrides, params_file: ParamsOpt = Path(DEFAULT_PARAMS_FILE)) -> None:
    """Generate the synthetic pill dataset (images and label images)."""
    from segcore.pipeline.stage_synth import run_synth

    params = _params(params_file, "synth")
    p = overrides.apply(params.synth)
    out.print(run_synth(params.model_copy(update={"synth": p})).value)


# --------------------------------------------------------------------------- dataset


@app.command()
@section_command(DatasetParams, "dataset", OPTION_NAMES)
def dataset(overrides: Overrides, params_file: ParamsOpt = Path(DEFAULT_PARAMS_FILE)) -> None:
    """Read images and label images into the dataset table (read_dl_dataset_segmentation)."""
    from segcore.pipeline.stage_dataset import run_dataset

    params = _params(params_file, "dataset")
    p = overrides.apply(params.dataset)
    out.print(run_dataset(params.model_copy(update={"dataset": p})).summary)


# --------------------------------------------------------------------------- split


@app.command()
@section_command(SplitParams, "split", OPTION_NAMES)
def split(overrides: Overrides, params_file: ParamsOpt = Path(DEFAULT_PARAMS_FILE)) -> None:
    """Split into train / validation / test, stratified by class presence (split_dl_dataset)."""
    from segcore.pipeline.stage_split import run_split

    params = _params(params_file, "split")
    p = overrides.apply(params.split)
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
@section_command(PreprocessStageParams, "preprocess", OPTION_NAMES)
def preprocess(overrides: Overrides, params_file: ParamsOpt = Path(DEFAULT_PARAMS_FILE)) -> None:
    """Preprocess images and labels, compute class weights and weight images
    (preprocess_dl_dataset, calculate_dl_segmentation_class_weights,
    gen_dl_segmentation_weight_images)."""
    from rich.table import Table

    from segcore.pipeline.stage_preprocess import run_preprocess

    params = _params(params_file, "preprocess")
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


# --------------------------------------------------------------------------- train
# (segcore train: see issue "Models and training")


@app.command()
@section_command(TrainParams, "train", OPTION_NAMES, NO_OPTION)
def train(
    overrides: Overrides,
    params_file: ParamsOpt = Path(DEFAULT_PARAMS_FILE),
    resume: Annotated[
        bool,
        typer.Option(
            "--resume", help="Continue from OUT_DIR/checkpoint.pt (same params; --epochs may grow)."
        ),
    ] = False,
) -> None:
    """Train a segmentation model on the preprocessed train split (train_dl_model).

    Writes the bundles (best/, final/, ...), the checkpoint and the per-epoch history.
    Distributed: `torchrun --nproc_per_node=N -m segcore.cli train` (gloo on CPU, nccl on
    CUDA); batch size is per process and rank 0 writes.
    """
    from segcore.pipeline.stage_train import run_train
    from segcore.train.launch import is_main_process

    params = _params(params_file, "train")
    p = overrides.apply(params.train)
    stage = run_train(params.model_copy(update={"train": p}), resume=resume)
    if not is_main_process():
        return
    out.print(stage.summary)
    if stage.value is not None:
        out.print(f"History: {stage.value.history_path}; checkpoint: {stage.value.checkpoint}")


@app.command()
def plan(
    params_file: ParamsOpt = Path(DEFAULT_PARAMS_FILE),
    budget: Annotated[
        float | None,
        typer.Option(
            "--budget",
            help="Training time to plan for, in seconds (default: train.time_budget, else 1800).",
        ),
    ] = None,
    write: Annotated[
        bool, typer.Option("--write", help="Write the plan into the parameter file.")
    ] = False,
    dataset_file: Annotated[
        str | None,
        typer.Option("--dataset", help="Split dataset table (default: preprocess.dataset)."),
    ] = None,
    measure_seconds: Annotated[
        float, typer.Option(help="Seconds of training steps timed to measure this machine.")
    ] = 3.0,
) -> None:
    """Propose training parameters from a fingerprint of the dataset (image sizes, class
    frequencies, defect sizes, samples), this machine (measured) and a time budget, with the
    reason for each; print the diff against params.yaml, and write it with --write."""
    from segcore.pipeline.plan_report import render
    from segcore.pipeline.stage_plan import run_plan, write_plan

    def report(line: str) -> None:
        err_console.print(line, highlight=False)

    stage = run_plan(
        _params(params_file),
        budget,
        dataset=dataset_file,
        measure_seconds=measure_seconds,
        report=report,
    )
    out.print(render(stage.value, str(params_file)), highlight=False, markup=False, soft_wrap=True)
    if write:
        written = write_plan(params_file, stage.value)
        out.print(
            f"Written to {params_file}: {len(written)} keys; `dvc repro` (or `make run`) runs "
            "the stages whose parameters changed"
            if written
            else "Nothing to write"
        )


# --------------------------------------------------------------------------- evaluate / infer / export-onnx
# (see issue "Evaluation, report with plots, inference on new images, ONNX export")


@app.command()
@section_command(CalibrationParams, "decision.calibration", OPTION_NAMES)
def calibrate(overrides: Overrides, params_file: ParamsOpt = Path(DEFAULT_PARAMS_FILE)) -> None:
    """Choose each defect class's OK/NG thresholds (min_area, min_confidence) on the
    validation split for a target escape or false-reject rate, and write them into a copy
    of the bundle (decision.calibration.out_bundle) that evaluate, infer and the served
    model decide by; the trade-off curves go to decision.calibration.report_dir."""
    from segcore.pipeline.stage_calibrate import run_calibrate

    params = _params(params_file)
    c = overrides.apply(params.decision.calibration)
    decision = params.decision.model_copy(update={"calibration": c})
    stage = run_calibrate(params.model_copy(update={"decision": decision}))
    out.print(stage.summary, highlight=False)


@app.command()
@section_command(EvaluateParams, "evaluate", OPTION_NAMES)
def evaluate(overrides: Overrides, params_file: ParamsOpt = Path(DEFAULT_PARAMS_FILE)) -> None:
    """Evaluate a model on one split and write metrics.json, plots and report.html
    (evaluate_dl_model, dev_display_segmentation_evaluation)."""
    from segcore.pipeline.stage_evaluate import run_evaluate

    params = _params(params_file, "evaluate")
    p = overrides.apply(params.evaluate)
    stage = run_evaluate(params.model_copy(update={"evaluate": p}))
    out.print(stage.summary)
    out.print(f"Metrics: {Path(p.report_dir) / 'metrics.json'}")


@app.command()
@section_command(InferParams, "infer", OPTION_NAMES)
def infer(
    bundle: Annotated[Path, typer.Argument(help="Model bundle folder, e.g. models/best.")],
    inputs: Annotated[
        list[Path], typer.Argument(help="Image files and folders (searched recursively).")
    ],
    out_dir: Annotated[Path, typer.Option("--out", "-o", help="Output folder.")],
    overrides: Overrides,
    params_file: ParamsOpt = Path(DEFAULT_PARAMS_FILE),
) -> None:
    """Segment new images: per image the segmentation (class ids), confidence and overlay
    images (with the OK/NG verdict), one regions table and one images table with the
    verdicts (apply_dl_model, then the bundle's decision rules). Exit code 3 when some
    inputs failed. Without a params.yaml in the working directory the defaults apply."""
    from segcore.common.errors import EXIT_PARTIAL_FAILURE
    from segcore.infer.apply import load_model
    from segcore.infer.files import check_out_dir, run_inference

    check_out_dir(out_dir)  # before the model is loaded
    # Inference runs anywhere: without a params.yaml beside it, the defaults apply.
    default_missing = params_file == Path(DEFAULT_PARAMS_FILE) and not params_file.is_file()
    params = Params() if default_missing else _params(params_file)
    p = overrides.apply(params.infer)
    # The bundle's decision rules; a bundle without them decides by params.yaml's.
    model = load_model(
        bundle, device=p.device, backend=p.backend, decision=params.decision, precision=p.precision
    )
    summary = run_inference(
        model,
        inputs,
        out_dir,
        batch_size=p.batch_size,
        min_area=p.min_area,
        workers=p.workers or None,
        max_image_pixels=p.max_image_pixels,
        tile_overlap=p.tile_overlap,
    )
    out.print(summary.render(), highlight=False)
    if not summary.ok:
        raise typer.Exit(EXIT_PARTIAL_FAILURE)


@app.command("export-onnx")
def export_onnx_command(
    bundle: Annotated[Path, typer.Argument(help="Model bundle folder, e.g. models/best.")],
    out_file: Annotated[
        Path | None,
        typer.Option("--out", help="ONNX file (default: BUNDLE/model.onnx, used by infer)."),
    ] = None,
    opset: Annotated[int, typer.Option(help="ONNX opset, 17 or newer.")] = 17,
    quantize: Annotated[
        str | None, typer.Option(help="int8: static quantization, calibrated and checked.")
    ] = None,
    dataset: Annotated[
        Path | None, typer.Option(help="Preprocessed dataset for --quantize (train.dataset).")
    ] = None,
    calibration_samples: Annotated[int, typer.Option(help="Calibration samples, int8.")] = 16,
    params_file: ParamsOpt = Path(DEFAULT_PARAMS_FILE),
) -> None:
    """Export a bundle to ONNX (dynamic batch, and height/width where the network allows)
    for `segcore infer --backend onnx` and other runtimes. --quantize int8: calibrated on
    training samples of --dataset, checked against fp32, the validation measure change printed."""
    from segcore.infer.onnx import describe, export_onnx
    from segcore.infer.quantize import check_quantization

    check_quantization(quantize)
    if quantize is None:
        path = export_onnx(bundle, out_file, opset=opset)
        out.print(f"ONNX: {path} ({describe(path)})")
        return
    if dataset is None:
        has_params = params_file.is_file() or params_file != Path(DEFAULT_PARAMS_FILE)
        dataset = Path(_params(params_file).train.dataset if has_params else TrainParams().dataset)
    from segcore.evaluate.compare import export_int8_compared

    result = export_int8_compared(bundle, dataset, out_file, opset, calibration_samples)
    out.print(result.render(), highlight=False)


# --------------------------------------------------------------------------- labels


@app.command("import-labels")
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

    params = _params(params_file)
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


@app.command("export-coco")
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

    d = _params(params_file).dataset
    path = export_coco(seg_dir, image_dir, out_file, d.class_names, d.class_ids, encoding=encoding)  # type: ignore[arg-type]
    out.print(f"COCO: {path}")


# --------------------------------------------------------------------------- register
# (see issue "The pipeline")


@app.command()
def register(params_file: ParamsOpt = Path(DEFAULT_PARAMS_FILE)) -> None:
    """Register the evaluated model in MLflow (alias challenger) and move alias champion to
    it when its test measure (register.comparison_key) is at least the champion's."""
    from segcore.pipeline.stage_register import run_register

    out.print(run_register(_params(params_file, "register")).summary)


app.command()(cli_project.init)
app.command()(cli_project.refresh)


def main() -> None:
    """Console-script entry point: user errors become a message and exit code 2."""
    from segcore.common.images import quiet_opencv

    quiet_opencv()
    # SIGTERM (timeout, Docker, Kubernetes, Prefect) unwinds like Ctrl-C: runs are closed.
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
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
