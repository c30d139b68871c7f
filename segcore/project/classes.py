"""The classes of a new project: the ids found in its label images, and their names (given
as ``ID=NAME`` options or asked for in a terminal)."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path

from segcore.common.errors import DatasetError, ParamsError
from segcore.common.images import LABEL_SUFFIXES, list_images, read_label
from segcore.common.progress import track
from segcore.data.labels import label_values

AskNames = Callable[[Sequence[int]], Mapping[int, str]]
"""Asks the user for a name per class id (a terminal prompt)."""

_SHOWN_FILES = 3
"""Label files named per unknown id in an error."""


def parse_class_options(options: Iterable[str]) -> dict[int, str]:
    """``["0=good", "1=scratch"]`` -> ``{0: "good", 1: "scratch"}``.

    Raises:
        ParamsError: every malformed entry and every id given twice, at once.
    """
    classes: dict[int, str] = {}
    problems = []
    for option in options:
        cid, sep, name = option.partition("=")
        if not sep or not cid.strip().isdigit() or not name.strip():
            problems.append(f"--class {option!r}: give ID=NAME, e.g. --class 1=scratch")
            continue
        if int(cid) in classes:
            problems.append(f"--class {option!r}: class id {int(cid)} is given twice")
            continue
        classes[int(cid)] = name.strip()
    if problems:
        raise ParamsError(problems, title="invalid --class options")
    return classes


def scan_label_ids(label_dir: Path, prefix: str = "", suffix: str = "") -> dict[int, list[Path]]:
    """``{value: label files holding it}`` over every label image below ``label_dir``
    (sub-folders too) whose name has ``prefix`` and ``suffix``, in sorted file order.

    Raises:
        DatasetError: the folder is missing or holds no label images (PNG, TIFF, BMP), or a
            label image cannot be read; every unreadable file at once.
    """
    if not label_dir.is_dir():
        raise DatasetError(f"{label_dir}: label folder not found; check --labels")
    files = [
        p
        for p in list_images(label_dir, LABEL_SUFFIXES)
        if p.stem.startswith(prefix) and p.stem.endswith(suffix)
    ]
    if not files:
        named = f" named {prefix}*{suffix}" if prefix or suffix else ""
        raise DatasetError(
            f"{label_dir}: no label images{named} found (one-channel PNG, TIFF or BMP, pixel "
            "value = class id); check --labels, --label-prefix and --label-suffix"
        )
    found: dict[int, list[Path]] = {}
    problems = []
    for path in track(files, "labels", len(files)):
        try:
            values = label_values(read_label(path))
        except DatasetError as err:
            problems.extend(err.problems)
            continue
        for value in values.tolist():
            found.setdefault(int(value), []).append(path)
    if problems:
        raise DatasetError(problems, title=f"{label_dir}: {len(problems)} unreadable label images")
    return dict(sorted(found.items()))


def resolve_classes(
    found: Mapping[int, list[Path]],
    given: Mapping[int, str],
    ignore_ids: Sequence[int],
    label_dir: Path,
    ask: AskNames | None,
) -> dict[int, str]:
    """The project's classes ``{id: name}``, sorted by id.

    Without ``given`` names, ``ask`` is asked for the name of every id found (ignore ids
    aside); with them, every id found must be given or ignored.

    Raises:
        ParamsError: no names given and no terminal to ask in.
        DatasetError: label values that are neither given classes nor ignore ids, each with
            the files that hold it.
    """
    ids = [cid for cid in found if cid not in set(ignore_ids)]
    if not given:
        if ask is None:
            options = " ".join(f"--class {cid}=NAME" for cid in ids)
            raise ParamsError(
                f"{label_dir}: the label images hold class ids {ids}; name them with {options} "
                "(or run segcore init in a terminal to be asked)"
            )
        given = ask(ids)
    unknown = [cid for cid in ids if cid not in given]
    if unknown:
        raise DatasetError(
            [_unknown_id_problem(cid, found[cid], label_dir) for cid in unknown],
            title=f"{label_dir}: label values outside the classes given "
            f"({', '.join(f'{c}={n}' for c, n in sorted(given.items()))}); nothing was written",
        )
    return dict(sorted(given.items()))


def _unknown_id_problem(cid: int, files: list[Path], label_dir: Path) -> str:
    shown = ", ".join(p.relative_to(label_dir).as_posix() for p in files[:_SHOWN_FILES])
    more = f" and {len(files) - _SHOWN_FILES} more" if len(files) > _SHOWN_FILES else ""
    return (
        f"value {cid} in {len(files)} label images ({shown}{more}): add --class {cid}=NAME, "
        f"or --ignore-class-id {cid} for pixels left out of training and measures, or fix "
        "the label images"
    )
