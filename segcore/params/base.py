"""What every section of ``params.yaml`` shares: the base class and the rule engine.

A user who fixes one mistake in ``params.yaml`` should not meet the next one only on the
following run, so validation collects every problem, of single fields and between fields,
before it raises (:func:`validate_with_rules`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Annotated, Any

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ModelWrapValidatorHandler,
    ValidationError,
)
from pydantic_core import InitErrorDetails, PydanticCustomError


class Section(BaseModel):
    """Base of every section: unknown keys are errors, field docstrings are the help."""

    model_config = ConfigDict(extra="forbid", use_attribute_docstrings=True, frozen=True)


MAX_CLASS_ID = 65535
"""Largest class id a label image can hold (16 bit)."""

ClassId = Annotated[int, Field(ge=0, le=MAX_CLASS_ID)]
"""A class id as stored in label images."""

Problem = tuple[str, str]
"""``(key, problem)``: ``f"{key} {problem}"`` reads as a sentence naming the key and the fix."""

Rules = Callable[[Any, set[str]], list[Problem]]
"""Cross-field rules of a section: ``rules(values, bad)`` lists the problems and skips the
rules that read a key in ``bad`` (keys whose own value is invalid and holds its default)."""


def duplicates(items: Sequence[Any]) -> list[Any]:
    """The items that appear more than once, sorted, each listed once (for the messages)."""
    return sorted({i for i in items if items.count(i) > 1})


def validate_with_rules(
    cls: type[Section],
    data: Any,
    handler: ModelWrapValidatorHandler[Any],
    rules: Rules,
) -> Any:
    """Field validation and cross-field ``rules`` together, so every problem shows at once.

    Called from a section's ``model_validator(mode="wrap")``. When some fields are invalid,
    the rules still run on the valid ones (the invalid keys hold their defaults and are
    passed to ``rules`` as ``bad``), and all problems are raised in one ``ValidationError``.
    """
    try:
        model = handler(data)
    except ValidationError as err:
        errors = err.errors()
        if not isinstance(data, dict) or any(not e["loc"] for e in errors):
            raise
        bad = {str(e["loc"][0]) for e in errors}
        try:  # the valid keys, converted, with defaults in place of the invalid ones
            model = handler({k: v for k, v in data.items() if k not in bad})
        except ValidationError:
            raise err from None
    else:
        errors, bad = [], set()
    broken = rules(model, bad)
    if not errors and not broken:
        return model
    details: list[InitErrorDetails] = [
        {
            "type": e["type"],
            "loc": e["loc"],
            "input": e["input"],
            **({"ctx": e["ctx"]} if "ctx" in e else {}),
        }  # type: ignore[typeddict-item]
        for e in errors
    ]
    details += [
        {
            "type": PydanticCustomError("rule", "{problem}", {"problem": problem}),
            "loc": (key,),
            "input": getattr(model, key),
        }
        for key, problem in broken
    ]
    raise ValidationError.from_exception_data(cls.__name__, details)
