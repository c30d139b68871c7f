"""Command-line options generated from the params sections, so the two never drift apart.

A stage command has one option per field of its ``params.yaml`` section: ``batch_size``
becomes ``--batch-size``, its type the option's type, its docstring the help (with the
key, e.g. ``(train.batch_size)``, appended). Adding a field to a section adds the option.
An option left out keeps the value of the parameter file; the values given reach the
command as :class:`Overrides`, which applies them with :func:`segcore.params.override`
(validated again, errors naming the option).

Fields the command line cannot express (nested sections, dicts, lists of sections) get
no option; they are set in the parameter file only.
"""

from __future__ import annotations

import functools
import inspect
import types
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Annotated, Any, Literal, TypeVar, Union, get_args, get_origin

import typer
from pydantic.fields import FieldInfo
from rich.markup import escape

from segcore.params.base import Section
from segcore.params.root import override

S = TypeVar("S", bound=Section)
R = TypeVar("R")

SCALAR_TYPES = (str, int, float, bool)
"""Field types an option can carry as they are (pydantic converts further on override)."""

MAX_CHOICES_WIDTH = 24
"""Longer choices (``a|b|c``) move from the type column into the help, which they would
otherwise squeeze into a narrow column."""

OVERRIDES_PARAMETER = "overrides"
"""The parameter of a command function that receives the generated options' values."""


@dataclass(frozen=True)
class Overrides:
    """The values of a command's generated options; ``None``: keep the parameter file's."""

    values: Mapping[str, Any]
    """Field name -> value given on the command line, or ``None``."""
    option_names: Mapping[str, str]
    """Field name -> option, for fields whose option is not ``--field-name``."""

    def apply(self, section: S) -> S:
        """``section`` with the given values in place, validated again.

        Raises:
            ParamsError: a value is invalid; the message names the option.
        """
        return override(section, option_names=dict(self.option_names), **self.values)


@dataclass(frozen=True)
class SectionOption:
    """One generated option: a field of a section as a Typer option."""

    field: str
    """Field name; also the command function's parameter name."""
    decls: tuple[str, ...]
    """Option names as click declares them, e.g. ``("--epochs", "--num-epochs")``."""
    annotation: Any
    """``T | None`` or ``list[T] | None``: ``None`` means the option was not given."""
    help: str
    """The field's docstring and its params key."""
    panel: str
    """Help panel that groups the section's options."""
    renamed: bool = False
    """Named by the renames table instead of ``--field-name``."""
    show_choices: bool = True
    """List a ``Literal``'s choices in the type column (else the help lists them)."""

    @property
    def name(self) -> str:
        """The option as error messages name it: its first declared name."""
        return self.decls[0].split("/")[0]

    def parameter(self) -> inspect.Parameter:
        """The command function parameter that Typer reads this option from."""
        option = typer.Option(
            *self.decls,
            help=self.help,
            show_default=False,
            show_choices=self.show_choices,
            rich_help_panel=self.panel,
        )
        return inspect.Parameter(
            self.field,
            inspect.Parameter.KEYWORD_ONLY,
            default=None,
            annotation=Annotated[self.annotation, option],
        )


def _unannotated(annotation: Any) -> Any:
    """``Annotated[T, ...]`` -> ``T`` (constraints stay with pydantic)."""
    while get_origin(annotation) is Annotated:
        annotation = get_args(annotation)[0]
    return annotation


def _scalar(annotation: Any, choices: bool = True) -> Any | None:
    """The option type of a single value, or ``None`` when an option cannot carry it.

    A ``Literal`` stays a ``Literal`` (Typer lists and checks the choices) where
    ``choices``; else, as Typer cannot repeat choices, it becomes the type of its values
    and pydantic checks them on override.
    """
    annotation = _unannotated(annotation)
    if annotation in SCALAR_TYPES:
        return annotation
    if get_origin(annotation) is Literal:
        value_types = {type(v) for v in get_args(annotation)}
        if len(value_types) == 1 and value_types <= set(SCALAR_TYPES):
            return annotation if choices else value_types.pop()
    return None


def option_type(annotation: Any) -> tuple[Any, bool] | None:
    """``(type of one value, repeatable)`` for a field's annotation, ``None`` for no option.

    ``T`` and ``T | None`` give a ``T`` option (a ``None`` cannot be given: leave the
    option out); ``list[T]`` gives a repeatable one. Sections, dicts and lists of
    sections give none.
    """
    annotation = _unannotated(annotation)
    origin = get_origin(annotation)
    if origin in (Union, types.UnionType):
        rest = [a for a in get_args(annotation) if a is not type(None)]
        return option_type(rest[0]) if len(rest) == 1 else None
    if origin is list:
        args = get_args(annotation)
        item = _scalar(args[0], choices=False) if args else None
        return (item, True) if item is not None else None
    scalar = _scalar(annotation)
    return (scalar, False) if scalar is not None else None


