"""Shared parts of the dataset converters in this folder.

- :class:`Source` reads a dataset repository: a bare git directory (what a fetch of the
  repository leaves, read straight from its objects), a clone, or a plain extracted folder.
- :class:`Writer` writes the layout ``benchmarks/bench_quality.py`` reads, atomically::

      OUT/images/<id>.png   OUT/labels/<id>.png (one channel, pixel = class id, 0 = background)
      OUT/classes.json      {"class_names": [...], "class_ids": [...], "ignore_class_ids": [...]}

  Everything goes to a temporary folder beside ``OUT`` first and is renamed into place at
  the end, so an interrupted run leaves no half-written dataset.
- :func:`run` turns a :class:`ConvertError` into one ``error: ...`` line and exit code 2.
"""

from __future__ import annotations

import argparse
import fnmatch
import io
import json
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
from PIL import Image


class ConvertError(Exception):
    """A problem with the inputs or the output folder; the message names the path and the fix."""


def parse_args(doc: str, example_src: str) -> argparse.Namespace:
    """The command line every converter shares: SRC OUT [--overwrite]."""
    parser = argparse.ArgumentParser(
        description=doc.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "src",
        type=Path,
        help=f"the fetched repository: its bare git directory (e.g. {example_src}), "
        "a clone, or a folder the repository was extracted to",
    )
    parser.add_argument(
        "out",
        type=Path,
        help="output folder (images/, labels/, classes.json); e.g. /work/datasets/<name>",
    )
    parser.add_argument(
        "--overwrite", action="store_true", help="replace OUT when it already holds files"
    )
    return parser.parse_args()


def run(main: Callable[[], None]) -> None:
    """Run a converter's main; input problems end with one message and exit code 2."""
    try:
        main()
    except ConvertError as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        print("interrupted; nothing was written", file=sys.stderr)
        sys.exit(130)


def _is_bare_git_dir(path: Path) -> bool:
    return (path / "HEAD").is_file() and (path / "objects").is_dir()


def _git(args: list[str], git_dir: Path | None = None, cwd: Path | None = None) -> str:
    cmd = ["git", *([f"--git-dir={git_dir}"] if git_dir else []), *args]
    proc = subprocess.run(cmd, cwd=cwd, capture_output=True, check=False)
    if proc.returncode != 0:
        raise ConvertError(
            f"{git_dir or cwd}: `{' '.join(cmd)}` failed ({proc.stderr.decode().strip()}); "
            "pass the repository's git directory or an extracted folder"
        )
    return proc.stdout.decode()


class Source:
    """The files of a dataset repository at one commit (or of a plain folder)."""

    def __init__(self, path: Path) -> None:
        if not path.exists():
            raise ConvertError(
                f"{path}: not found; fetch the repository first (see benchmarks/datasets/"
                "README.md) and pass its git directory or an extracted folder"
            )
        if not path.is_dir():
            raise ConvertError(f"{path}: not a folder; pass the repository's folder")
        self.path = path
        self.bare = _is_bare_git_dir(path)
        self.commit: str | None = None
        if self.bare:
            self.commit = _git(["rev-parse", "HEAD"], git_dir=path).strip()
            listed = _git(["ls-tree", "-r", "-z", "--name-only", "HEAD"], git_dir=path)
            self._files = sorted(filter(None, listed.split("\0")))
            self._batch: subprocess.Popen[bytes] | None = None
        else:
            if (path / ".git").exists():
                self.commit = _git(["rev-parse", "HEAD"], cwd=path).strip()
            self._files = sorted(
                p.relative_to(path).as_posix()
                for p in path.rglob("*")
                if p.is_file() and ".git" not in p.relative_to(path).parts
            )

    def files(self, pattern: str) -> list[str]:
        """Paths (relative, ``/``-separated) matching a glob pattern, sorted."""
        return [f for f in self._files if fnmatch.fnmatchcase(f, pattern)]

    def exists(self, rel: str) -> bool:
        return rel in set(self._files)

    def read(self, rel: str) -> bytes:
        """The bytes of one file."""
        if not self.bare:
            try:
                return (self.path / rel).read_bytes()
            except OSError as err:
                raise ConvertError(f"{self.path / rel}: cannot be read ({err})") from None
        if self._batch is None:
            self._batch = subprocess.Popen(
                ["git", f"--git-dir={self.path}", "cat-file", "--batch"],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
            )
        assert self._batch.stdin is not None and self._batch.stdout is not None
        self._batch.stdin.write(f"HEAD:{rel}\n".encode())
        self._batch.stdin.flush()
        header = self._batch.stdout.readline().decode().split()
        if len(header) != 3 or header[1] != "blob":
            raise ConvertError(
                f"{self.path}: {rel} is missing from the fetched repository "
                f"({' '.join(header)}); fetch it again, or extract the repository to a folder"
            )
        data = self._batch.stdout.read(int(header[2]))
        self._batch.stdout.read(1)  # the newline after the contents
        return data

    def check_commit(self, expected: str) -> None:
        """Warn when the repository is not at the commit the converter was written against."""
        if self.commit is None:
            print(f"note: {self.path} is not a git repository; written against commit {expected}")
        elif self.commit != expected:
            print(
                f"warning: {self.path} is at commit {self.commit}, the converter was written "
                f"against {expected}; check the summary below against benchmarks/datasets/"
                "README.md",
                file=sys.stderr,
            )


