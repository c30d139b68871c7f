"""``segcore init``: write a new pipeline project from a folder of images and their labels
(or a labelling tool's export).

The project is built in a temporary folder beside ``DIR`` and moved into place only when it
is complete: the data checked (every image paired, every label value a named class or an
ignore id), copied under ``data/raw/`` and versioned by DVC, ``params.yaml``, ``dvc.yaml``,
``segcore-code.yaml``, the Makefile, README, ``.gitignore`` and ``.dvcignore`` written, git
and DVC initialised and everything committed. On any error nothing is left behind.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

from segcore.common.errors import DatasetError, ParamsError, SegcoreError
from segcore.common.io import make_temp_dir, write_text_atomic
from segcore.data.dldataset import DLDataset
from segcore.data.read import read_dataset
from segcore.params import Params
from segcore.pipeline.code import write_code_file
from segcore.project.classes import AskNames, resolve_classes, scan_label_ids
from segcore.project.render import render_params

IMAGES = "data/raw/images"
LABELS = "data/raw/labels"
ANNOTATIONS = "data/annotations"
PROJECT_STAGES = (
    "dataset",
    "split",
    "preprocess",
    "train",
    "calibrate",
    "evaluate",
    "register",
)
"""The stages of a project's ``dvc.yaml`` (the pill demo's ``synth`` aside)."""

_TEMPLATES = {  # template -> file in the project
    "dvc.yaml.tmpl": "dvc.yaml",
    "Makefile.tmpl": "Makefile",
    "README.md.tmpl": "README.md",
    "gitignore.tmpl": ".gitignore",
    "dvcignore.tmpl": ".dvcignore",
}
"""Not named as the files they become: DVC reads every ``dvc.yaml`` below a repository."""


@dataclass(frozen=True)
class DataSource:
    """Where a new project's data comes from.

    Attributes:
        images: the folder of images (sub-folders are searched).
        labels: the folder of label images, or ``None`` with ``export``.
        export: a labelling tool's export (COCO / Label Studio JSON, CVAT XML, LabelMe
            folder) to turn into label images, or ``None``.
        export_format: its format (``None``: recognised from the file).
        classes: ``{id: name}`` given by the user (with an export: tool label -> id, as
            ``import_labels.class_names``); empty: asked for, or taken from the export.
        ignore_class_ids: label values left out of training and measures.
        label_prefix, label_suffix, ignore_unmatched: as in the ``dataset`` section.
    """

    images: Path
    labels: Path | None = None
    export: Path | None = None
    export_format: str | None = None
    classes: Mapping[int, str] = field(default_factory=dict)
    ignore_class_ids: Sequence[int] = ()
    label_prefix: str = ""
    label_suffix: str = ""
    ignore_unmatched: bool = False

    @property
    def one_folder(self) -> bool:
        """Images and labels share a folder (labels told apart by prefix or suffix)."""
        return self.labels is not None and self.labels.resolve() == self.images.resolve()


@dataclass(frozen=True)
class InitResult:
    """What :func:`init_project` wrote.

    Attributes:
        project: the project folder.
        classes: ``{id: name}`` of the project.
        dataset: the data as ``segcore dataset`` reads it (pixel counts per class).
        committed: whether git made the first commit (else the files are staged).
    """

    project: Path
    classes: dict[int, str]
    dataset: DLDataset
    committed: bool


def init_project(
    project: str | os.PathLike[str],
    source: DataSource,
    *,
    name: str | None = None,
    ask: AskNames | None = None,
    python: str | None = None,
    say: Callable[[str], None] = lambda message: None,
) -> InitResult:
    """Write a new pipeline project at ``project`` (missing or an empty folder).

    Args:
        project: the folder to create.
        source: the data.
        name: the project's name (registered model, MLflow experiment); default: the
            folder's name.
        ask: asks for class names when ``source.classes`` is empty (a terminal).
        python: the Python whose segcore the Makefile runs (default: this one).
        say: receives one line per step.

    Raises:
        ParamsError: ``project`` exists and is not empty, or bad options.
        DatasetError: every problem of the data (unpaired files, unreadable files,
            label values outside the classes), at once.
    """
    target = Path(project).absolute()
    check_target(target)
    name = name or project_name(target.name)
    tmp = make_temp_dir(target)
    try:
        classes, dataset = _write_data(tmp, source, ask, say)
        params = project_params(name, source, classes, dataset)
        _write_files(tmp, name, params, python or sys.executable, classes)
        say("git and DVC: initialising, versioning the data")
        committed = _init_repositories(tmp)
        check_target(target)  # nobody wrote there meanwhile
        os.replace(tmp, target)  # onto a missing or empty folder: all or nothing
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return InitResult(target, classes, dataset, committed)


def check_target(target: Path) -> None:
    """Refuse a project folder that exists and is not an empty folder."""
    if target.is_symlink() or (target.exists() and not target.is_dir()):
        raise ParamsError(f"{target}: exists and is not a folder; choose a new project folder")
    if target.is_dir() and any(target.iterdir()):
        raise ParamsError(
            f"{target}: exists and is not empty; segcore init writes a new project only into "
            "a missing or empty folder (choose another, or empty this one)"
        )


def project_name(folder: str) -> str:
    """A name for MLflow's experiment and registered model from the folder's name."""
    cleaned = re.sub(r"[^A-Za-z0-9_.-]+", "-", folder).strip("-.")
    return cleaned or "segcore-project"


def _write_data(
    tmp: Path, source: DataSource, ask: AskNames | None, say: Callable[[str], None]
) -> tuple[dict[int, str], DLDataset]:
    """Check the data and copy it under ``tmp/data/raw``; the classes and the dataset."""
    if not source.images.is_dir():
        raise DatasetError(f"{source.images}: image folder not found; check --images")
    if (source.labels is None) == (source.export is None):
        raise ParamsError("give the labels as a folder (--labels) or as an export (--export)")
    if source.export is not None:
        say(f"labels: importing {source.export}")
        _copy_images(source.images, None, tmp / IMAGES)
        classes = _import_export(tmp, source)
        label_src, image_src = tmp / LABELS, tmp / IMAGES
    else:
        assert source.labels is not None
        say(f"labels: scanning {source.labels} for class ids")
        found = scan_label_ids(source.labels, source.label_prefix, source.label_suffix)
        ignore = list(source.ignore_class_ids)
        classes = resolve_classes(found, source.classes, ignore, source.labels, ask)
        label_src, image_src = source.labels, source.images
    say("data: checking every image and label (segcore dataset)")
    dataset = read_dataset(
        image_src,
        label_src,
        list(classes.values()),
        list(classes),
        label_prefix=source.label_prefix,
        label_suffix=source.label_suffix,
        ignore_unmatched=source.ignore_unmatched,
        ignore_class_ids=source.ignore_class_ids,
    )
    if source.export is None:
        assert source.labels is not None
        say(f"data: copying into {IMAGES} and {LABELS}")
        _copy_images(source.images, source.labels, tmp / IMAGES)
        if not source.one_folder:
            shutil.copytree(source.labels, tmp / LABELS, symlinks=False)
    return classes, dataset


def _copy_images(images: Path, labels: Path | None, dst: Path) -> None:
    """Copy the image folder, without the label folder when it lies inside it."""
    inside = (
        labels.resolve() if labels is not None and labels.resolve() != images.resolve() else None
    )

    def skip(folder: str, names: list[str]) -> list[str]:
        return [n for n in names if inside is not None and (Path(folder) / n).resolve() == inside]

    shutil.copytree(images, dst, ignore=skip, symlinks=False)


def _import_export(tmp: Path, source: DataSource) -> dict[int, str]:
    """Turn the export into ``tmp/data/raw/labels`` (kept under ``data/annotations``)."""
    from segcore.annotations import import_labels

    assert source.export is not None
    kept = tmp / ANNOTATIONS / source.export.name
    kept.parent.mkdir(parents=True)
    if source.export.is_dir():
        shutil.copytree(source.export, kept)
    else:
        shutil.copy2(source.export, kept)
    class_map = {n: i for i, n in source.classes.items()} if source.classes else None
    result = import_labels(
        kept, tmp / IMAGES, tmp / LABELS, format=source.export_format, class_map=class_map
    )
    return dict(zip(result.class_ids, result.class_names, strict=True))


def project_params(
    name: str, source: DataSource, classes: Mapping[int, str], dataset: DLDataset
) -> Params:
    """The project's parameters: the defaults, with the data's section filled in."""
    p = Params()
    channels = set(dataset.samples["image_num_channels"].tolist())
    param = p.preprocess.param.model_copy(
        update={
            "ignore_class_ids": [int(i) for i in source.ignore_class_ids],
            "image_num_channels": 1 if channels == {1} else 3,
        }
    )
    labels_from_export = source.export is not None and source.classes
    updates = {
        "dataset": p.dataset.model_copy(
            update={
                "image_dir": IMAGES,
                "segmentation_dir": IMAGES if source.one_folder else LABELS,
                "class_names": list(classes.values()),
                "class_ids": list(classes),
                "label_prefix": source.label_prefix,
                "label_suffix": source.label_suffix,
                "ignore_unmatched": source.ignore_unmatched,
            }
        ),
        "import_labels": p.import_labels.model_copy(
            update={
                "export": f"{ANNOTATIONS}/{source.export.name}" if source.export else "",
                "image_dir": IMAGES,
                "out_dir": LABELS,
                "class_names": list(source.classes.values()) if labels_from_export else [],
                "class_ids": list(source.classes) if labels_from_export else [],
            }
        ),
        "preprocess": p.preprocess.model_copy(update={"param": param}),
        "registry": p.registry.model_copy(update={"model_name": name}),
        "tracking": p.tracking.model_copy(update={"experiment_name": name}),
    }
    # Validate the whole file as a user's edit would be.
    return Params.model_validate(p.model_copy(update=updates).model_dump(by_alias=True))


def _write_files(
    root: Path, name: str, params: Params, python: str, classes: Mapping[int, str]
) -> None:
    from segcore import __version__

    notes = {
        "synth": "Not a stage of this project (the synthetic pill data of segcore's demo).",
        "import_labels": "segcore import-labels; not a stage of the pipeline.",
    }
    write_text_atomic(root / "params.yaml", render_params(params, notes))
    values = {
        "@@NAME@@": name,
        "@@PYTHON@@": python,
        "@@VERSION@@": __version__,
        "@@CLASSES@@": ", ".join(f"{cid} `{n}`" for cid, n in classes.items()),
    }
    templates = resources.files("segcore.project") / "templates"
    for template, dest in _TEMPLATES.items():
        text = (templates / template).read_text(encoding="utf-8")
        for key, value in values.items():
            text = text.replace(key, value)
        write_text_atomic(root / dest, text)
    write_code_file(root, PROJECT_STAGES)


def _init_repositories(root: Path) -> bool:
    """git and DVC in ``root``, the raw data added to DVC, everything staged; the first
    commit when git knows who commits. Returns whether it committed."""
    from dvc.repo import Repo

    _git(root, "init", "-q")
    # DVC resolves paths against the working folder; its hints name commands init runs.
    with contextlib.chdir(root), _quiet_dvc():
        repo = Repo.init(str(root))
        try:
            with repo.config.edit() as conf:
                conf["core"]["autostage"] = True
                conf["core"]["analytics"] = False
            repo.add([IMAGES] + ([LABELS] if (root / LABELS).is_dir() else []))
        finally:
            repo.close()
    _git(root, "add", "-A")
    try:
        _git(root, "commit", "-qm", "New segcore project (segcore init)")
    except SegcoreError:
        return False
    return True


@contextlib.contextmanager
def _quiet_dvc() -> Iterator[None]:
    """DVC's hints (``git add ...``, ``dvc config core.autostage true``) name steps that init
    itself takes; its warnings still show."""
    logger = logging.getLogger("dvc")
    level = logger.level
    logger.setLevel(logging.WARNING)
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            yield
    finally:
        logger.setLevel(level)


def _git(root: Path, *args: str) -> None:
    try:
        proc = subprocess.run(["git", *args], cwd=root, capture_output=True, text=True)
    except FileNotFoundError:
        raise SegcoreError("git is not installed; install it (DVC needs it too)") from None
    if proc.returncode != 0:
        raise SegcoreError(f"git {args[0]} in {root} failed: {proc.stderr.strip()}")
