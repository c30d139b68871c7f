"""Which tool wrote an export: told by the user, or recognised from the file itself.

- a folder of JSON files with ``shapes`` -> ``labelme`` (one JSON per image),
- a ``.json`` object with ``images``, ``annotations`` and ``categories`` -> ``coco``,
- a ``.json`` object with ``shapes`` -> ``labelme`` (a single image),
- a ``.json`` list of tasks (objects with ``data``) -> ``labelstudio``,
- an ``.xml`` file whose root element is ``<annotations>`` -> ``cvat`` (CVAT for images 1.1).
"""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any, Final, Literal, cast

from segcore.common.errors import DatasetError, ParamsError

Format = Literal["coco", "cvat", "labelme", "labelstudio"]
FORMATS: Final[tuple[Format, ...]] = ("coco", "cvat", "labelme", "labelstudio")
"""Format names accepted by ``import_labels(format=...)``."""

_HOW = (
    "export COCO 1.0 JSON, CVAT for images 1.1 XML, LabelMe JSON (a folder of them) or "
    "Label Studio JSON, or name the format"
)


def load_json(path: Path) -> Any:
    """The JSON in ``path``; unreadable or invalid JSON is a :class:`DatasetError`."""
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise DatasetError(
            f"{path}: not valid JSON (line {err.lineno}, column {err.colno}: {err.msg}); "
            "export it again from the labelling tool"
        ) from None
    except (OSError, UnicodeDecodeError) as err:
        raise DatasetError(f"{path}: cannot be read ({err}); check the path") from None


def load_xml(path: Path) -> ET.Element:
    """The root element of the XML file ``path``; invalid XML is a :class:`DatasetError`."""
    try:
        return ET.parse(path).getroot()
    except ET.ParseError as err:
        line, column = err.position
        raise DatasetError(
            f"{path}: not valid XML (line {line}, column {column}); export it again from CVAT"
        ) from None
    except OSError as err:
        raise DatasetError(f"{path}: cannot be read ({err}); check the path") from None


def labelme_files(folder: Path) -> list[Path]:
    """The JSON files of a LabelMe folder (sub-folders included, hidden ones skipped), sorted."""
    return sorted(
        p
        for p in folder.rglob("*.json")
        if p.is_file() and not any(part.startswith(".") for part in p.relative_to(folder).parts)
    )


def detect_format(export: Path) -> Format:
    """The format of ``export`` (a file or a LabelMe folder), recognised from its content.

    Raises:
        DatasetError: the export is missing or in none of the known formats.
    """
    if export.is_dir():
        files = labelme_files(export)
        if files and isinstance(first := load_json(files[0]), dict) and "shapes" in first:
            return "labelme"
        raise DatasetError(
            f"{export}: a folder, but not of LabelMe JSON files (found {len(files)} .json "
            "files; the first has no 'shapes'); give the LabelMe folder or the export file"
        )
    if not export.is_file():
        raise DatasetError(f"{export}: export not found; check the path")
    if export.suffix.lower() == ".xml":
        root = load_xml(export)
        if root.tag == "annotations":
            return "cvat"
        raise DatasetError(
            f"{export}: XML with root <{root.tag}>, not CVAT's <annotations>; {_HOW}"
        )
    return _detect_json(export, load_json(export))


def _detect_json(export: Path, data: Any) -> Format:
    if isinstance(data, dict):
        if {"images", "annotations", "categories"} <= data.keys():
            return "coco"
        if "shapes" in data:
            return "labelme"
        found = ", ".join(sorted(map(str, data))[:8]) or "none"
        raise DatasetError(
            f"{export}: a JSON object with keys {found}, not COCO (images, annotations, "
            f"categories) nor LabelMe (shapes); {_HOW}"
        )
    if isinstance(data, list) and all(isinstance(t, dict) and "data" in t for t in data):
        return "labelstudio"
    raise DatasetError(
        f"{export}: a JSON {type(data).__name__}, not a known export (Label Studio exports "
        f"a list of tasks with 'data'); {_HOW}"
    )


def check_format(name: str | None, export: Path) -> Format:
    """``name`` checked against :data:`FORMATS`, or the detected format when ``None``.

    Raises:
        ParamsError: ``name`` is not a known format.
        DatasetError: the format cannot be detected.
    """
    if name is None or name == "auto":
        return detect_format(export)
    if name not in FORMATS:
        raise ParamsError(
            f"format {name!r} is unknown; use one of {', '.join(FORMATS)} or leave it out "
            "to detect it from the export"
        )
    return cast(Format, name)
