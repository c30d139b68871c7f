"""Per-stage fingerprints of the installed segcore code, for projects that ``segcore init``
wrote: DVC sees a segcore upgrade that changes what a stage computes, and only then.

A project's ``dvc.yaml`` cannot list segcore's source files as deps (they live in
site-packages, wherever the environment is). Instead each stage reads one key of
:data:`CODE_FILE` as a DVC param: the fingerprint of the code that decides that stage's
outputs. The code of a stage is its glue module ``segcore.pipeline.stage_<name>`` and every
segcore module it imports at module level, transitively (what a fresh ``segcore <name>``
loads, the same set this repository's ``dvc.yaml`` lists as deps; a test checks the two
agree), less :data:`NOT_OUTPUT_CODE`. A module counts by its syntax tree without docstrings,
so comments, formatting and documentation change no fingerprint, and a new version number
alone (``segcore/__init__.py``) changes none either.

The flow (``make run``, the schedule) and ``segcore refresh`` rewrite the file before DVC
looks; a ``segcore <stage>`` command refuses to run on a fingerprint that is not the
installed code's, so a plain ``dvc repro`` after an upgrade cannot record stale ones.
"""

from __future__ import annotations

import ast
import fnmatch
import functools
import hashlib
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import yaml

from segcore.common.errors import SegcoreError
from segcore.common.io import write_text_atomic

CODE_FILE = "segcore-code.yaml"
"""The fingerprint file in a project's root; a DVC params file (``stages.<name>``)."""

STAGE_MODULE = "segcore.pipeline.stage_{}"
"""The glue module of each stage (see :mod:`segcore.pipeline.stages`)."""

NOT_OUTPUT_CODE = (
    "common/errors.py",  # messages
    "common/progress.py",  # progress bars
    "common/parallel.py",  # where jobs run: the files are the same (tests/data/test_preprocess.py)
    "common/lifeline.py",  # workers dying with their parent
    "params/*.py",  # parsing; the values are DVC params (params.yaml has every key)
    "tracking/run.py",  # MLflow bookkeeping
    "tracking/store.py",
    "tracking/run_file.py",
    "tracking/names.py",
    "tracking/where.py",
    "tracking/catch_up.py",
    "tracking/lineage.py",
    "tracking/mlflow_model.py",
)
"""Modules (relative to the package, glob patterns) that stages load but that never decide
the content of a stage's outputs."""

_HEADER = (
    "# Written by segcore (segcore refresh; make run does it): per pipeline stage, a fingerprint\n"
    "# of the installed segcore code that decides the stage's outputs. dvc.yaml reads these as\n"
    "# params, so an upgrade that changes a stage's code makes exactly that stage stale.\n"
    "# Do not edit; commit it with dvc.lock.\n"
)


class StaleCodeError(SegcoreError):
    """The project's fingerprint file does not match the installed segcore."""


def package_dir() -> Path:
    """The folder of the segcore package that is running (site-packages or a checkout)."""
    import segcore

    return Path(segcore.__file__).resolve().parent


def stage_code_files(stage: str, root: Path | None = None) -> list[str]:
    """The modules whose code decides stage ``stage``'s outputs, relative to the package
    (``data/split.py``), sorted.

    Args:
        stage: a stage name (``dataset``, ``split``, ...).
        root: the segcore package folder (default: the running one).
    """
    root = root or package_dir()
    start = STAGE_MODULE.format(stage)
    seen: set[str] = set()
    todo = [start]
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        path = _module_file(root, name)
        if path is not None:
            todo.extend(_top_level_imports(path, root))
    if _module_file(root, start) is None:
        raise SegcoreError(f"{start}: no such module; the stages are {_stage_names(root)}")
    files = set()
    for name in seen - {"segcore"}:  # segcore/__init__.py: the version and lazy names
        path = _module_file(root, name)
        if path is None or _read(path).only_docstring:  # a package's docstring decides nothing
            continue
        rel = path.relative_to(root).as_posix()
        if not any(fnmatch.fnmatch(rel, pattern) for pattern in NOT_OUTPUT_CODE):
            files.add(rel)
    return sorted(files)


def _stage_names(root: Path) -> list[str]:
    return sorted(p.stem.removeprefix("stage_") for p in (root / "pipeline").glob("stage_*.py"))


def _module_file(root: Path, name: str) -> Path | None:
    """The file of segcore module ``name`` under ``root``, or ``None`` (not a module)."""
    parts = name.split(".")
    if parts[0] != "segcore":
        return None
    base = root.joinpath(*parts[1:])
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def _top_level_imports(path: Path, root: Path) -> list[str]:
    """The segcore modules ``path`` imports when it is loaded, with the packages above each
    (Python loads those too)."""
    found = []
    for name in _read(path).imports:
        parts = name.split(".")
        found.extend(".".join(parts[:i]) for i in range(1, len(parts) + 1))
    return [n for n in found if _module_file(root, n) is not None]


