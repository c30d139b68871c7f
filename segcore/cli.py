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

import typer

from segcore import cli_data, cli_model, cli_project, cli_train
from segcore.cli_common import NO_OPTION, OPTION_NAMES, err_console
from segcore.common.errors import EXIT_USER_ERROR, SegcoreError

__all__ = ["NO_OPTION", "OPTION_NAMES", "app", "main"]

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

# In the order `segcore --help` lists them.
app.command()(cli_data.synth)
app.command()(cli_data.dataset)
app.command()(cli_data.split)
app.command()(cli_data.stats)
app.command()(cli_data.preprocess)
app.command()(cli_train.train)
app.command()(cli_train.plan)
app.command()(cli_model.calibrate)
app.command()(cli_model.evaluate)
app.command()(cli_model.infer)
app.command("export-onnx")(cli_model.export_onnx_command)
app.command("import-labels")(cli_data.import_labels_command)
app.command("export-coco")(cli_data.export_coco_command)
app.command()(cli_model.register)
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