def decode_image(data: bytes, where: str, mode: str | None = None) -> np.ndarray:
    """Decode image bytes (optionally converted to a PIL mode such as ``L`` or ``RGB``)."""
    try:
        with Image.open(io.BytesIO(data)) as img:
            img.load()
            return np.asarray(img.convert(mode) if mode else img)
    except (OSError, ValueError, Image.DecompressionBombError) as err:
        raise ConvertError(
            f"{where}: not a readable image ({err}); fetch the repository again"
        ) from None


class Writer:
    """Collects images and labels in a temporary folder; :meth:`commit` moves it to ``out``.

    Use as a context manager: on an error the temporary folder is removed.
    """

    def __init__(self, out: Path, overwrite: bool) -> None:
        if out.exists() and not out.is_dir():
            raise ConvertError(f"{out}: exists and is not a folder; choose another output folder")
        if out.is_dir() and any(out.iterdir()) and not overwrite:
            raise ConvertError(
                f"{out}: exists and is not empty; pass --overwrite to replace it, "
                "or choose another output folder"
            )
        self.out = out
        self.overwrite = overwrite
        out.parent.mkdir(parents=True, exist_ok=True)
        self.tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent))
        (self.tmp / "images").mkdir()
        (self.tmp / "labels").mkdir()
        self.pixels: dict[int, int] = {}
        self.images_with: dict[int, int] = {}
        self.sizes: set[tuple[int, int]] = set()
        self.count = 0

    def __enter__(self) -> Writer:
        return self

    def __exit__(self, exc_type: object, *_: object) -> None:
        if self.tmp.exists():
            shutil.rmtree(self.tmp, ignore_errors=True)

    def add(self, image_id: str, image: np.ndarray, label: np.ndarray, where: str) -> None:
        """One image (grey or RGB, uint8) and its label image of class ids."""
        if image.shape[:2] != label.shape:
            raise ConvertError(
                f"{where}: image is {image.shape[1]}x{image.shape[0]} but its label is "
                f"{label.shape[1]}x{label.shape[0]}; the pair does not belong together"
            )
        if (self.tmp / "images" / f"{image_id}.png").exists():
            raise ConvertError(f"{where}: id {image_id!r} occurs twice; the converter needs a fix")
        Image.fromarray(image).save(self.tmp / "images" / f"{image_id}.png")
        Image.fromarray(label.astype(np.uint8)).save(self.tmp / "labels" / f"{image_id}.png")
        values, counts = np.unique(label, return_counts=True)
        for v, n in zip(values.tolist(), counts.tolist(), strict=True):
            self.pixels[v] = self.pixels.get(v, 0) + n
            self.images_with[v] = self.images_with.get(v, 0) + 1
        self.sizes.add(label.shape)
        self.count += 1

    def commit(
        self, class_names: list[str], class_ids: list[int], ignore_class_ids: list[int] = ()
    ) -> None:
        """Write classes.json, check the label values, move the folder into place, summarise."""
        if self.count == 0:
            raise ConvertError(f"{self.out}: no image pairs found; check the source folder")
        unknown = sorted(set(self.pixels) - set(class_ids))
        if unknown:
            raise ConvertError(
                f"label values {unknown} are not class ids; the converter needs a fix"
            )
        classes = {"class_names": class_names, "class_ids": class_ids}
        if ignore_class_ids:
            classes["ignore_class_ids"] = list(ignore_class_ids)
        (self.tmp / "classes.json").write_text(json.dumps(classes, indent=2) + "\n")
        old = None
        if self.out.exists():
            old = self.out.with_name(f".{self.out.name}.old-{self.tmp.name}")
            self.out.rename(old)
        self.tmp.rename(self.out)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
        self._summary(class_names, class_ids)

    def _summary(self, class_names: list[str], class_ids: list[int]) -> None:
        total = sum(self.pixels.values())
        heights = sorted(h for h, _ in self.sizes)
        widths = sorted(w for _, w in self.sizes)
        print(
            f"wrote {self.out}: {self.count} images, {len(class_ids)} classes, "
            f"sizes {widths[0]}-{widths[-1]} x {heights[0]}-{heights[-1]} px (w x h)"
        )
        print(f"  {'id':>3}  {'class':<14}{'pixel share':>12}{'images':>8}")
        for name, cid in zip(class_names, class_ids, strict=True):
            share = 100.0 * self.pixels.get(cid, 0) / total
            print(f"  {cid:>3}  {name:<14}{share:>11.3f}%{self.images_with.get(cid, 0):>8}")
