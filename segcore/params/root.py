"""All of ``params.yaml``: the file's model, loading it, command-line overrides, flattening.

``params.yaml`` is the only place where defaults live for a pipeline run; the section
classes mirror its sections field for field (their defaults are what a section gets when
a key is left out). Loading validates the whole file and reports every problem at once,
each naming the key and the fix. Stage code receives these objects and never opens
``params.yaml`` itself.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any, Self, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from segcore.common.errors import ParamsError
from segcore.common.io import write_text_atomic
from segcore.params.annotations import ImportLabelsParams
from segcore.params.base import Section
from segcore.params.data import DatasetParams, SplitParams, SynthParams
from segcore.params.decision import DecisionParams
from segcore.params.mlops import FlowParams, RegisterParams, TrackingParams
from segcore.params.model_use import EvaluateParams, InferParams
from segcore.params.preprocess import PreprocessStageParams
from segcore.params.train import TrainParams

DEFAULT_PARAMS_FILE = "params.yaml"


class Params(Section):
    """All of ``params.yaml``."""

    model_config = ConfigDict(
        extra="forbid", use_attribute_docstrings=True, frozen=True, validate_by_name=True
    )

    import_labels: ImportLabelsParams = ImportLabelsParams()
    synth: SynthParams = SynthParams()
    dataset: DatasetParams = DatasetParams()
    split: SplitParams = SplitParams()
    preprocess: PreprocessStageParams = PreprocessStageParams()
    train: TrainParams = TrainParams()
    decision: DecisionParams = DecisionParams()
    evaluate: EvaluateParams = EvaluateParams()
    infer: InferParams = InferParams()
    registry: RegisterParams = Field(RegisterParams(), alias="register")
    """The ``register:`` section (``registry`` in Python: ``register`` is taken by pydantic)."""
    tracking: TrackingParams = TrackingParams()
    flow: FlowParams = FlowParams()

    @model_validator(mode="after")
    def _decision_classes(self) -> Self:
        """The decision rules name classes of ``dataset``, none of them an ignore class."""
        from segcore.params.decision import decision_class_problems

        problems = decision_class_problems(
            self.decision,
            self.dataset.class_names,
            self.dataset.class_ids,
            self.preprocess.param.ignore_class_ids,
        )
        if problems:
            raise ValueError("; ".join(problems))
        return self


def _format_errors(err: ValidationError, where: str, prefix: str = "") -> list[str]:
    """One line per problem, ``<file>: <section.key>: <problem>``, in words a user can act on."""
    problems = []
    for e in err.errors():
        key = prefix + ".".join(str(p) for p in e["loc"])
        msg = e["msg"].removeprefix("Value error, ")
        if e["type"] == "extra_forbidden":
            msg = "unknown key; check its spelling (see params.yaml for the valid keys)"
        elif e["type"] == "missing":
            msg = "required key is missing; add it"
        elif "input" in e and not isinstance(e["input"], dict):
            msg = f"{msg} (got {e['input']!r})"
        problems.append(f"{where}: {key}: {msg}" if key else f"{where}: {msg}")
    return problems


def load_params(path: str | Path = DEFAULT_PARAMS_FILE) -> Params:
    """Read and validate ``params.yaml``; every problem is reported at once.

    Raises:
        ParamsError: the file is missing, not YAML, or has invalid keys or values.
    """
    path = Path(path)
    if not path.is_file():
        raise ParamsError(
            f"{path}: parameter file not found; run from the project root or pass --params PATH"
        )
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as err:
        raise ParamsError(f"{path}: not valid YAML: {err}") from None
    if not isinstance(raw, dict):
        raise ParamsError(f"{path}: must be a mapping of sections (synth:, dataset:, ...)")
    try:
        return Params.model_validate(raw)
    except ValidationError as err:
        raise ParamsError(_format_errors(err, str(path)), title=f"{path} is invalid") from None


S = TypeVar("S", bound=Section)


def dump_params(params: Params) -> str:
    """``params`` as the YAML text of a parameter file that loads back to equal params."""
    return yaml.safe_dump(params.model_dump(mode="json", by_alias=True), sort_keys=False)


def update_params_file(path: str | Path, values: dict[tuple[str, ...], Any]) -> None:
    """Set keys of a parameter file in place, keeping its comments and layout.

    ``values`` maps key paths to new values, e.g. ``{("dataset", "class_ids"): [0, 1]}``.
    The new file is validated before it replaces the old one (atomically), so a file that
    would not load is never written.

    Raises:
        ParamsError: the file is missing or unreadable, or the new values are invalid.
    """
    from ruamel.yaml import YAML  # only for writing: loading never needs it

    path = Path(path)
    load_params(path)  # the file as it is must be valid
    rt = YAML()
    rt.width = 4096  # keep long lines (and their comments) as they are
    rt.indent(mapping=2, sequence=4, offset=2)  # params.yaml's layout of block lists
    rt.representer.add_representer(type(None), _represent_null)  # `null`, not an empty value
    doc = rt.load(path.read_text(encoding="utf-8"))
    for keys, value in values.items():
        node = doc
        for key in keys[:-1]:
            node = node.setdefault(key, {})
        node[keys[-1]] = _flow_lists(value)
    buffer = io.StringIO()
    rt.dump(doc, buffer)
    text = buffer.getvalue()
    try:
        Params.model_validate(yaml.safe_load(text))
    except ValidationError as err:
        raise ParamsError(
            _format_errors(err, str(path)), title=f"{path} would be invalid"
        ) from None
    write_text_atomic(path, text)


def _represent_null(representer: Any, _: None) -> Any:
    return representer.represent_scalar("tag:yaml.org,2002:null", "null")


def _flow_lists(value: Any) -> Any:
    """``value`` for ruamel, with lists of scalars in flow style (``[0, 1]``) as params.yaml
    writes them; lists of mappings stay block lists."""
    from ruamel.yaml.comments import CommentedMap, CommentedSeq

    if isinstance(value, dict):
        return CommentedMap((k, _flow_lists(v)) for k, v in value.items())
    if isinstance(value, list):
        seq = CommentedSeq(_flow_lists(v) for v in value)
        if not any(isinstance(v, dict | list) for v in value):
            seq.fa.set_flow_style()
        return seq
    return value


def override(section: S, option_names: dict[str, str] | None = None, **values: Any) -> S:
    """A copy of ``section`` with the non-``None`` ``values`` replaced, validated again.

    Args:
        section: the loaded section.
        option_names: maps field name to the CLI option that set it, for error messages.
        values: new values; ``None`` means "keep the one from params.yaml".
    """
    updates = {k: v for k, v in values.items() if v is not None}
    if not updates:
        return section
    data = section.model_dump() | updates
    try:
        return type(section).model_validate(data)
    except ValidationError as err:
        names = option_names or {}
        problems = []
        for e in err.errors():
            field = str(e["loc"][0]) if e["loc"] else ""
            label = names.get(field, f"--{field.replace('_', '-')}" if field in updates else field)
            msg = e["msg"].removeprefix("Value error, ")
            problems.append(f"{label}: {msg}")
        raise ParamsError(problems, title="invalid options") from None


def flatten(params: BaseModel, prefix: str = "") -> dict[str, Any]:
    """``{"train.batch_size": 8, ...}``: every leaf of the params, for tracking."""
    out: dict[str, Any] = {}
    for name in type(params).model_fields:
        value = getattr(params, name)
        key = f"{prefix}{name}"
        if isinstance(value, BaseModel):
            out.update(flatten(value, key + "."))
        elif isinstance(value, list) and value and isinstance(value[0], BaseModel):
            out[key] = [v.model_dump() for v in value]
        else:
            out[key] = value
    return out
