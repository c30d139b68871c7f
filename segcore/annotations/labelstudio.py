"""Label Studio JSON export: a list of tasks, each with its image and annotations.

Results used: ``polygonlabels`` (points in percent of the image size), ``rectanglelabels``
(``x y width height`` in percent, ``rotation`` in degrees clockwise around the top-left
corner, as Label Studio turns them) and ``brushlabels`` (Label Studio's own brush RLE, see
:func:`decode_brush_rle`). Shapes drawn with ``<Polygon>``/``<Rectangle>``/``<Brush>``
plus a separate ``<Labels>`` take their label from the ``labels`` result of the same id.
Percentages are converted with the result's ``original_width``/``original_height``.
Cancelled annotations and predictions are ignored; a task with more than one remaining
annotation is reported (which one is right is the user's call). Results that are not
regions (choices, text) are ignored; regions that label no area (key points) are reported.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from segcore.annotations.detect import load_json
from segcore.annotations.model import ImageEntry, ParsedExport, Shape, ring, rotate
from segcore.common.images import IMAGE_SUFFIXES

_REGIONS = frozenset({"polygon", "rectangle", "brush"})
_UNSUPPORTED = frozenset({"keypointlabels", "keypoint", "ellipselabels", "ellipse"})
_FIX = "fix or delete it in Label Studio and export again"


def read_labelstudio(path: Path) -> ParsedExport:
    """Parse the Label Studio JSON export ``path`` (problems are collected, not raised)."""
    data = load_json(path)
    out = ParsedExport("labelstudio")
    if not isinstance(data, list):
        out.problems.append(f"{path}: not a Label Studio JSON export (a list of tasks)")
        return out
    for index, task in enumerate(data):
        task_name = f"task {task.get('id', '?')} (#{index})" if isinstance(task, dict) else ""
        name = _image_ref(task.get("data") if isinstance(task, dict) else None)
        if name is None:
            out.problems.append(
                f"{path}: task #{index} names no image in its 'data'; export with the image "
                "field (e.g. data.image)"
            )
            continue
        entry = ImageEntry(name, path)
        done = [a for a in task.get("annotations") or [] if not a.get("was_cancelled")]
        if len(done) > 1:
            ids = ", ".join(str(a.get("id", "?")) for a in done)
            out.problems.append(
                f"{path}: {task_name} (image {name!r}) has {len(done)} annotations (ids {ids}); "
                "delete or cancel all but one in Label Studio, then export again"
            )
        elif done:
            _add_results(path, task_name, done[0].get("result") or [], entry, out.problems)
        out.entries.append(entry)
    return out


def _image_ref(data: Any) -> str | None:
    """The image reference of a task: ``data.image``, else the one value naming an image."""
    if not isinstance(data, dict):
        return None
    if isinstance(data.get("image"), str):
        return data["image"]
    found = [
        v
        for v in data.values()
        if isinstance(v, str) and Path(v.split("?")[0]).suffix.lower() in IMAGE_SUFFIXES
    ]
    return found[0] if len(found) == 1 else None


def _add_results(
    path: Path, task_name: str, results: list[Any], entry: ImageEntry, problems: list[str]
) -> None:
    labels_by_id = {
        r.get("id"): r.get("value", {}).get("labels")
        for r in results
        if isinstance(r, dict) and r.get("type") == "labels"
    }
    for k, result in enumerate(results):
        kind = str(result.get("type", "")).lower() if isinstance(result, dict) else ""
        base = kind.removesuffix("labels")
        where = f"{task_name} result #{k} ({kind})"
        if kind in _UNSUPPORTED:
            problems.append(f"{path}: {where} labels no area and is not supported; {_FIX}")
            continue
        if base not in _REGIONS:
            continue  # choices, text areas, the labels of a separate <Labels> tag
        try:
            size = _original_size(result)
            if entry.size is not None and size != entry.size:
                raise ValueError(f"image size {size} differs from {entry.size} of earlier results")
            entry.size = size
            label = _label(result, kind, labels_by_id)
            entry.shapes.append(_shape(result["value"], base, label, where, size))
        except (ValueError, TypeError, KeyError) as err:
            problems.append(f"{path}: {where} (image {entry.name!r}): {err}; {_FIX}")


def _original_size(result: dict[str, Any]) -> tuple[int, int]:
    w, h = result.get("original_width"), result.get("original_height")
    if not (isinstance(w, int) and isinstance(h, int) and w > 0 and h > 0):
        raise ValueError("has no original_width/original_height")
    if result.get("image_rotation"):
        raise ValueError("the image is rotated in Label Studio (image_rotation); unrotate it")
    return w, h


def _label(result: dict[str, Any], kind: str, labels_by_id: dict[Any, Any]) -> str:
    value = result.get("value") or {}
    names = value.get(kind) or value.get("labels") or labels_by_id.get(result.get("id"))
    if not isinstance(names, list) or len(names) != 1 or not isinstance(names[0], str):
        raise ValueError(f"must carry exactly one label, has {names!r}")
    return names[0]


def _shape(
    value: dict[str, Any], base: str, label: str, where: str, size: tuple[int, int]
) -> Shape:
    scale = np.array(size, dtype=np.float64) / 100.0
    if base == "polygon":
        return Shape(label, "polygon", where, (ring(value["points"]) * scale,))
    if base == "rectangle":
        x, y, w, h = (float(value[k]) for k in ("x", "y", "width", "height"))
        corners = ring([[x, y], [x + w, y], [x + w, y + h], [x, y + h]]) * scale
        if value.get("rotation"):
            corners = rotate(corners, corners[0], float(value["rotation"]))
        return Shape(label, "polygon", where, (corners,))
    if value.get("format", "rle") != "rle":
        raise ValueError(f"brush format {value.get('format')!r} is not supported, only 'rle'")
    width, height = size
    flat = decode_brush_rle(value["rle"], expected=width * height * 4)
    packed = np.packbits(flat.reshape(height, width, 4)[:, :, 3] > 0, axis=1)
    return Shape(
        label,
        "mask",
        where,
        mask_box=(0, 0, width, height),
        decode_mask=lambda: np.unpackbits(packed, axis=1, count=width).astype(bool),
    )


def decode_brush_rle(rle: list[int], expected: int) -> np.ndarray:
    """Label Studio's brush RLE -> the flat ``uint8`` RGBA array (``height * width * 4``).

    A reimplementation of ``label_studio_converter.brush.decode_rle`` (HumanSignal
    label-studio-converter, Apache-2.0), itself a port of thi.ng's ``rle-pack``: a bit
    stream of a 32-bit value count, a 5-bit word size - 1, four 4-bit run-length sizes - 1,
    then blocks of ``[1 bit repeat][2 bits size index][length - 1][word]`` (a run of one
    word) or ``[0][2][length - 1][word x length]`` (literal words). Decoding whole is done
    here, when the export is read, so a corrupt stroke is reported with the others.

    Raises:
        ValueError: not bytes, a value count other than ``expected``, or a stream that
            ends early or overruns.
    """
    data = np.asarray(rle)
    if data.ndim != 1 or not np.issubdtype(data.dtype, np.integer) or (data > 255).any():
        raise ValueError("brush 'rle' must be a list of byte values 0-255")
    bits = np.unpackbits(data.astype(np.uint8)).tobytes().translate(b"".maketrans(b"\0\1", b"01"))
    pos = 0

    def read(n: int) -> int:
        nonlocal pos
        if pos + n > len(bits):
            raise ValueError("brush RLE ends early (corrupt)")
        pos += n
        return int(bits[pos - n : pos], 2)

    num = read(32)
    if num != expected:
        raise ValueError(f"brush RLE holds {num} values, the image needs {expected}")
    word = read(5) + 1
    sizes = [read(4) + 1 for _ in range(4)]
    out = np.zeros(num, dtype=np.uint8 if word <= 8 else np.uint32)
    i = 0
    while i < num:
        repeat = read(1)
        j = i + 1 + read(sizes[read(2)])
        if j > num:
            raise ValueError("brush RLE runs past the image (corrupt)")
        if repeat:
            out[i:j] = read(word)
        else:
            out[i:j] = [read(word) for _ in range(j - i)]
        i = j
    return out
