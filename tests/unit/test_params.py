"""Parameter validation: every problem at once, each with its key and the fix."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from segcore.common.errors import ParamsError
from segcore.params import (
    Params,
    SynthParams,
    dump_params,
    load_params,
    override,
    update_params_file,
)

ROOT = Path(__file__).resolve().parents[2]


def _load(tmp_path: Path, text: str) -> Params:
    path = tmp_path / "params.yaml"
    path.write_text(text)
    return load_params(path)


def _problems(tmp_path: Path, text: str) -> str:
    with pytest.raises(ParamsError) as err:
        _load(tmp_path, text)
    return "\n".join(err.value.problems)


def test_project_params_file_mirrors_the_defaults_of_the_data_sections() -> None:
    params = load_params(ROOT / "params.yaml")
    raw = yaml.safe_load((ROOT / "params.yaml").read_text())
    for section in ("synth", "dataset", "split"):
        assert getattr(params, section) == getattr(Params(), section), section
        assert set(raw[section]) == set(type(getattr(params, section)).model_fields), section


def _leaf_keys(tree: dict, prefix: str = "") -> set[str]:
    keys = set()
    for key, value in tree.items():
        if isinstance(value, dict) and value:
            keys |= _leaf_keys(value, f"{prefix}{key}.")
        else:
            keys.add(f"{prefix}{key}")
    return keys


def test_project_params_file_spells_out_every_parameter() -> None:
    # DVC sees only params.yaml: a key left to the code's default could change a stage's
    # outputs (with a new default) while DVC calls the stage up to date.
    raw = yaml.safe_load((ROOT / "params.yaml").read_text())
    every = Params().model_dump(by_alias=True)
    assert sorted(_leaf_keys(every) - _leaf_keys(raw)) == []
    assert sorted(_leaf_keys(raw) - _leaf_keys(every)) == []


def test_every_problem_is_reported_at_once_with_key_and_fix(tmp_path: Path) -> None:
    text = _problems(
        tmp_path,
        """
synth:
  num_images: 0
  colour: red
dataset:
  class_names: [good, bad]
  class_ids: [0, 0, 1]
  ignore_unmatched: maybe
split:
  training_percent: 150
  seed: x
preprocess:
  param:
    set_background_id: 0
bogus: 1
""",
    )
    for expected in (
        "synth.num_images: Input should be greater than 0 (got 0)",
        "synth.colour: unknown key; check its spelling",
        "dataset.class_names: has 2 entries but class_ids has 3; give one name per id",
        "dataset.class_ids: has duplicates [0]; each id must appear once",
        "dataset.ignore_unmatched: Input should be a valid boolean",
        "split.training_percent: Input should be less than or equal to 100",
        "split.seed: Input should be a valid integer",
        "preprocess.param",
        "set both or neither",
        "bogus: unknown key",
    ):
        assert expected in text, expected
    assert str(tmp_path / "params.yaml") in text


def test_split_percentages_may_not_exceed_100_together(tmp_path: Path) -> None:
    text = _problems(tmp_path, "split:\n  training_percent: 80\n  validation_percent: 30\n")
    assert "training_percent + validation_percent = 110.0 exceeds 100; lower one of them" in text


def test_class_ids_out_of_range(tmp_path: Path) -> None:
    text = _problems(tmp_path, "dataset:\n  class_names: [a, b]\n  class_ids: [0, 70000]\n")
    assert "dataset.class_ids: has [70000] out of range; ids must be integers in 0..65535" in text


@pytest.mark.parametrize(
    ("param", "message"),
    [
        ("set_background_id: 0", "set both or neither"),
        ("class_ids_background: [1]", "set both or neither"),
        ("{set_background_id: 0, class_ids_background: [0, 1]}", "must not overlap"),
        (
            "{set_background_id: 0, class_ids_background: [1], ignore_class_ids: [1]}",
            "may not be merged into the background",
        ),
        (
            "{set_background_id: 0, class_ids_background: [1], ignore_class_ids: [0]}",
            "may not be merged into the background",
        ),
    ],
)
def test_background_and_ignore_rules(tmp_path: Path, param: str, message: str) -> None:
    if not param.startswith("{"):
        param = "{" + param + "}"
    text = _problems(tmp_path, f"preprocess:\n  param: {param}\n")
    assert "preprocess.param" in text and message in text


def test_background_and_ignore_ids_that_follow_the_rules_load(tmp_path: Path) -> None:
    params = _load(
        tmp_path,
        "preprocess:\n  param: {set_background_id: 0, class_ids_background: [1, 2], "
        "ignore_class_ids: [255]}\n",
    )
    assert params.preprocess.param.class_ids_background == [1, 2]


def test_command_line_overrides_are_validated_under_the_option_name() -> None:
    with pytest.raises(ParamsError) as err:
        override(SynthParams(), num_images=0, seed=3)
    assert err.value.problems == ["--num-images: Input should be greater than 0"]
    assert override(SynthParams(), num_images=None, seed=3).seed == 3


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "parameter file not found; run from the project root or pass --params"),
        ("synth: [unclosed", "not valid YAML"),
        ("- a list", "must be a mapping of sections"),
    ],
)
def test_unusable_params_files(tmp_path: Path, content: str | None, message: str) -> None:
    path = tmp_path / "params.yaml"
    if content is not None:
        path.write_text(content)
    with pytest.raises(ParamsError, match=message):
        load_params(path)


def test_an_empty_file_gives_the_defaults(tmp_path: Path) -> None:
    assert _load(tmp_path, "") == Params()


def test_dump_params_loads_back_equal(tmp_path: Path) -> None:
    params = load_params(ROOT / "params.yaml")
    changed = params.model_copy(
        update={"train": params.train.model_copy(update={"num_epochs": 3, "learning_rate": 0.01})}
    )
    path = tmp_path / "p.yaml"
    path.write_text(dump_params(changed))
    assert load_params(path) == changed
    assert load_params(path) != params


def test_update_params_file_keeps_comments_and_refuses_invalid_values(tmp_path: Path) -> None:
    path = tmp_path / "params.yaml"
    path.write_text((ROOT / "params.yaml").read_text())
    update_params_file(path, {("split", "seed"): 7})
    assert load_params(path).split.seed == 7
    assert "# Random seed; the same seed gives the same split." in path.read_text()
    before = path.read_text()
    with pytest.raises(ParamsError, match=r"split\.training_percent"):
        update_params_file(path, {("split", "training_percent"): 150})
    assert path.read_text() == before


def test_update_params_file_changes_only_the_lines_of_the_updated_keys(tmp_path: Path) -> None:
    path = tmp_path / "params.yaml"
    before = (ROOT / "params.yaml").read_text()
    path.write_text(before)
    strategy = {"model_param": "learning_rate", "epochs": [8], "values": [0.0003]}
    update_params_file(
        path, {("train", "num_epochs"): 10, ("train", "change_strategies"): [strategy]}
    )
    after = path.read_text()
    assert len(after.splitlines()) == len(before.splitlines())
    pairs = zip(before.splitlines(), after.splitlines(), strict=True)
    changed = [(a, b) for a, b in pairs if a != b]
    # null stays null, flow lists stay flow lists: only the two keys' lines differ.
    assert [b.split("#")[0].strip() for _, b in changed] == [
        "num_epochs: 10",
        "- model_param: learning_rate",  # the replaced item's comment goes with it
        "epochs: [8]",
    ]
    assert load_params(path).train.change_strategies[0].epochs == [8.0]
