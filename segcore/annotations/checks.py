"""Checks of an export against the image folder, before anything is written.

Each check adds one message per problem (capped per kind, so a wrong folder does not
print ten thousand lines), naming the export file, the shape and the image, and the fix.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from segcore.annotations.match import ImageIndex
from segcore.annotations.model import ImageEntry, ParsedExport, Shape
from segcore.annotations.shapes import shape_problems
from segcore.common.images import image_size

MAX_LISTED = 50
"""Problems of one kind listed one by one before the rest is summed up in one line."""


@dataclass
class PlannedImage:
    """One image to write a label file for.

    Attributes:
        rel: the image's path relative to the image folder (POSIX).
        size: ``(width, height)`` in pixels, from the image file's header.
        shapes: its shapes in drawing order (``z``, then export order: later on top).
    """

    rel: str
    size: tuple[int, int]
    shapes: list[Shape] = field(default_factory=list)


def capped(messages: Iterable[str]) -> list[str]:
    """The first :data:`MAX_LISTED` messages, then one line counting the rest."""
    out = list(messages)
    if len(out) > MAX_LISTED:
        out[MAX_LISTED:] = [f"... and {len(out) - MAX_LISTED} more problems like these"]
    return out


def check_export(
    parsed: ParsedExport,
    index: ImageIndex,
    class_map: Mapping[str, int] | None,
    want_empty: bool,
) -> tuple[list[PlannedImage], list[str]]:
    """The images to write (sorted by path) and every problem found.

    Args:
        parsed: what the format reader found (its problems are included in the result).
        index: the images of the image folder.
        class_map: label name -> class id given by the caller, or ``None`` (then every
            label is known).
        want_empty: plan the images without shapes too (they get all-background labels).
    """
    problems = capped(parsed.problems)
    matched, missing = _match(parsed.entries, index)
    problems += capped(missing)
    planned: dict[str, PlannedImage] = {}
    size_problems, shape_msgs, unreadable = [], [], []
    for rel in index.files:
        entry = matched.get(rel)
        if entry is None and not want_empty:
            continue
        try:
            size = image_size(index.files[rel])
        except (OSError, ValueError) as err:
            unreadable.append(
                f"{index.files[rel]}: cannot read the image ({err}); replace or remove it"
            )
            continue
        plan = planned[rel] = PlannedImage(rel, size)
        if entry is None:
            continue
        if entry.size is not None and tuple(entry.size) != size:
            size_problems.append(
                f"{entry.source}: image {entry.name!r} is {entry.size[0]}x{entry.size[1]} in the "
                f"export but {index.files[rel]} is {size[0]}x{size[1]}; export the annotations "
                "of these very images, or point the image folder at the images that were labelled"
            )
            continue
        for shape in entry.shapes:
            shape_msgs += [
                f"{entry.source}: {shape.where} (image {entry.name!r}): {msg}"
                for msg in shape_problems(shape, *size)
            ]
        plan.shapes = sorted(entry.shapes, key=lambda s: s.z)  # stable: export order on ties
    problems += capped(unreadable) + capped(size_problems) + capped(shape_msgs)
    problems += _unknown_labels(parsed, class_map)
    problems += capped(_label_clashes(planned))
    return [planned[rel] for rel in sorted(planned)], problems


def _match(entries: list[ImageEntry], index: ImageIndex) -> tuple[dict[str, ImageEntry], list[str]]:
    """Image path -> its export entry, and the problems of entries that match no image."""
    matched: dict[str, ImageEntry] = {}
    problems: list[str] = []
    for entry in entries:
        rel, why = index.find(entry)
        if rel is None:
            if entry.shapes:  # an image listed without shapes has nothing to import
                problems.append(
                    f"{entry.source}: image {entry.name!r} has {len(entry.shapes)} shapes but "
                    f"{why}; add the image, point the image folder at it, or delete its "
                    "annotations from the export"
                )
        elif rel in matched:
            problems.append(
                f"{entry.source}: image {entry.name!r} is annotated twice (also as "
                f"{matched[rel].name!r} in {matched[rel].source}); keep one of the two"
            )
        else:
            matched[rel] = entry
    return matched, problems


def _unknown_labels(parsed: ParsedExport, class_map: Mapping[str, int] | None) -> list[str]:
    if class_map is None:
        return []
    unknown: dict[str, list[tuple[ImageEntry, Shape]]] = {}
    for entry in parsed.entries:
        for shape in entry.shapes:
            if shape.label not in class_map:
                unknown.setdefault(shape.label, []).append((entry, shape))
    known = ", ".join(sorted(class_map))
    return capped(
        f"{uses[0][0].source}: label {name!r} ({len(uses)} shapes, e.g. {uses[0][1].where} of "
        f"image {uses[0][0].name!r}) is not in the class map ({known}); add it to the class "
        "map or rename the label in the labelling tool"
        for name, uses in sorted(unknown.items())
    )


def _label_clashes(planned: Mapping[str, PlannedImage]) -> list[str]:
    by_label: dict[str, list[str]] = {}
    for rel in planned:
        by_label.setdefault(label_rel(rel), []).append(rel)
    return [
        f"{', '.join(rels)}: these images would share the label file {label}; rename one "
        "(segcore pairs images and labels by name)"
        for label, rels in sorted(by_label.items())
        if len(rels) > 1
    ]


def label_rel(image_rel: str) -> str:
    """The label file of an image: same sub-folder and stem, ``.png``."""
    return Path(image_rel).with_suffix(".png").as_posix()
