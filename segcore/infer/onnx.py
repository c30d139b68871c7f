"""ONNX export of a model bundle and the onnxruntime session that runs it.

The exported graph maps the preprocessed image ``image`` ``(N, C, H, W)`` float32 to
``probabilities`` ``(N, K, H, W)`` float32: the network, ignore classes masked, softmax.
Argmax, resizing to the input's size and regions stay in :func:`segcore.infer.apply.to_result`,
shared with the torch backend, so both backends give the same outputs up to float
rounding. The batch dimension is always dynamic; height and width are dynamic when the
network runs at another size (checked with onnxruntime after the export), else fixed to
the bundle's preprocess size. The file carries the SHA-256 of the weights it was made
from, so a stale export is refused instead of silently used.
"""

from __future__ import annotations

import copy
import hashlib
import json
import os
import tempfile
import warnings
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from segcore.common.constants import BUNDLE_WEIGHTS, ONNX_FILE
from segcore.common.errors import SegcoreError
from segcore.common.io import atomic_path
from segcore.model.bundle import BundleConfig, load_bundle
from segcore.model.factory import input_size_multiple
from segcore.model.outputs import ignore_indices, masked_probabilities
from segcore.params import PreprocessParams

DEFAULT_OPSET = 17
INPUT_NAME = "image"
OUTPUT_NAME = "probabilities"
META_WEIGHTS = "segcore.weights_sha256"
META_CONFIG = "segcore.config"
META_DYNAMIC_SPATIAL = "segcore.dynamic_spatial"
_TOLERANCE = 1e-2
"""Largest probability difference between torch and onnxruntime accepted at export (a
broken graph differs by ~1; float rounding in saturated softmaxes stays far below this)."""
_MIN_AGREEMENT = 0.999
"""Smallest share of pixels where both give the same class, accepted at export."""


class OnnxError(SegcoreError):
    """The ONNX file is missing, stale or cannot be made."""


class _Probabilities(nn.Module):
    """``(N, C, H, W)`` -> ``(N, K, H, W)`` class probabilities, ignore classes at 0."""

    def __init__(self, module: nn.Module, ignore: list[int]) -> None:
        super().__init__()
        self.module = module
        self.ignore = ignore

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return masked_probabilities(self.module(x), self.ignore)


