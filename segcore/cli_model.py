"""The commands of ``segcore`` that use a trained model bundle: calibrate, evaluate,
infer, export-onnx and register (registered in :mod:`segcore.cli`)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from segcore.cli_common import OPTION_NAMES, ParamsOpt, out, read_params
from segcore.cli_options import Overrides, section_command
from segcore.params import (
    DEFAULT_PARAMS_FILE,
    CalibrationParams,
    EvaluateParams,
    InferParams,
    Params,
    TrainParams,
)

# --------------------------------------------------------------------------- evaluate / infer / export-onnx
# (see issue "Evaluation, report with plots, inference on new images, ONNX export")


@section_command(CalibrationParams, "decision.calibration", OPTION_NAMES)
def calibrate(overrides: Overrides, params_file: ParamsOpt = Path(DEFAULT_PARAMS_FILE)) -> None:
    """Choose each defect class's OK/NG thresholds (min_area, min_confidence) on the
    validation split for a target escape or false-reject rate, and write them into a copy
    of the bundle (decision.calibration.out_bundle) that evaluate, infer and the served
    model decide by; the trade-off curves go to decision.calibration.report_dir."""
    from segcore.pipeline.stage_calibrate import run_calibrate

    params = read_params(params_file)
    c = overrides.apply(params.decision.calibration)
    decision = params.decision.model_copy(update={"calibration": c})
    stage = run_calibrate(params.model_copy(update={"decision": decision}))
    out.print(stage.summary, highlight=False)


@section_command(EvaluateParams, "evaluate", OPTION_NAMES)
def evaluate(overrides: Overrides, params_file: ParamsOpt = Path(DEFAULT_PARAMS_FILE)) -> None:
    """Evaluate a model on one split and write metrics.json, plots and report.html
    (evaluate_dl_model, dev_display_segmentation_evaluation)."""
    from segcore.pipeline.stage_evaluate import run_evaluate

    params = read_params(params_file, "evaluate")
    p = overrides.apply(params.evaluate)
    stage = run_evaluate(params.model_copy(update={"evaluate": p}))
    out.print(stage.summary)
    out.print(f"Metrics: {Path(p.report_dir) / 'metrics.json'}")


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
    params = Params() if default_missing else read_params(params_file)
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
        dataset = Path(
            read_params(params_file).train.dataset if has_params else TrainParams().dataset
        )
    from segcore.evaluate.compare import export_int8_compared

    result = export_int8_compared(bundle, dataset, out_file, opset, calibration_samples)
    out.print(result.render(), highlight=False)


# --------------------------------------------------------------------------- register
# (see issue "The pipeline")


def register(params_file: ParamsOpt = Path(DEFAULT_PARAMS_FILE)) -> None:
    """Register the evaluated model in MLflow (alias challenger) and move alias champion to
    it when its test measure (register.comparison_key) is at least the champion's."""
    from segcore.pipeline.stage_register import run_register

    out.print(run_register(read_params(params_file, "register")).summary)