def _choices(item: Any) -> list[str]:
    """The values of a ``Literal`` option as typed on the command line; ``[]`` for others."""
    return [str(v) for v in get_args(item)] if get_origin(item) is Literal else []


def option_help(
    key: str, name: str, field: FieldInfo, repeatable: bool, choices: Sequence[str] = ()
) -> str:
    """The field's docstring as one line of help, ending with its params key.

    ``choices``: values to list in the help because the type column does not show them.
    """
    text = " ".join((field.description or "").split()).replace("``", "").rstrip(".")
    if choices:
        text += f"; one of {', '.join(choices)}"
    if repeatable:
        text += "; repeat the option for several values"
    return escape(f"{text} ({key}.{name}).".lstrip())


def default_decls(name: str, is_bool: bool) -> tuple[str, ...]:
    """``--field-name``, or the ``--field-name/--no-field-name`` pair for a bool."""
    dashed = name.replace("_", "-")
    return (f"--{dashed}/--no-{dashed}",) if is_bool else (f"--{dashed}",)


def section_options(
    section: type[Section],
    key: str,
    renames: Mapping[str, Sequence[str]] | None = None,
    skip: Collection[str] = (),
) -> list[SectionOption]:
    """One option per field of ``section`` that an option can carry, in field order.

    Args:
        section: the section class.
        key: its key in ``params.yaml`` (``train``), for the help and the renames.
        renames: ``"train.num_epochs" -> ("--epochs", ...)``: option names other than
            the default ``--num-epochs``.
        skip: keys (``"train.nproc"``) that get no option.
    """
    renames = renames or {}
    panel = f"Overrides of the {key} section of the parameter file"
    options = []
    for name, field in section.model_fields.items():
        kind = option_type(field.annotation)
        if kind is None or f"{key}.{name}" in skip:
            continue
        item, repeatable = kind
        renamed = tuple(renames.get(f"{key}.{name}", ()))
        decls = renamed or default_decls(name, item is bool)
        annotation = list[item] | None if repeatable else item | None
        choices = _choices(item)
        show_choices = len("|".join(choices)) <= MAX_CHOICES_WIDTH
        help_text = option_help(key, name, field, repeatable, [] if show_choices else choices)
        options.append(
            SectionOption(name, decls, annotation, help_text, panel, bool(renamed), show_choices)
        )
    return options


def section_command(
    section: type[Section],
    key: str,
    renames: Mapping[str, Sequence[str]] | None = None,
    skip: Collection[str] = (),
) -> Callable[[Callable[..., R]], Callable[..., R]]:
    """Decorator: give a command function one option per field of ``section``.

    The function declares its own parameters (``--params``, arguments, options that are
    no parameter) and an ``overrides: Overrides`` parameter; the returned function has
    the own parameters plus the generated options in its signature, which Typer reads,
    and passes the options' values to the function as ``overrides``. ``renames`` and
    ``skip`` as in :func:`section_options`.
    """
    options = section_options(section, key, renames, skip)
    renamed = {o.field: o.name for o in options if o.renamed}

    def decorate(func: Callable[..., R]) -> Callable[..., R]:
        own = inspect.signature(func, eval_str=True)
        if OVERRIDES_PARAMETER not in own.parameters:
            raise TypeError(f"{func.__name__} needs a parameter {OVERRIDES_PARAMETER!r}")
        clash = sorted({o.field for o in options} & set(own.parameters))
        if clash:
            raise TypeError(f"{func.__name__}: parameters {clash} clash with {key} options")
        kept = [p for p in own.parameters.values() if p.name != OVERRIDES_PARAMETER]
        parameters = kept + [o.parameter() for o in options]

        @functools.wraps(func)
        def command(**kwargs: Any) -> R:
            values = {o.field: kwargs.pop(o.field, None) for o in options}
            return func(**kwargs, **{OVERRIDES_PARAMETER: Overrides(values, renamed)})

        # Typer takes the parameters from the signature and resolves their annotations
        # with get_type_hints, which reads __annotations__: both must be the generated ones.
        command.__signature__ = own.replace(parameters=parameters)  # type: ignore[attr-defined]
        command.__annotations__ = {p.name: p.annotation for p in parameters}
        return command

    return decorate
