"""Names used across stages, defined once (mode strings, split names, file names)."""

from __future__ import annotations

from typing import Final, Literal

# Splits (HALCON's split_dl_dataset values).
TRAIN: Final = "train"
VALIDATION: Final = "validation"
TEST: Final = "test"
SPLITS: Final = (TRAIN, VALIDATION, TEST)
Split = Literal["train", "validation", "test"]

# Normalization types (create_dl_preprocess_param).
NORM_NONE: Final = "none"
NORM_FIRST_CHANNEL: Final = "first_channel"
NORM_ALL_CHANNELS: Final = "all_channels"
NORM_CONSTANT_VALUES: Final = "constant_values"
NormalizationType = Literal["none", "first_channel", "all_channels", "constant_values"]

# Domain handling.
CROP_DOMAIN: Final = "crop_domain"
FULL_DOMAIN: Final = "full_domain"
DomainHandling = Literal["full_domain", "crop_domain"]

# Image modes (preprocess.param.mode): HALCON's whole resized images, or tiles at native size.
MODE_RESIZE: Final = "resize"
MODE_TILED: Final = "tiled"
DEFAULT_TILE_OVERLAP: Final = 0.25
"""Default overlap of neighbouring tiles in sliding-window inference, a fraction of the tile."""

# Solvers.
SolverType = Literal["sgd", "adam"]

# Serialization strategies (create_dl_train_param).
SerializationStrategy = Literal["best", "final", "epochs", "current"]

IGNORE_INDEX: Final = -100
"""Label value used inside tensors for pixels that take no part in loss or measures.

Matches ``torch.nn.functional.cross_entropy``'s default ``ignore_index``. User-facing
ignore classes are listed as class ids (``ignore_class_ids``); they are mapped to this
value only inside the training and evaluation code.
"""

# Dataset table: sample columns.
COL_IMAGE_ID: Final = "image_id"
COL_IMAGE_FILE: Final = "image_file_name"
COL_LABEL_FILE: Final = "segmentation_file_name"
COL_SPLIT: Final = "split"
COL_WIDTH: Final = "image_width"
COL_HEIGHT: Final = "image_height"
COL_CHANNELS: Final = "image_num_channels"
COL_BIT_DEPTH: Final = "image_bit_depth"
"""Bits per channel of the image file (8 or 16; 32 for float TIFF)."""
COL_IGNORED_PIXELS: Final = "pixels_ignored"
"""Label pixels whose value is an ignore class id outside the class ids (a 255 border)."""
PIXEL_COUNT_PREFIX: Final = "pixels_class_"
"""Per-class pixel-count columns are named ``pixels_class_<id>``."""
COL_SAMPLE_FILE: Final = "sample_file_name"
"""After preprocessing: each sample's file, relative to the dataset's ``sample_dir``."""
COL_DOMAIN_ROI: Final = "domain_roi"
"""Optional: a sample's region of interest ``[row1, col1, row2, col2]`` for ``crop_domain``."""

# Files inside bundles and preprocessed dirs.
DATASET_FILE: Final = "dataset.parquet"
BUNDLE_WEIGHTS: Final = "model.safetensors"
BUNDLE_CONFIG: Final = "model.json"
ONNX_FILE: Final = "model.onnx"
"""The ONNX export inside a bundle (``segcore export-onnx``, ``infer --backend onnx``)."""

# Files of the evaluation report, in ``evaluate.report_dir``.
METRICS_FILE: Final = "metrics.json"
REPORT_HTML: Final = "report.html"
REPORT_MD: Final = "report.md"

REGISTRY_FILE: Final = "registry.json"
"""The register stage's record of its decision, in ``evaluate.report_dir``."""
