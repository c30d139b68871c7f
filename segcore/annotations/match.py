"""Finding an export's images in the image folder, by the names the tools give them.

Tools name images differently: COCO and CVAT by a file name or a path from the tool's
own storage, LabelMe by a path relative to the JSON file, Label Studio by a URL
(``/data/upload/3/1a2b3c4d-name.jpg``: the upload prefix is dropped,
``/data/local-files/?d=dir/name.jpg``: the ``d`` path is used). A reference matches the
image whose path relative to the image folder equals the reference's longest trailing part
that names any image; when that part names several images (``a/x.png``, ``b/x.png``) the
match is ambiguous and reported.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlsplit

from segcore.annotations.model import ImageEntry
from segcore.common.images import list_images

_UPLOAD_PREFIX = re.compile(r"^[0-9a-f]{8}-(.+)$")
"""Label Studio prefixes uploaded files with 8 hex digits and a dash."""
_WINDOWS_DRIVE = re.compile(r"^[A-Za-z]:/")


class ImageIndex:
    """The images below ``image_dir`` (minus ``exclude`` folders), by relative path.

    Attributes:
        root: the image folder.
        files: relative POSIX path -> file, sorted by path.
    """

    def __init__(self, image_dir: Path, exclude: Sequence[Path] = ()) -> None:
        self.root = image_dir
        skip = [e.resolve() for e in exclude]
        files = [
            p
            for p in list_images(image_dir)
            if not any(p.resolve().is_relative_to(e) for e in skip)
        ]
        self.files: dict[str, Path] = {p.relative_to(image_dir).as_posix(): p for p in files}
        self._tails: dict[str, list[str]] = {}
        for rel in self.files:
            parts = rel.split("/")
            for k in range(len(parts)):
                self._tails.setdefault("/".join(parts[k:]), []).append(rel)

    def find(self, entry: ImageEntry) -> tuple[str | None, str]:
        """``(relative path, "")`` of the image ``entry`` names, or ``(None, why not)``."""
        if entry.base_dir is not None and "://" not in entry.name:
            try:
                path = (entry.base_dir / entry.name.replace("\\", "/")).resolve()
                rel = path.relative_to(self.root.resolve()).as_posix()
            except ValueError:
                rel = None
            if rel in self.files:
                return rel, ""
        for candidate in reference_paths(entry.name):
            parts = [p for p in candidate.split("/") if p not in ("", ".")]
            for k in range(len(parts)):
                hits = self._tails.get("/".join(parts[k:]))
                if hits and len(hits) == 1:
                    return hits[0], ""
                if hits:
                    listed = ", ".join(hits[:4]) + (", ..." if len(hits) > 4 else "")
                    return None, (
                        f"matches several images ({listed}); name it by its path below "
                        f"{self.root} in the export"
                    )
        return None, f"is not in {self.root}"


def reference_paths(name: str) -> list[str]:
    """The paths an image reference may stand for, most literal first."""
    name = name.replace("\\", "/")
    if _WINDOWS_DRIVE.match(name):
        return [name]
    split = urlsplit(name)
    out = list(parse_qs(split.query).get("d", []))  # parse_qs unquotes
    path = unquote(split.path) if split.scheme or split.query or name.startswith("/data/") else name
    out.append(path)
    upload = _UPLOAD_PREFIX.match(path.rsplit("/", 1)[-1])
    if upload:
        out.append(upload.group(1))
    return out
