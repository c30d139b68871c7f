"""Command-line options generated from the params sections: one per field, its docstring
as help, values that reach the stage, errors that name the option."""

from __future__ import annotations

import types
from pathlib import Path
from typing import Annotated, Any, Literal, Union, get_args, get_origin

import pytest
import typer
import yaml
from helpers.cli import run_segcore
from pydantic import BaseModel, Field
from typer.core import TyperOption
from typer.testing import CliRunner

from segcore.cli import NO_OPTION, OPTION_NAMES, app
from segcore.cli_options import Overrides, section_command, section_options
from segcore.common.errors import ParamsError
from segcore.data.dldataset import DLDataset
from segcore.params import (
    DatasetParams,
    EvaluateParams,
    InferParams,
    PreprocessStageParams,
    Section,
    SplitParams,
    SynthParams,
    TrainParams,
)

STAGE_SECTIONS: dict[str, type[Section]] = {
    "synth": SynthParams,
    "dataset": DatasetParams,
    "split": SplitParams,
    "preprocess": PreprocessStageParams,
    "train": TrainParams,
    "evaluate": EvaluateParams,
    "infer": InferParams,
}

OPTIONS_BEFORE_GENERATION = {
    "synth": ["--out-dir", "--num-images", "--seed"],
    "dataset": [
        *("--image-dir", "--segmentation-dir", "--label-prefix", "--label-suffix"),
        *("--ignore-unmatched", "--no-ignore-unmatched", "--out"),
    ],
    "split": ["--training-percent", "--validation-percent", "--seed", "--overwrite", "--keep"],
    "preprocess": ["--dataset", "--out-dir", "--workers", "--overwrite", "--keep"],
    "train": [
        *("--resume", "--epochs", "--device", "--out-dir", "--dataset", "--history"),
        *("--model", "--batch-size", "--learning-rate", "--seed", "--num-threads"),
    ],
    "evaluate": [
        *("--bundle", "--dataset", "--split", "--measure", "--batch-size", "--worst-k"),
        *("--report-dir", "--device"),
    ],
    "infer": ["--out", "-o", "--batch-size", "--min-area", "--backend", "--device", "--workers"],
}
"""Every option the hand-written command line had; scripts and dvc.yaml may use them."""


def _options(command: str) -> dict[str, TyperOption]:
    """Every name of every option of ``segcore <command>`` (``--keep`` too) -> the option."""
    params = typer.main.get_command(app).commands[command].params  # type: ignore[attr-defined]
    return {
        name: p
        for p in params
        if isinstance(p, TyperOption)
        for name in (*p.opts, *p.secondary_opts)
    }


def _kind(annotation: Any) -> str | None:
    """``scalar``, ``list`` (of scalars) or ``None`` (sections, dicts: no option)."""
    origin, args = get_origin(annotation), get_args(annotation)
    if origin is Annotated:
        return _kind(args[0])
    if origin in (Union, types.UnionType):
        rest = [a for a in args if a is not type(None)]
        return _kind(rest[0]) if len(rest) == 1 else None
    if origin is list:
        return "list" if _kind(args[0]) == "scalar" else None
    if origin is Literal or annotation in (str, int, float, bool):
        return "scalar"
    return None


def _plain(docstring: str | None) -> str:
    """A field docstring as the help prints it: one line, no RST quotes, no final period."""
    return " ".join((docstring or "").split()).replace("``", "").rstrip(".")


@pytest.mark.parametrize("stage", list(STAGE_SECTIONS))
def test_every_field_an_option_can_carry_is_an_option_with_its_docstring(stage: str) -> None:
    section = STAGE_SECTIONS[stage]
    options = _options(stage)
    for name, field in section.model_fields.items():
        dashed = "--" + name.replace("_", "-")
        kind = _kind(field.annotation)
        if kind is None or f"{stage}.{name}" in NO_OPTION:
            assert dashed not in options, f"{stage}.{name} is no option"
            continue
        first = OPTION_NAMES.get(f"{stage}.{name}", (dashed,))[0].split("/")[0]
        option = options[first]
        assert option.name == name
        assert option.help is not None and option.help.startswith(_plain(field.description))
        assert option.help.endswith(f"({stage}.{name})."), option.help
        assert option.multiple == (kind == "list"), name
        assert option.default is None, "unset must keep the parameter file's value"
        if field.annotation is bool:
            assert option.is_flag and option.secondary_opts, name


@pytest.mark.parametrize("stage", list(OPTIONS_BEFORE_GENERATION))
def test_the_options_of_the_hand_written_command_line_still_exist(stage: str) -> None:
    options = _options(stage)
    assert sorted(set(OPTIONS_BEFORE_GENERATION[stage]) - set(options)) == []
    assert {"-p", "--params"} <= set(options)