def file_sha256(path: str | os.PathLike[str]) -> str:
    """Hex SHA-256 of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def export_onnx(
    bundle_dir: str | os.PathLike[str],
    out_path: str | os.PathLike[str] | None = None,
    opset: int = DEFAULT_OPSET,
) -> Path:
    """Export a bundle's network to ONNX (default ``<bundle>/model.onnx``).

    Args:
        bundle_dir: the model bundle.
        out_path: where to write; ``segcore infer --backend onnx`` looks in the bundle.
        opset: ONNX opset (17 or newer).

    Returns:
        the written path.

    Raises:
        OnnxError: the export fails or onnxruntime disagrees with torch.
    """

    bundle = Path(bundle_dir)
    module, config = load_bundle(bundle, device="cpu")
    path = Path(out_path) if out_path is not None else bundle / ONNX_FILE
    weights = bundle / BUNDLE_WEIGHTS
    export_module(module, config, path, opset=opset, weights_sha256=file_sha256(weights))
    return path


def export_module(
    module: nn.Module,
    config: BundleConfig,
    path: str | os.PathLike[str],
    *,
    opset: int = DEFAULT_OPSET,
    weights_sha256: str = "",
) -> bool:
    """Export ``module`` (with its config) to ``path``; see :func:`export_onnx`.

    Returns:
        whether height and width are dynamic (else only the batch is).
    """
    import onnx

    if opset < DEFAULT_OPSET:
        raise OnnxError(f"opset {opset} is too old; use {DEFAULT_OPSET} or newer")
    param = PreprocessParams.model_validate(config.preprocess_param)
    # A CPU copy in eval mode: the export restores the training flag of the module it gets,
    # and the caller's module stays where and as it is.
    ignore = ignore_indices(config.class_ids, config.ignore_class_ids)
    wrapper = _Probabilities(copy.deepcopy(module).cpu(), ignore).eval()
    shape = (param.image_num_channels, param.image_height, param.image_width)
    multiple = max(input_size_multiple(module), 8)
    other = (3, shape[0], shape[1] + multiple, shape[2] + 2 * multiple)
    with tempfile.TemporaryDirectory(prefix="segcore-onnx-") as tmp:
        candidate = Path(tmp) / ONNX_FILE
        dynamic = True
        problem = _export(wrapper, shape, candidate, opset, dynamic_spatial=True)
        problem = problem or _verify(wrapper, candidate, [(2, *shape), other])
        if problem:
            dynamic = False
            problem = _export(wrapper, shape, candidate, opset, dynamic_spatial=False)
            problem = problem or _verify(wrapper, candidate, [(2, *shape), (3, *shape)])
        if problem:
            raise OnnxError(f"ONNX export failed: {problem}; try another opset (--opset)")
        model = onnx.load(str(candidate))
        meta = {
            META_WEIGHTS: weights_sha256,
            META_CONFIG: json.dumps(_config_dict(config)),
            META_DYNAMIC_SPATIAL: str(dynamic).lower(),
        }
        for key, value in meta.items():
            entry = model.metadata_props.add()
            entry.key, entry.value = key, value
        onnx.checker.check_model(model, full_check=True)
        with atomic_path(path) as out:
            onnx.save(model, str(out))
    return dynamic


def _config_dict(config: BundleConfig) -> dict[str, Any]:
    return json.loads(json.dumps(asdict(config), default=str))


def _export(
    wrapper: nn.Module, shape: tuple[int, ...], path: Path, opset: int, *, dynamic_spatial: bool
) -> str | None:
    axes = {0: "batch", 2: "height", 3: "width"} if dynamic_spatial else {0: "batch"}
    # The TorchScript exporter is deprecated in favour of dynamo, which is slower and less
    # reliable on these CNNs; it is chosen on purpose.
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            torch.onnx.export(
                wrapper,
                (torch.zeros(1, *shape),),
                str(path),
                input_names=[INPUT_NAME],
                output_names=[OUTPUT_NAME],
                dynamic_axes={INPUT_NAME: axes, OUTPUT_NAME: axes},
                opset_version=opset,
                do_constant_folding=True,
                dynamo=False,
            )
    except (RuntimeError, ValueError, TypeError) as err:  # unsupported operators and the like
        return f"{type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}"
    return None


def _verify(wrapper: nn.Module, path: Path, shapes: list[tuple[int, ...]]) -> str | None:
    """Compare onnxruntime with torch on random inputs of the given shapes."""
    from onnxruntime.capi.onnxruntime_pybind11_state import Fail, InvalidArgument

    session = onnx_session(path, torch.device("cpu"))
    rng = np.random.default_rng(0)
    for shape in shapes:
        x = rng.normal(0.0, 50.0, shape).astype(np.float32)
        try:
            got = session.run(None, {INPUT_NAME: x})[0]
        except (Fail, InvalidArgument, RuntimeError) as err:
            return f"onnxruntime cannot run input {shape}: {str(err).splitlines()[0]}"
        with torch.inference_mode():
            want = wrapper(torch.from_numpy(x)).numpy()
        if got.shape != want.shape:
            return f"output {got.shape} for input {shape}, torch gives {want.shape}"
        diff = float(np.abs(got - want).max())
        agree = float((got.argmax(axis=1) == want.argmax(axis=1)).mean())
        if not (diff <= _TOLERANCE and agree >= _MIN_AGREEMENT):
            return (
                f"onnxruntime and torch differ for input {shape} (probabilities by up to "
                f"{diff:.2g}, classes on {1 - agree:.2%} of the pixels)"
            )
    return None


def onnx_session(path: str | os.PathLike[str], device: torch.device) -> Any:
    """An onnxruntime session on the ONNX file ``path`` (graph optimizations on; the CUDA
    provider for a CUDA device where onnxruntime has it, else the CPU with torch's threads)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.intra_op_num_threads = max(1, torch.get_num_threads())
    # Idle ORT threads sleep instead of spinning, leaving the cores to the threads that
    # decode and write images meanwhile (measured faster in the pipeline and no slower alone).
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    options.log_severity_level = 3
    providers = ["CPUExecutionProvider"]
    if device.type == "cuda" and "CUDAExecutionProvider" in ort.get_available_providers():
        providers.insert(0, ("CUDAExecutionProvider", {"device_id": device.index or 0}))
    return ort.InferenceSession(str(path), sess_options=options, providers=providers)


def open_session(bundle_dir: str | os.PathLike[str], device: torch.device | str = "cpu") -> Any:
    """An onnxruntime session on ``<bundle>/model.onnx`` (graph optimizations on).

    Uses the CUDA provider for a CUDA device when onnxruntime has it, else the CPU with
    torch's thread count.

    Raises:
        OnnxError: no ONNX file, or one exported from other weights than the bundle's.
    """
    bundle = Path(bundle_dir)
    path = bundle / ONNX_FILE
    if not path.is_file():
        raise OnnxError(
            f"{path}: no ONNX export in the bundle; run `segcore export-onnx {bundle}` first"
        )
    session = onnx_session(path, torch.device(device))
    meta = session.get_modelmeta().custom_metadata_map
    weights = bundle / BUNDLE_WEIGHTS
    if weights.is_file() and meta.get(META_WEIGHTS) != file_sha256(weights):
        raise OnnxError(
            f"{path} was exported from other weights than {weights}; run "
            f"`segcore export-onnx {bundle}` again"
        )
    return session


def describe(path: str | os.PathLike[str]) -> str:
    """One line about an exported file: input and output shapes (symbolic names are dynamic)."""
    import onnx

    model = onnx.load(str(path), load_external_data=False)

    def dims(value: Any) -> str:
        shape = value.type.tensor_type.shape.dim
        return "x".join(d.dim_param or str(d.dim_value) for d in shape)

    graph = model.graph
    opset = max(o.version for o in model.opset_import if o.domain in ("", "ai.onnx"))
    return (
        f"{graph.input[0].name} {dims(graph.input[0])} -> {graph.output[0].name} "
        f"{dims(graph.output[0])}, opset {opset}"
    )
