"""Typed parameters, one class per section of ``params.yaml``, loaded in one place.

The modules: :mod:`~segcore.params.base` (the section base class and the engine that
reports every problem at once), :mod:`~segcore.params.data` (synth, dataset, split),
:mod:`~segcore.params.annotations` (label import),
:mod:`~segcore.params.preprocess` (HALCON's preprocessing parameters and rules),
:mod:`~segcore.params.train`, :mod:`~segcore.params.model_use` (evaluate, infer),
:mod:`~segcore.params.decision` (OK/NG rules and their calibration),
:mod:`~segcore.params.mlops` (register, tracking, flow) and :mod:`~segcore.params.root`
(the whole file: loading, command-line overrides, flattening). Every public name is
re-exported here, so ``from segcore.params import TrainParams`` keeps working.
"""

from __future__ import annotations

from segcore.params.annotations import ImportLabelsParams
from segcore.params.base import (
    MAX_CLASS_ID,
    ClassId,
    Section,
    validate_with_rules,
)
from segcore.params.data import (
    DatasetParams,
    SplitParams,
    SynthParams,
    class_list_problems,
)
from segcore.params.decision import (
    CalibrationParams,
    DecisionParams,
    DecisionRule,
)
from segcore.params.mlops import FlowParams, RegisterParams, TrackingParams
from segcore.params.model_use import EvaluateParams, InferParams
from segcore.params.preprocess import (
    IMAGENET_MEAN_255,
    IMAGENET_STD_255,
    ClassWeightParams,
    ClusterParams,
    PreprocessParams,
    PreprocessStageParams,
)
from segcore.params.root import (
    DEFAULT_PARAMS_FILE,
    Params,
    dump_params,
    flatten,
    load_params,
    override,
    update_params_file,
)
from segcore.params.train import AugmentationParams, ChangeStrategy, TrainParams

__all__ = [
    "DEFAULT_PARAMS_FILE",
    "IMAGENET_MEAN_255",
    "IMAGENET_STD_255",
    "MAX_CLASS_ID",
    "AugmentationParams",
    "CalibrationParams",
    "ChangeStrategy",
    "ClassId",
    "ClassWeightParams",
    "ClusterParams",
    "DatasetParams",
    "DecisionParams",
    "DecisionRule",
    "EvaluateParams",
    "FlowParams",
    "ImportLabelsParams",
    "InferParams",
    "Params",
    "PreprocessParams",
    "PreprocessStageParams",
    "RegisterParams",
    "Section",
    "SplitParams",
    "SynthParams",
    "TrackingParams",
    "TrainParams",
    "class_list_problems",
    "dump_params",
    "flatten",
    "load_params",
    "override",
    "update_params_file",
    "validate_with_rules",
]
