"""The training commands of ``segcore``: train and plan (registered in :mod:`segcore.cli`)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from segcore.cli_common import NO_OPTION, OPTION_NAMES, ParamsOpt, err_console, out, read_params
from segcore.cli_options import Overrides, section_command
from segcore.params import (
    DEFAULT_PARAMS_FILE,
    TrainParams,
)

# --------------------------------------------------------------------------- train
# (segcore train: see issue "Models and training")


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

    params = read_params(params_file, "train")
    p = overrides.apply(params.train)
    stage = run_train(params.model_copy(update={"train": p}), resume=resume)
    if not is_main_process():
        return
    out.print(stage.summary)
    if stage.value is not None:
        out.print(f"History: {stage.value.history_path}; checkpoint: {stage.value.checkpoint}")


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
        read_params(params_file),
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
