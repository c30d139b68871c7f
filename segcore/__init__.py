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
    "DLDataset": "segcore.data.dldataset",
    "SegcoreError": "segcore.common.errors",
    "generate_pills": "segcore.data.synth",
    "read_dataset": "segcore.data.read",
    "dataset_stats": "segcore.data.stats",
    "split_dataset": "segcore.data.split",
    "import_labels": "segcore.annotations",
    "export_coco": "segcore.annotations",
    # preprocessing
    "preprocess_dataset": "segcore.preprocess.stage",
    "preprocess_samples": "segcore.preprocess.stage",
    "calculate_class_weights": "segcore.preprocess.stage",
    "generate_weight_images": "segcore.preprocess.stage",
    # models and training
    "create_model": "segcore.model.factory",
    "train_model": "segcore.train.loop",
    "plan_training": "segcore.train.plan.rules",
    "fingerprint_dataset": "segcore.train.plan.fingerprint",
    # evaluation and inference
    "evaluate_model": "segcore.evaluate.evaluation",
    "write_evaluation_report": "segcore.evaluate.report",
    "load_model": "segcore.infer.apply",
    "apply_model": "segcore.infer.apply",
    "run_inference": "segcore.infer.files",
    "export_onnx": "segcore.infer.onnx",
    # registry
    "register_model": "segcore.tracking.register",
}

__all__ = ["__version__", *_EXPORTS]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'segcore' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)


def __dir__() -> list[str]:
    return sorted(__all__)
