"""Model bundles: a directory that alone suffices for inference.

``model.safetensors`` holds the weights (safetensors: loading never unpickles) and
``model.json`` the architecture, class ids and names, ignore ids, the preprocessing
parameters and a training summary. A bundle is written into a temporary directory, flushed
to disk, then swapped with the old one in one step (segcore.common.io.replace_dir), so a
reader never sees weights and config of different runs, nor no bundle at all.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import asdict
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn

from segcore.common.constants import BUNDLE_CONFIG, BUNDLE_WEIGHTS
from segcore.common.errors import SegcoreError
from segcore.common.io import make_temp_dir, replace_dir
from segcore.model.config import (
    BUNDLE_FORMAT,
    BundleConfig,
    BundleError,
    json_default,
    read_bundle_config,
)
from segcore.model.factory import create_from_architecture

__all__ = [
    "BundleConfig",
    "BundleError",
    "load_bundle",
    "read_bundle_config",
    "save_bundle",
]


def save_bundle(directory: str | os.PathLike[str], model: nn.Module, config: BundleConfig) -> Path:
    """Write ``model.safetensors`` and ``model.json`` into ``directory``, replacing it whole.

    Args:
        directory: the bundle directory (created; an existing one is replaced).
        model: the network (a DistributedDataParallel wrapper is unwrapped).
        config: what goes into ``model.json``; ``architecture`` entries that are left
            out default to ``num_classes = len(class_ids)`` and the preprocess channels.

    Returns:
        ``directory`` as a Path.
    """
    directory = Path(directory)
    module = getattr(model, "module", model)
    # Clones: safetensors refuses tensors that share memory (tied weights, views).
    state = {k: v.detach().to("cpu").contiguous().clone() for k, v in module.state_dict().items()}
    arch = {
        "encoder": None,
        "in_channels": int(config.preprocess_param.get("image_num_channels", 3)),
        "num_classes": len(config.class_ids),
        "kwargs": {},
        **config.architecture,
    }
    meta = {"format": BUNDLE_FORMAT, **asdict(config), "architecture": arch}
    tmp = make_temp_dir(directory)
    try:
        save_file(state, str(tmp / BUNDLE_WEIGHTS), metadata={"format": BUNDLE_FORMAT})
        text = json.dumps(meta, indent=2, default=json_default) + "\n"
        (tmp / BUNDLE_CONFIG).write_text(text, encoding="utf-8")
        replace_dir(tmp, directory)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return directory


def load_bundle(
    directory: str | os.PathLike[str], device: str | torch.device = "cpu"
) -> tuple[nn.Module, BundleConfig]:
    """Rebuild the network of a bundle and load its weights (safetensors; never a pickle).

    Returns:
        The model on ``device`` in eval mode, and the bundle's config.

    Raises:
        BundleError: missing or corrupt files, or weights that do not fit the architecture.
    """
    directory = Path(directory)
    config = read_bundle_config(directory)
    weights = directory / BUNDLE_WEIGHTS
    if not weights.is_file():
        raise BundleError(f"{directory}: {BUNDLE_WEIGHTS} is missing; train the model again")
    try:
        model = create_from_architecture(config.architecture)
    except (SegcoreError, KeyError, TypeError, ValueError) as err:
        raise BundleError(
            f"{directory / BUNDLE_CONFIG}: architecture {config.architecture} cannot be built "
            f"({err}); the bundle was written by another segcore version or edited"
        ) from None
    try:
        state = load_file(str(weights))
    except (OSError, SafetensorError) as err:
        raise BundleError(f"{weights}: not readable safetensors ({err}); train again") from None
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as err:
        raise BundleError(
            f"{weights}: weights do not fit the architecture in {BUNDLE_CONFIG} "
            f"({str(err).splitlines()[0]}); the two files come from different models"
        ) from None
    return model.to(device).eval(), config
