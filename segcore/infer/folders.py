"""The folders of ``segcore infer``: the input images (files and folders, searched
recursively, segcore's own outputs left out) and the output folder (checked, and locked
while a run writes there)."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from filelock import FileLock, Timeout

from segcore.common.errors import SegcoreError
from segcore.common.images import list_images

OUTPUT_SUFFIXES = ("_segmentation.png", "_confidence.tif", "_overlay.png")
"""What each image's outputs are named: ``<name><suffix>``."""
LOCK_NAME = ".segcore-infer.lock"
"""Lock file in the output folder, held while a run writes there."""


@dataclass(frozen=True)
class InputFile:
    """One input image and the name its outputs get (relative to the output folder)."""

    path: Path
    name: str


def collect_inputs(
    inputs: Sequence[str | os.PathLike[str]], out_dir: str | os.PathLike[str] | None = None
) -> tuple[list[InputFile], list]:
    """Expand files and folders (searched recursively) into input files with unique names.

    Files below ``out_dir`` named like segcore's outputs (:data:`OUTPUT_SUFFIXES`) are left
    out of folder inputs: an output folder inside an input folder is not read back.

    Returns:
        the input files, and ``(path, reason)`` for every path that does not exist.
    """
    files: list[InputFile] = []
    missing: list[tuple[str, str]] = []
    taken: set[str] = set()
    for raw in inputs:
        path = Path(raw)
        if path.is_dir():
            found = [
                (p, p.relative_to(path).with_suffix("").as_posix())
                for p in list_images(path)
                if not _is_output(p, out_dir)
            ]
        elif path.is_file():
            found = [(path, path.stem)]
        else:
            missing.append((str(path), "no such file or folder"))
            continue
        for p, name in found:
            unique = name if name not in taken else f"{name}_{p.suffix.lstrip('.').lower()}"
            n = 1
            while unique in taken:
                n += 1
                unique = f"{name}_{n}"
            taken.add(unique)
            files.append(InputFile(p, unique))
    return files, missing


def _is_output(path: Path, out_dir: str | os.PathLike[str] | None) -> bool:
    """Whether ``path`` lies below ``out_dir`` and is named like one of segcore's outputs."""
    if out_dir is None or not path.name.endswith(OUTPUT_SUFFIXES):
        return False
    return path.resolve().is_relative_to(Path(out_dir).resolve())


@contextlib.contextmanager
def out_lock(out: Path) -> Iterator[None]:
    """Hold the output folder's lock; a second run into the same folder is refused."""
    lock = FileLock(out / LOCK_NAME)
    try:
        lock.acquire(timeout=0)
    except Timeout:
        raise SegcoreError(
            f"{out}: another segcore infer is writing into this folder (lock file "
            f"{out / LOCK_NAME}); wait for it to finish or choose another --out"
        ) from None
    try:
        yield
    finally:
        lock.release()


def check_out_dir(out_dir: str | os.PathLike[str]) -> Path:
    """``out_dir`` as a Path, after checking it can be a folder.

    Raises:
        SegcoreError: it is an existing file, or lies under one.
    """
    out = Path(out_dir)
    for folder in (out, *out.parents):
        if folder.exists():
            if not folder.is_dir():
                where = "is a file" if folder == out else f"lies under the file {folder}"
                raise SegcoreError(
                    f"--out {out}: {where}, not a folder; pass a folder path for the outputs "
                    "(it is created when missing)"
                )
            break
    return out
