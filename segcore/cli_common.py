"""What the ``segcore`` commands share: the consoles, the ``--params`` option, the option
names that are not ``--field-name`` and reading the parameter file (the commands are in
:mod:`segcore.cli_data`, :mod:`segcore.cli_train`, :mod:`segcore.cli_model` and
:mod:`segcore.cli_project`; :mod:`segcore.cli` registers them)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from segcore import cli_project
from segcore.params import Params, load_params

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


def read_params(path: Path, stage: str | None = None) -> Params:
    """The params; a stage first checks its project's code fingerprint (pipeline.code)."""
    params = load_params(path)
    if stage is not None:
        cli_project.check_stage_code(path, stage)
    return params
