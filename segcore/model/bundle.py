"""Model bundles: a directory that alone suffices for inference.

``model.safetensors`` holds the weights (safetensors: loading never unpickles) and
``model.json`` the architecture, class ids and names, ignore ids, the preprocessing
parameters and a training summary. A bundle is written into a temporary directory that
then replaces the old one, so a reader never sees weights and config of different runs.
"""

from __future__ import annotations

import json
import os
import shutil
import uuid
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn

from segcore.common.constants import BUNDLE_CONFIG, BUNDLE_WEIGHTS
from segcore.common.errors import DatasetError, SegcoreError
from segcore.model.factory import create_from_architecture, mask_ignored_logits

__all__ = ["BundleConfig", "BundleError", "load_bundle", "mask_ignored_logits", "save_bundle"]

BUNDLE_FORMAT = "segcore.model.bundle/1"
"""Written into ``model.json``; readers accept every ``segcore.model.bundle/1`` file."""


class BundleError(DatasetError):
    """A model bundle is missing, incomplete or corrupt."""


@dataclass
class BundleConfig:
    """What ``model.json`` holds.

    Attributes:
        architecture: ``name``, ``encoder``, ``in_channels``, ``num_classes`` and the
            architecture ``kwargs`` (see :func:`segcore.model.factory.architecture`).
        class_ids: class ids in output-channel order.
        class_names: names in the same order.
        ignore_class_ids: ids never predicted (their logits are masked).
        preprocess_param: ``PreprocessParams.model_dump()`` used for training.
        training_summary: epochs, best value, final measures, resolved train params.
    """

    architecture: dict[str, Any]
    class_ids: list[int]
    class_names: list[str]
    ignore_class_ids: list[int]
    preprocess_param: dict[str, Any]
    training_summary: dict[str, Any] = field(default_factory=dict)


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
    directory.parent.mkdir(parents=True, exist_ok=True)
    tmp = directory.parent / f".{directory.name}.tmp-{uuid.uuid4().hex}"
    tmp.mkdir()  # not mkdtemp: the bundle gets the usual (umask) permissions
    try:
        save_file(state, str(tmp / BUNDLE_WEIGHTS), metadata={"format": BUNDLE_FORMAT})
        text = json.dumps(meta, indent=2, default=_json_default) + "\n"
        (tmp / BUNDLE_CONFIG).write_text(text, encoding="utf-8")
        _replace_dir(tmp, directory)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return directory


def _json_default(obj: Any) -> Any:
    if isinstance(obj, Path):
        return obj.as_posix()
    if hasattr(obj, "item"):  # numpy / torch scalars
        return obj.item()
    raise TypeError(f"{type(obj).__name__} is not JSON serialisable")


def _replace_dir(src: Path, dst: Path) -> None:
    """Move ``src`` onto ``dst``: the old directory is renamed away first, then removed."""
    old = dst.parent / f".{dst.name}.old-{uuid.uuid4().hex}"
    if dst.exists():
        os.replace(dst, old)
    os.replace(src, dst)
    shutil.rmtree(old, ignore_errors=True)


def read_bundle_config(directory: str | os.PathLike[str]) -> BundleConfig:
    """Read ``model.json`` of a bundle.

    Raises:
        BundleError: missing, not JSON, or lacking keys.
    """
    path = Path(directory) / BUNDLE_CONFIG
    fix = "train a model (`segcore train`) or pass a bundle folder such as models/best"
    if not path.is_file():
        raise BundleError(f"{path.parent}: not a model bundle (no {BUNDLE_CONFIG}); {fix}")
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise BundleError(f"{path}: not readable JSON ({err}); {fix}") from None
    if not isinstance(meta, dict) or not str(meta.get("format", "")).startswith(
        "segcore.model.bundle/"
    ):
        raise BundleError(f"{path}: not a segcore model bundle config; {fix}")
    names = [f.name for f in BundleConfig.__dataclass_fields__.values()]
    missing = [n for n in names if n not in meta and n != "training_summary"]
    if missing:
        raise BundleError(f"{path}: lacks {', '.join(missing)}; {fix}")
    return BundleConfig(**{n: meta[n] for n in names if n in meta})


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
