"""Annotation exports from labelling tools -> segcore's label folder, and back.

- :func:`import_labels`: a COCO JSON, CVAT for images 1.1 XML, LabelMe folder or Label
  Studio JSON export + the image folder -> one class-id PNG per image (``labels/a.png``
  for ``images/a.jpg``), checked first and written all at once.
- :func:`export_coco`: segmentation images (``segcore infer`` output or a label folder)
  -> a COCO JSON (exact RLE masks or editable polygons) to correct in a labelling tool
  and import back.

Their parameters are the ``import_labels:`` section of ``params.yaml``
(:class:`segcore.params.ImportLabelsParams`).

Rasterisation follows the pixel-centre rule (:mod:`segcore.annotations.shapes`); the
class map rule is in :mod:`segcore.annotations.importer`.
"""

from segcore.annotations.detect import FORMATS, detect_format
from segcore.annotations.export import export_coco
from segcore.annotations.importer import ImportResult, build_class_map, import_labels
from segcore.annotations.write import Overlap

__all__ = [
    "FORMATS",
    "ImportResult",
    "Overlap",
    "build_class_map",
    "detect_format",
    "export_coco",
    "import_labels",
]
