"""Atomic, durable writes shared by every stage: a file or folder is either the old one or
the new one, never half-written (temporary file beside it, fsync, then a rename).

Folders (model bundles) are replaced with Linux ``renameat2(RENAME_EXCHANGE)``, which swaps
the new folder with the old one in one step, so a reader or a kill at any instant finds one
of the two whole. Where ``renameat2`` is missing (not Linux, old glibc, a file system that
refuses the flag) the old folder is renamed away and the new one into its place: a kill
between those two renames leaves the old one under a ``.<name>.old-*`` name, which the next
write of that folder removes (as it removes ``.<name>.tmp-*`` leftovers).
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import errno
import json
import os
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

_AT_FDCWD = -100
_RENAME_EXCHANGE = 2


def fsync_path(path: str | os.PathLike[str]) -> None:
    """Flush a file or a folder (its entries) to disk."""
    fd = os.open(path, os.O_RDONLY | (os.O_DIRECTORY if Path(path).is_dir() else 0))
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_tree(folder: str | os.PathLike[str]) -> None:
    """Flush every file under ``folder``, then the folders themselves (deepest first)."""
    dirs = []
    for root, _, files in os.walk(folder):
        dirs.append(root)
        for name in files:
            fsync_path(os.path.join(root, name))
    for d in reversed(dirs):
        fsync_path(d)


def current_umask() -> int:
    """The process's umask (read from /proc where it can be, without changing it)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)  # elsewhere: read by setting it, then put it back
    os.umask(mask)
    return mask


def umask_mode(base: int = 0o666) -> int:
    """The mode a plain ``open`` (``base`` 0o666) or ``mkdir`` (0o777) would give."""
    return base & ~current_umask()


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success it is flushed to disk and renamed
    onto ``path`` (and the folder's entry flushed too).

    The temporary name keeps the suffix, so libraries that choose a format by extension
    work. The file gets the permissions a plain ``open`` would give (the umask), not
    mkstemp's 0600. On error the temporary file is removed and ``path`` is left untouched.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(
        dir=path.parent, prefix=f".{path.stem}.", suffix=f".tmp{path.suffix}"
    )
    try:
        os.fchmod(fd, umask_mode())  # mkstemp makes 0600: readers need what open() gives
    finally:
        os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        fsync_path(tmp_path)
        os.replace(tmp_path, path)
        fsync_path(path.parent)
    finally:
        tmp_path.unlink(missing_ok=True)


def _renameat2() -> Any:
    """glibc's ``renameat2`` (2.28+), or ``None``."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        func = libc.renameat2
    except (OSError, AttributeError):
        return None
    func.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    func.restype = ctypes.c_int
    return func


_RENAMEAT2 = _renameat2()


def exchange_paths(a: str | os.PathLike[str], b: str | os.PathLike[str]) -> bool:
    """Swap two existing paths atomically (``renameat2(RENAME_EXCHANGE)``); ``False`` where
    the system cannot (then nothing was changed)."""
    if _RENAMEAT2 is None:
        return False
    rc = _RENAMEAT2(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE)
    if rc == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.ENOSYS, errno.EINVAL, errno.ENOTSUP, errno.EOPNOTSUPP):
        return False
    raise OSError(err, os.strerror(err), str(a), None, str(b))


def remove_leftovers(dst: str | os.PathLike[str]) -> None:
    """Remove ``.<name>.tmp-*`` and ``.<name>.old-*`` beside ``dst``: interrupted writes."""
    dst = Path(dst)
    if not dst.parent.is_dir():
        return
    for kind in ("tmp", "old"):
        for left in dst.parent.glob(f".{dst.name}.{kind}-*"):
            shutil.rmtree(left, ignore_errors=True)


def replace_dir(src: str | os.PathLike[str], dst: str | os.PathLike[str]) -> None:
    """Move the folder ``src`` onto ``dst`` so that ``dst`` is always the old or the new
    folder whole (see the module docstring); ``src`` is flushed to disk first."""
    src, dst = Path(src), Path(dst)
    fsync_tree(src)
    if dst.exists() and exchange_paths(src, dst):
        fsync_path(dst.parent)
        shutil.rmtree(src, ignore_errors=True)  # now the old folder
        return
    old = dst.parent / f".{dst.name}.old-{uuid.uuid4().hex}"
    if dst.exists():
        os.replace(dst, old)
    os.replace(src, dst)
    fsync_path(dst.parent)
    shutil.rmtree(old, ignore_errors=True)


def make_temp_dir(dst: str | os.PathLike[str]) -> Path:
    """A new empty folder beside ``dst`` named ``.<name>.tmp-<random>``, with the usual
    (umask) permissions; leftovers of earlier interrupted writes of ``dst`` are removed."""
    dst = Path(dst)
    dst.parent.mkdir(parents=True, exist_ok=True)
    remove_leftovers(dst)
    tmp = dst.parent / f".{dst.name}.tmp-{uuid.uuid4().hex}"
    tmp.mkdir()  # not mkdtemp: umask permissions
    return tmp


def write_bytes_atomic(path: str | os.PathLike[str], data: bytes) -> None:
    """Write ``data`` to ``path`` atomically (temporary file + rename)."""
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def write_text_atomic(path: str | os.PathLike[str], text: str) -> None:
    """Write ``text`` (UTF-8) to ``path`` atomically."""
    write_bytes_atomic(path, text.encode("utf-8"))


def write_json_atomic(path: str | os.PathLike[str], obj: Any) -> None:
    """Write ``obj`` as indented JSON to ``path`` atomically."""
    write_text_atomic(path, json.dumps(obj, indent=2, sort_keys=False) + "\n")
