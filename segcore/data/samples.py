"""Preprocessed samples: one safetensors file per sample, and the class-id <-> index maps.

A sample file holds ``image`` ``(C, H, W)`` float32 (the network input), ``label``
``(H, W)`` uint16 class ids (after background merging; HALCON's preprocessed
segmentation image) and, for training samples, ``weight`` ``(H, W)`` float32 (HALCON's
weight image). Loading is a memory copy, never an image decode; writing is atomic.
String metadata (e.g. the hash of the inputs it was made from) rides in the file header.
:func:`map_sample` maps a file's tensors into memory without reading them, so a tile of a
large sample costs only the pages it touches (training on tiles streamed from disk).
"""

from __future__ import annotations

import json
import mmap
import os
import struct
from pathlib import Path
from typing import Any

import numpy as np
from safetensors import SafetensorError, safe_open
from safetensors.numpy import save

from segcore.common.constants import IGNORE_INDEX
from segcore.common.errors import DatasetError
from segcore.common.io import write_bytes_atomic

SAMPLE_SUFFIX = ".safetensors"


def save_sample(
    path: str | os.PathLike[str],
    image: np.ndarray,
    label: np.ndarray,
    weight: np.ndarray | None = None,
    metadata: dict[str, str] | None = None,
) -> None:
    """Write one preprocessed sample atomically.

    Args:
        path: the ``.safetensors`` file.
        image: ``(C, H, W)`` float32 network input.
        label: ``(H, W)`` integer class ids.
        weight: ``(H, W)`` float32 per-pixel loss weights, training samples only.
        metadata: string key/values stored in the header (read with :func:`read_metadata`).
            Use a single key: safetensors writes several keys in no fixed order, so the
            bytes of identical samples would differ.
    """
    if image.ndim != 3 or label.shape != image.shape[1:]:
        raise ValueError(f"image {image.shape} and label {label.shape} do not match")
    tensors = {
        "image": np.ascontiguousarray(image, dtype=np.float32),
        "label": np.ascontiguousarray(label, dtype=np.uint16),
    }
    if weight is not None:
        if weight.shape != label.shape:
            raise ValueError(f"weight {weight.shape} and label {label.shape} do not match")
        tensors["weight"] = np.ascontiguousarray(weight, dtype=np.float32)
    write_bytes_atomic(path, save(tensors, metadata=metadata))


def load_sample(path: str | os.PathLike[str]) -> dict[str, np.ndarray]:
    """Read a sample: ``{"image": (C,H,W) f32, "label": (H,W) u16[, "weight": (H,W) f32]}``."""
    try:
        with safe_open(str(path), framework="numpy") as f:
            return {key: f.get_tensor(key) for key in f.keys()}  # noqa: SIM118
    except (OSError, ValueError, SafetensorError) as err:
        raise DatasetError(
            f"{path}: not a readable preprocessed sample ({err}); run `segcore preprocess` again"
        ) from None


_DTYPES = {"F32": np.float32, "U16": np.uint16, "U8": np.uint8, "I64": np.int64}
"""safetensors dtype names of the tensors a sample holds."""


INFO_KEY = "segcore"
"""The header metadata key under which the preprocess stage stores a sample's JSON info
(input and sample hashes, ``class_counts`` per class id, ``split``)."""


def _header(path: str | os.PathLike[str]) -> tuple[int, dict[str, Any]]:
    """``(header bytes, header)`` of a safetensors file (the tensors are not read)."""
    with open(path, "rb") as f:
        (size,) = struct.unpack("<Q", f.read(8))
        return size, json.loads(f.read(size))


def _unreadable(path: str | os.PathLike[str], err: Exception) -> DatasetError:
    return DatasetError(
        f"{path}: not a readable preprocessed sample ({err}); run `segcore preprocess` again"
    )


def sample_header(
    path: str | os.PathLike[str],
) -> tuple[dict[str, tuple[int, ...]], dict[str, Any]]:
    """A sample's tensor shapes and its stored info (:data:`INFO_KEY`; ``{}`` if none),
    from the file header alone.

    Raises:
        DatasetError: the file is missing or not a sample file.
    """
    try:
        _, header = _header(path)
        meta = header.pop("__metadata__", None) or {}
        info = json.loads(meta[INFO_KEY]) if INFO_KEY in meta else {}
        shapes = {k: tuple(int(n) for n in v["shape"]) for k, v in header.items()}
    except (OSError, ValueError, KeyError, TypeError, struct.error) as err:
        raise _unreadable(path, err) from None
    return shapes, info


def map_sample(path: str | os.PathLike[str]) -> dict[str, np.ndarray]:
    """A sample's tensors as read-only memory maps (nothing is read until it is indexed).

    Same keys, shapes and dtypes as :func:`load_sample`; slicing a map reads only the
    pages the slice covers, and the mapping ends when the arrays are dropped.

    Raises:
        DatasetError: the file is missing or not a sample file.
    """
    try:
        with open(path, "rb") as f:
            buffer = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
        (size,) = struct.unpack_from("<Q", buffer)
        header = json.loads(buffer[8 : 8 + size])
        out = {}
        for key, info in header.items():
            if key == "__metadata__":
                continue
            begin, end = info["data_offsets"]
            shape = tuple(int(n) for n in info["shape"])
            dtype = np.dtype(_DTYPES[info["dtype"]])
            count = int(np.prod(shape))
            if end - begin != dtype.itemsize * count:
                raise ValueError(f"tensor {key} has {end - begin} bytes for shape {shape}")
            offset = 8 + size + begin
            out[key] = np.frombuffer(buffer, dtype, count, offset).reshape(shape)
        return out
    except (OSError, ValueError, KeyError, TypeError, struct.error) as err:
        raise _unreadable(path, err) from None


def read_metadata(path: str | os.PathLike[str]) -> dict[str, str]:
    """The header metadata of a sample file (cheap: the tensors are not read)."""
    with safe_open(str(path), framework="numpy") as f:
        return dict(f.metadata() or {})


def sample_path(sample_dir: str | os.PathLike[str], image_id: int) -> Path:
    """Where the sample of ``image_id`` lives."""
    return Path(sample_dir) / f"{int(image_id):06d}{SAMPLE_SUFFIX}"


def class_index_lut(class_ids: list[int], ignore_class_ids: list[int] = ()) -> np.ndarray:
    """Lookup table from label value (class id) to training index.

    Class ``class_ids[k]`` maps to ``k``; ignore classes and values not in ``class_ids``
    map to :data:`~segcore.common.constants.IGNORE_INDEX`. Index it with a label image:
    ``lut[label]`` gives ``(H, W)`` int64 targets.
    """
    lut = np.full(max([*class_ids, *ignore_class_ids, 0]) + 1, IGNORE_INDEX, dtype=np.int64)
    ignore = set(ignore_class_ids)
    for k, cid in enumerate(class_ids):
        if cid not in ignore:
            lut[cid] = k
    return lut


def label_to_index(
    label: np.ndarray, class_ids: list[int], ignore_class_ids: list[int] = ()
) -> np.ndarray:
    """``(..., H, W)`` class ids -> int64 training indices (ignore / unknown -> IGNORE_INDEX)."""
    lut = class_index_lut(class_ids, ignore_class_ids)
    label = np.asarray(label)
    out = np.full(label.shape, IGNORE_INDEX, dtype=np.int64)
    inside = label < len(lut)
    out[inside] = lut[label[inside]]
    return out
