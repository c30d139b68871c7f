"""``segcore init`` and ``segcore refresh``: a user's own pipeline project (registered on the
``segcore`` command in :mod:`segcore.cli`)."""

from __future__ import annotations

import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

out = Console()

# The arguments and options of `segcore init`.
ProjectOpt = Annotated[
    Path, typer.Argument(help="The project folder to create (missing or empty).")
]

ImagesOpt = Annotated[
    Path,
    typer.Option("--images", help="Folder of images (PNG/JPEG/TIFF/BMP; sub-folders too)."),
]

LabelsOpt = Annotated[
    Path | None,
    typer.Option("--labels", help="Folder of label images: one channel, pixel value = class id."),
]

ExportOpt = Annotated[
    Path | None,
    typer.Option(
        "--export",
        help="Instead of --labels: a labelling tool's export (COCO or Label Studio JSON, "
        "CVAT XML, LabelMe folder); its label names become the classes.",
    ),
]

ExportFormatOpt = Annotated[
    str | None, typer.Option("--format", help="The export's format (default: recognised).")
]

ClassesOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--class",
        help="ID=NAME, once per class (e.g. --class 0=good --class 1=scratch); asked for "
        "in a terminal when left out. With --export: tool label NAME -> class ID.",
    ),
]

IgnoreIdsOpt = Annotated[
    list[int] | None,
    typer.Option(
        "--ignore-class-id",
        help="Label value left out of training and measures (e.g. 255 borders); repeatable.",
    ),
]

LabelPrefixOpt = Annotated[str, typer.Option(help="Prefix of label file names.")]

LabelSuffixOpt = Annotated[
    str, typer.Option(help="Suffix of label file names, e.g. _label for a_label.png.")
]

IgnoreUnmatchedOpt = Annotated[
    bool,
    typer.Option(help="Leave out images without a label (and labels without an image)."),
]

NameOpt = Annotated[
    str | None,
    typer.Option(help="Project name: MLflow experiment and registered model (default: DIR)."),
]


def init(
    project: ProjectOpt,
    images: ImagesOpt,
    labels: LabelsOpt = None,
    export: ExportOpt = None,
    export_format: ExportFormatOpt = None,
    classes: ClassesOpt = None,
    ignore_ids: IgnoreIdsOpt = None,
    label_prefix: LabelPrefixOpt = "",
    label_suffix: LabelSuffixOpt = "",
    ignore_unmatched: IgnoreUnmatchedOpt = False,
    name: NameOpt = None,
) -> None:
    """Write a new pipeline project: the data checked and versioned by DVC, params.yaml with
    the classes found in the labels, dvc.yaml whose stages run `segcore <stage>`, the
    Makefile (make run, make test), git and DVC initialised. Nothing is written on error."""
    from segcore.project.classes import parse_class_options
    from segcore.project.init import DataSource, init_project

    source = DataSource(
        images=images,
        labels=labels,
        export=export,
        export_format=export_format,
        classes=parse_class_options(classes or []),
        ignore_class_ids=ignore_ids or [],
        label_prefix=label_prefix,
        label_suffix=label_suffix,
        ignore_unmatched=ignore_unmatched,
    )
    ask = _ask_names if sys.stdin.isatty() and sys.stdout.isatty() else None
    result = init_project(project, source, name=name, ask=ask, say=out.print)
    _print_classes(result.classes, result.dataset.samples)
    out.print(f"Project written: {result.project} ({len(result.dataset.samples)} images)")
    if not result.committed:
        out.print("git has no committer identity here: the files are staged; commit them.")
    out.print(f"Next: cd {result.project} && make run   (make test checks the data)")


def _ask_names(ids: Sequence[int]) -> Mapping[int, str]:
    out.print(f"The label images hold class ids {list(ids)}; name each class.")
    return {
        cid: typer.prompt(f"  name of class {cid}", default="good" if cid == 0 else f"class_{cid}")
        for cid in ids
    }


def _print_classes(classes: Mapping[int, str], samples) -> None:  # type: ignore[no-untyped-def]
    from segcore.common.constants import PIXEL_COUNT_PREFIX

    total = sum(int(samples[f"{PIXEL_COUNT_PREFIX}{c}"].sum()) for c in classes) or 1
    table = Table(title="Classes")
    for column in ("class id", "class name", "images", "pixels"):
        table.add_column(column, justify="left" if column == "class name" else "right")
    for cid, name in classes.items():
        counts = samples[f"{PIXEL_COUNT_PREFIX}{cid}"]
        share = 100 * int(counts.sum()) / total
        table.add_row(str(cid), name, str(int((counts > 0).sum())), f"{share:.2f} %")
    out.print(table)


def refresh(
    project: Annotated[Path, typer.Option("--project", help="The project folder.")] = Path("."),
) -> None:
    """Rewrite segcore-code.yaml: per stage, the fingerprint of the installed segcore code
    that decides its outputs (make run does this before every run). Afterwards `dvc status`
    shows the stages a segcore upgrade changed."""
    from segcore.pipeline.code import CODE_FILE, read_code_file, refresh_code_file

    before = read_code_file(project)
    after = refresh_code_file(project)
    if after is None:
        out.print(f"{project / CODE_FILE}: none here (not a project written by segcore init)")
        return
    changed = [stage for stage, value in after.items() if before.get(stage) != value]
    out.print(
        f"{project / CODE_FILE}: "
        + (f"code changed for {', '.join(changed)}" if changed else "up to date")
    )


def check_stage_code(params_file: Path, stage: str) -> None:
    """Refuse to run ``stage`` when the project's fingerprint of its code (beside
    ``params_file``) is not the installed segcore's (:func:`~segcore.pipeline.code.check_code_file`)."""
    from segcore.pipeline.code import check_code_file

    check_code_file(params_file.absolute().parent, stage)
