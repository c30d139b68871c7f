"""A project's ``params.yaml``: every key of every section, each with its description as a
comment, so the file alone documents what can be set (and DVC sees every value)."""

from __future__ import annotations

import io
from typing import Any

from pydantic import BaseModel
from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq

from segcore.params import Params

_COMMENT_COLUMN = 45
_MAX_COMMENT = 110

HEADER = (
    "segcore parameters: one section per stage; what the pipeline runs with.\n"
    "Every key is explained in its comment and in `segcore <stage> --help`.\n"
)


def render_params(params: Params, notes: dict[str, str] | None = None) -> str:
    """``params`` as the YAML text of a parameter file, every key spelled out and commented.

    Args:
        params: the values.
        notes: a line to put above a section, by section name (e.g. why it is unused).
    """
    doc = _mapping(params, by_alias=True)
    for index, key in enumerate(doc):  # a comment above each section
        field = _field_name(type(params), key)
        section = getattr(params, field)
        lines = [_first_line(type(section).__doc__ or key)]
        if notes and key in notes:
            lines.append(notes[key])
        before = "\n".join(lines)
        doc.yaml_set_comment_before_after_key(key, before=before if index else HEADER + before)
    rt = YAML()
    rt.width = 4096
    rt.representer.add_representer(type(None), _null)
    rt.representer.add_representer(float, _float)
    buffer = io.StringIO()
    rt.dump(doc, buffer)
    return _blank_line_between_sections(buffer.getvalue())


def _mapping(model: BaseModel, by_alias: bool = False) -> CommentedMap:
    out = CommentedMap()
    for name, info in type(model).model_fields.items():
        key = (info.alias or name) if by_alias else name
        out[key] = _value(getattr(model, name))
        if info.description and not isinstance(getattr(model, name), BaseModel):
            out.yaml_add_eol_comment(_first_line(info.description), key, column=_COMMENT_COLUMN)
    return out


def _value(value: Any) -> Any:
    if isinstance(value, BaseModel):
        return _mapping(value)
    if isinstance(value, list | tuple):
        seq = CommentedSeq(_value(v) for v in value)
        if not any(isinstance(v, BaseModel) for v in value):
            seq.fa.set_flow_style()
        return seq
    if isinstance(value, dict):
        mapping = CommentedMap((k, _value(v)) for k, v in value.items())
        mapping.fa.set_flow_style()
        return mapping
    return value


def _field_name(cls: type[BaseModel], key: str) -> str:
    for name, info in cls.model_fields.items():
        if key in (name, info.alias):
            return name
    raise KeyError(key)


def _first_line(text: str) -> str:
    """The first sentence of a description, without reST markup, on one line."""
    line = " ".join(text.replace("``", "").split())
    if len(line) > _MAX_COMMENT and ". " in line:
        line = line[: line.index(". ") + 1]
    return line


def _null(representer: Any, data: None) -> Any:
    return representer.represent_scalar("tag:yaml.org,2002:null", "null")


def _float(representer: Any, data: float) -> Any:
    """Floats that PyYAML reads back as floats too (``1.0e-08``, not ``1e-08``)."""
    text = repr(float(data))
    mantissa, e, exponent = text.partition("e")
    if e and "." not in mantissa:
        text = f"{mantissa}.0e{exponent}"
    return representer.represent_scalar("tag:yaml.org,2002:float", text)


def _blank_line_between_sections(text: str) -> str:
    """A blank line above each section's comment (and below the file's header)."""
    lines = text.splitlines()
    out = []
    for i, line in enumerate(lines):
        if line.startswith("#") and i > 0 and not lines[i - 1].startswith("#"):
            out.append("")
        out.append(line)
        if line == "# " + HEADER.splitlines()[-1]:
            out.append("")
    return "\n".join(out) + "\n"