def test_options_reach_the_stage_and_unset_ones_keep_the_params_file(tmp_path: Path) -> None:
    params = tmp_path / "params.yaml"
    sections = {
        "synth": {"out_dir": str(tmp_path / "raw"), "num_images": 4, "width": 64, "height": 64},
        "dataset": {
            "image_dir": str(tmp_path / "raw/images"),
            "segmentation_dir": str(tmp_path / "raw/labels"),
            "out": str(tmp_path / "dataset.parquet"),
        },
        "split": {"dataset": str(tmp_path / "dataset.parquet"), "out": str(tmp_path / "a.parquet")},
    }
    params.write_text(yaml.safe_dump(sections))

    def run(*args: str) -> None:
        result = CliRunner().invoke(app, [args[0], "-p", str(params), *args[1:]])
        assert result.exit_code == 0, (result.output, result.exception)

    run("synth", "--num-images", "10")
    assert len(list((tmp_path / "raw/labels").glob("*.png"))) == 10  # the option, not the file's 4
    run("dataset")
    assert (DLDataset.load(tmp_path / "dataset.parquet").samples["image_width"] == 64).all()
    run("split", "--training-percent", "0", "--validation-percent", "100")
    assert set(DLDataset.load(tmp_path / "a.parquet").samples["split"]) == {"validation"}

    sections["split"] = {
        "dataset": str(tmp_path / "a.parquet"),
        "out": str(tmp_path / "b.parquet"),
        "overwrite": True,
    }
    params.write_text(yaml.safe_dump(sections))
    run("split", "--training-percent", "100", "--validation-percent", "0", "--keep")
    assert set(DLDataset.load(tmp_path / "b.parquet").samples["split"]) == {"validation"}
    run("split", "--training-percent", "100", "--validation-percent", "0")
    assert set(DLDataset.load(tmp_path / "b.parquet").samples["split"]) == {"train"}


def test_an_invalid_value_names_the_option_and_exits_2(tmp_path: Path) -> None:
    (tmp_path / "params.yaml").write_text("")
    result = run_segcore("synth", "--num-images", "0", "--width", "10", cwd=tmp_path)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    stderr = " ".join(result.stderr.split())
    assert "--num-images: Input should be greater than 0" in stderr
    assert "--width: Input should be greater than or equal to 64" in stderr
    assert not (tmp_path / "data").exists()


def test_a_renamed_option_is_named_in_errors_and_choices_are_checked(tmp_path: Path) -> None:
    params = tmp_path / "params.yaml"
    params.write_text("")
    runner = CliRunner()
    result = runner.invoke(app, ["train", "-p", str(params), "--epochs", "0"])
    assert isinstance(result.exception, ParamsError)
    assert result.exception.problems == ["--epochs: Input should be greater than 0"]
    result = runner.invoke(app, ["evaluate", "-p", str(params), "--split", "tset"])
    assert result.exit_code == 2
    assert "--split" in result.output and "tset" in result.output


class _Toy(Section):
    """A section that exists only in this test."""

    count: int = Field(3, gt=0)
    """How many."""
    mode: Literal["fast", "slow"] = "fast"
    """Speed."""
    verbose: bool = True
    """Talk more."""
    tags: list[str] = Field(default_factory=lambda: ["a"])
    """Labels."""
    limit: float | None = None
    """Upper bound, if any."""
    inner: SynthParams = SynthParams()
    """A nested section: no option."""
    extra: dict[str, int] = Field(default_factory=dict)
    """A dict: no option."""


def _toy_app(section: type[Section], seen: list[BaseModel], **renames: Any) -> typer.Typer:
    """An app with one command built from ``section``; what reaches it lands in ``seen``."""
    toy = typer.Typer()

    @toy.command()
    @section_command(section, "toy", {f"toy.{k}": v for k, v in renames.items()})
    def run(overrides: Overrides, label: str = "x") -> None:
        """Apply the options to the section's defaults."""
        seen.append(overrides.apply(section()))

    return toy


def test_each_option_kind_overrides_its_field_and_unset_keeps_it() -> None:
    seen: list[BaseModel] = []
    toy = _toy_app(_Toy, seen)
    runner = CliRunner()
    assert runner.invoke(toy, ["--label", "y"]).exit_code == 0
    assert seen.pop() == _Toy()
    args = ["--count", "5", "--mode", "slow", "--no-verbose", "--tags", "b", "--tags", "c"]
    result = runner.invoke(toy, [*args, "--limit", "2.5"])
    assert result.exit_code == 0, result.output
    assert seen.pop() == _Toy(count=5, mode="slow", verbose=False, tags=["b", "c"], limit=2.5)
    assert runner.invoke(toy, ["--mode", "medium"]).exit_code == 2
    assert runner.invoke(toy, ["--inner", "x"]).exit_code == 2  # no option for a section
    assert runner.invoke(toy, ["--extra", "x"]).exit_code == 2  # nor for a dict


def test_a_renamed_option_replaces_the_field_name_in_errors() -> None:
    seen: list[BaseModel] = []
    toy = _toy_app(_Toy, seen, count=("--n", "--how-many"))
    runner = CliRunner()
    assert runner.invoke(toy, ["--how-many", "7"]).exit_code == 0
    assert seen.pop().count == 7  # type: ignore[attr-defined]
    assert runner.invoke(toy, ["--count", "7"]).exit_code == 2
    result = runner.invoke(toy, ["--n", "0"])
    assert isinstance(result.exception, ParamsError)
    assert result.exception.problems == ["--n: Input should be greater than 0"]


def test_a_new_field_of_a_section_appears_as_an_option() -> None:
    class WiderSplit(SplitParams):
        holdout_seed: int = 7
        """Seed of a holdout that only this test knows."""

    options = {o.field: o for o in section_options(WiderSplit, "split")}
    assert options["holdout_seed"].decls == ("--holdout-seed",)
    assert options["holdout_seed"].help == (
        "Seed of a holdout that only this test knows (split.holdout_seed)."
    )
    seen: list[BaseModel] = []
    result = CliRunner().invoke(_toy_app(WiderSplit, seen), ["--holdout-seed", "11"])
    assert result.exit_code == 0, result.output
    assert seen.pop() == WiderSplit(holdout_seed=11)
    help_text = CliRunner().invoke(_toy_app(WiderSplit, seen), ["--help"]).output
    assert "--holdout-seed" in help_text and "Seed of a holdout" in help_text
