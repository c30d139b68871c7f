"""segcore: deep-learning semantic segmentation for industrial inspection.

The public API follows HALCON's semantic-segmentation workflow (read, split,
preprocess with class weights and weight images, train, evaluate, infer). Names are
imported lazily, so ``import segcore`` is cheap and has no side effects.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_EXPORTS = {
    # params
    "Params": "segcore.params",
    "load_params": "segcore.params",
    "PreprocessParams": "segcore.params",
    "TrainParams": "segcore.params",
    # data
    "DLDataset": "segcore.dldataset",
    "SegcoreError": "segcore.errors",
    "generate_pills": "segcore.synth",
    "read_dataset": "segcore.dataset",
    "dataset_stats": "segcore.stats",
    "split_dataset": "segcore.split",
    # preprocessing
    "preprocess_dataset": "segcore.preprocess",
    "preprocess_samples": "segcore.preprocess",
    "calculate_class_weights": "segcore.preprocess",
    "generate_weight_images": "segcore.preprocess",
    # models and training
    "create_model": "segcore.models",
    "train_model": "segcore.train",
    # evaluation and inference
    "evaluate_model": "segcore.evaluate",
    "write_evaluation_report": "segcore.report",
    "load_model": "segcore.infer",
    "apply_model": "segcore.infer",
    "run_inference": "segcore.infer_files",
    "export_onnx": "segcore.onnx_export",
    # registry
    "register_model": "segcore.register",
}

__all__ = ["__version__", *_EXPORTS]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'segcore' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)


def __dir__() -> list[str]:
    return sorted(__all__)