@dataclass(frozen=True)
class _Module:
    imports: tuple[str, ...]
    """Modules imported at module level (also inside ``if``/``try``/``with``, not under
    ``if TYPE_CHECKING``); imports inside functions run later, if at all."""
    only_docstring: bool
    digest: str


def _read(path: Path) -> _Module:
    stat = path.stat()
    return _parse(path, stat.st_mtime_ns, stat.st_size)


@functools.lru_cache(maxsize=1024)
def _parse(path: Path, mtime_ns: int, size: int) -> _Module:
    """One parse per file version (a served flow sees an upgrade: the key has the time)."""
    tree = ast.parse(path.read_bytes())
    names: list[str] = []
    for node in _module_level(tree.body):
        if isinstance(node, ast.Import):
            names.extend(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.append(node.module)
            names.extend(f"{node.module}.{alias.name}" for alias in node.names)
    only_docstring = len(tree.body) <= 1 and all(_is_docstring(n) for n in tree.body)
    for node in ast.walk(tree):
        body = getattr(node, "body", None)
        if isinstance(body, list) and body and _is_docstring(body[0]):
            node.body = body[1:] or [ast.Pass()]  # type: ignore[attr-defined]
    digest = hashlib.sha256(ast.dump(tree).encode()).hexdigest()
    return _Module(tuple(names), only_docstring, digest)


def _module_level(body: Iterable[ast.stmt]) -> Iterable[ast.stmt]:
    for node in body:
        if isinstance(node, ast.If):
            if not _is_type_checking(node.test):
                yield from _module_level(node.body)
            yield from _module_level(node.orelse)
        elif isinstance(node, ast.Try):
            for block in (node.body, *(h.body for h in node.handlers), node.orelse, node.finalbody):
                yield from _module_level(block)
        elif isinstance(node, ast.With):
            yield from _module_level(node.body)
        else:
            yield node


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _is_docstring(node: ast.stmt) -> bool:
    return (
        isinstance(node, ast.Expr)
        and isinstance(node.value, ast.Constant)
        and isinstance(node.value.value, str)
    )


def code_digest(path: Path) -> str:
    """SHA-256 of a module's syntax tree without docstrings: what the code does, not how it
    is written or documented."""
    return _read(path).digest


def code_fingerprints(stages: Iterable[str], root: Path | None = None) -> dict[str, str]:
    """``{stage: fingerprint}``: a SHA-256 over each of the stage's code files (name and
    :func:`code_digest`), shortened to 16 hex digits."""
    root = root or package_dir()
    out = {}
    for stage in stages:
        h = hashlib.sha256()
        for rel in stage_code_files(stage, root):
            h.update(f"{rel}\0{code_digest(root / rel)}\n".encode())
        out[stage] = h.hexdigest()[:16]
    return out


def read_code_file(project: Path) -> dict[str, str]:
    """The fingerprints recorded in ``project``'s :data:`CODE_FILE` (empty when absent)."""
    path = Path(project) / CODE_FILE
    if not path.is_file():
        return {}
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        return {str(k): str(v) for k, v in dict(data.get("stages") or {}).items()}
    except (yaml.YAMLError, AttributeError, TypeError, ValueError):
        raise SegcoreError(
            f"{path}: not a segcore code fingerprint file; delete it and run `segcore refresh`"
        ) from None


def write_code_file(project: Path, stages: Iterable[str]) -> dict[str, str]:
    """Write the installed code's fingerprints of ``stages`` into ``project``'s
    :data:`CODE_FILE` (only when they changed, so its time stamp says when segcore did);
    returns them."""
    from segcore import __version__

    prints = code_fingerprints(stages)
    path = Path(project) / CODE_FILE
    body = yaml.safe_dump({"segcore_version": __version__, "stages": prints}, sort_keys=False)
    text = _HEADER + body
    if not path.is_file() or path.read_text(encoding="utf-8") != text:
        write_text_atomic(path, text)
    return prints


def refresh_code_file(project: Path) -> dict[str, str] | None:
    """Bring ``project``'s :data:`CODE_FILE` up to date for the stages it lists; ``None``
    when the project has none (this repository's demo lists source files as deps)."""
    recorded = read_code_file(project)
    if not recorded:
        return None
    return write_code_file(project, recorded)


def check_code_file(project: Path, stage: str) -> None:
    """Refuse to run ``stage`` in a project whose recorded fingerprint of it is not the
    installed code's: DVC would record the old one for outputs of the new code.

    Raises:
        StaleCodeError: naming the file and the fix.
    """
    recorded = read_code_file(project)
    if stage not in recorded:
        return
    current = code_fingerprints([stage])[stage]
    if recorded[stage] != current:
        raise StaleCodeError(
            f"{Path(project) / CODE_FILE}: stage {stage!r} was fingerprinted with other segcore "
            f"code than the installed one ({recorded[stage]} vs {current}: segcore was upgraded "
            "or changed); run `segcore refresh` and then `dvc repro` (or `make run`, which "
            "refreshes), so DVC re-runs exactly the stages whose code changed"
        )
