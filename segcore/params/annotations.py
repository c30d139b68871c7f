"""The ``import_labels:`` section of ``params.yaml``: importing a labelling tool's export."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal, Self

from pydantic import Field, model_validator

from segcore.params.base import ClassId, Section


class ImportLabelsParams(Section):
    """Turning an annotation export (COCO, CVAT, LabelMe, Label Studio) into label images."""

    format: Literal["auto", "coco", "cvat", "labelme", "labelstudio"] = "auto"
    """Export format; ``auto`` recognises it from the file (or the LabelMe folder)."""
    export: str = "data/annotations/export.json"
    """The export: a COCO or Label Studio JSON file, a CVAT for images 1.1 XML file, or a
    folder of LabelMe JSON files."""
    image_dir: str = "data/raw/images"
    """Folder of the labelled images (sub-folders are searched); one label per image."""
    out_dir: str = "data/raw/labels"
    """Label folder to create (``a.png`` for ``a.jpg``); it must be missing or empty unless
    ``overwrite`` is set. Point ``dataset.segmentation_dir`` at it."""
    class_names: list[str] = Field(default_factory=list)
    """Label names as the tool writes them, in the order of ``class_ids``; several names may
    share an id. Empty: built from the export (``background`` = ``background_id``, then
    the other names sorted, numbered from 0) and reported, to copy into ``dataset:``."""
    class_ids: list[ClassId] = Field(default_factory=list)
    """Class id of each name in ``class_names`` (0..65535)."""
    background_id: ClassId = 0
    """Class id of the background: unlabelled pixels (unless ignored) and images without
    shapes. Must be one of ``class_ids`` when they are given."""
    unlabelled: Literal["background", "ignore"] = "background"
    """Pixels no shape covers: ``background`` (the tool's users outlined every defect) or
    ``ignore`` (only what is outlined is known; the rest takes ``ignore_id``)."""
    ignore_id: ClassId = 255
    """Label value of unlabelled pixels under ``unlabelled: ignore``; list it in
    ``preprocess.ignore_class_ids``. Must differ from every class id."""
    empty_images: Literal["keep", "skip"] = "keep"
    """Images without shapes: ``keep`` writes all-background labels (defect-free samples),
    ``skip`` writes none for them."""
    line_width: int = Field(3, ge=1)
    """Width in pixels of polylines and lines (thin scratches)."""
    overwrite: bool = False
    """Replace a non-empty ``out_dir`` (the old folder stays whole until the new one is in
    place)."""

    @model_validator(mode="after")
    def _check_classes(self) -> Self:
        problems = []
        if len(self.class_names) != len(self.class_ids):
            problems.append(
                f"class_names has {len(self.class_names)} entries but class_ids has "
                f"{len(self.class_ids)}; give one id per name (or leave both empty)"
            )
        dup = sorted({n for n in self.class_names if self.class_names.count(n) > 1})
        if dup:
            problems.append(f"class_names has duplicates {dup}; list each name once")
        if self.class_ids and self.background_id not in self.class_ids:
            problems.append(
                f"background_id {self.background_id} is not one of class_ids; add the "
                "background class or change background_id"
            )
        if self.unlabelled == "ignore" and self.ignore_id in {*self.class_ids, self.background_id}:
            problems.append(
                f"ignore_id {self.ignore_id} is also a class id; choose an unused value"
            )
        if problems:
            raise ValueError("; ".join(problems))
        return self

    @property
    def class_map(self) -> dict[str, int] | None:
        """Label name -> class id, or ``None`` to build it from the export."""
        return dict(zip(self.class_names, self.class_ids, strict=True)) or None

    def import_kwargs(self) -> dict[str, Any]:
        """The keyword arguments of :func:`segcore.annotations.import_labels` (paths
        included) that this section stands for."""
        return {
            "export": Path(self.export),
            "image_dir": Path(self.image_dir),
            "out_dir": Path(self.out_dir),
            "format": None if self.format == "auto" else self.format,
            "class_map": self.class_map,
            "background_id": self.background_id,
            "unlabelled": self.unlabelled,
            "ignore_id": self.ignore_id,
            "empty_images": self.empty_images,
            "line_width": self.line_width,
            "overwrite": self.overwrite,
        }
