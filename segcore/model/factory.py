"""Segmentation networks by name (HALCON: read_dl_model): ``compact``, ``enhanced``, smp.

``compact`` and ``enhanced`` (deeper, wider, residual blocks) are U-Nets defined here: an
encoder that halves the
resolution ``depth`` times, a decoder that doubles it back with a skip connection at
every level *including full resolution*, so 2-3 px thin defects (cracks, scratches)
survive to the output. Every segmentation-models-pytorch architecture is available by
name too (``unet``, ``fpn``, ``deeplabv3plus``, ...), with any of its encoders.

Every model maps ``(N, in_channels, H, W)`` float32 to logits ``(N, num_classes, H, W)``
at the input size. Encoders start from random weights unless ``encoder_weights`` gives a
local weights file or a name smp knows for the encoder (``imagenet``: downloaded once into
the Hugging Face cache, segcore.model.pretrained). A bundle never downloads: its own
weights replace the encoder's.
"""

from __future__ import annotations

import inspect
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from segcore.common.errors import ParamsError
from segcore.model.compact import CompactUNet
from segcore.model.pretrained import download_error, fetch_weights, is_weights_file

COMPACT: str = "compact"
ENHANCED: str = "enhanced"

COMPACT_DEFAULTS: dict[str, Any] = {"base_channels": 16, "depth": 4, "norm": "batch"}
"""Defaults of ``compact``, from CPU timings and the pill demo: on 2 CPU cores a 256 x 256
image takes ~0.12 s forward + backward (channels-last), 15 epochs of 112 images ~3.5 min.
Base 8 trains twice as fast but reaches defect IoU ~0.6 where base 16 reaches ~0.8;
group norm is as fast but converged worse on the demo (test mean IoU 0.80 vs 0.85)."""

ENHANCED_DEFAULTS: dict[str, Any] = {
    "base_channels": 32,
    "depth": 5,
    "norm": "batch",
    "residual": True,
}
"""Defaults of ``enhanced``, HALCON's larger network: twice as wide as ``compact``, one
level deeper (1/32 resolution, inputs a multiple of 32), residual blocks. 32.5 M
parameters vs 1.9 M; one 256 x 256 forward pass took 1.9 s vs 0.41 s for ``compact`` on
2 shared CPU cores (channels-last, measured once). Still trains on a CPU, about 4-5 times
slower than ``compact``; a GPU suits it better."""


def _smp_architectures() -> dict[str, type[nn.Module]]:
    import segmentation_models_pytorch as smp

    return dict(smp.MODEL_ARCHITECTURES_MAPPING)


def model_names() -> list[str]:
    """Every valid model name: ``compact``, ``enhanced`` and the smp architectures."""
    return [COMPACT, ENHANCED, *_smp_architectures()]


MODEL_NAMES: tuple[str, ...] = (
    COMPACT,
    ENHANCED,
    "unet",
    "unetplusplus",
    "manet",
    "linknet",
    "fpn",
    "pspnet",
    "deeplabv3",
    "deeplabv3plus",
    "pan",
    "upernet",
    "segformer",
    "dpt",
)
"""The names :func:`model_names` gives with segmentation-models-pytorch 0.6 (for docs)."""


# --------------------------------------------------------------------------- factory


def create_model(
    name: str,
    num_classes: int,
    in_channels: int = 3,
    *,
    encoder: str | None = None,
    encoder_weights: str | None = None,
    **kwargs: Any,
) -> nn.Module:
    """A segmentation network by name, with random or given encoder weights.

    Args:
        name: ``compact``, ``enhanced`` or a segmentation-models-pytorch architecture
            (``unet``, ``fpn``, ``deeplabv3plus``, ...; case-insensitive).
        num_classes: number of output channels, one per class.
        in_channels: image channels.
        encoder: encoder of an smp architecture (e.g. ``resnet18``, ``tu-<timm name>``);
            ``None`` is the architecture's own default. Not used by compact/enhanced.
        encoder_weights: a local weights file (safetensors, or a PyTorch state dict
            read with ``weights_only=True``) loaded into the encoder, or a name smp knows
            for the encoder (``imagenet``, ...; fetched into the Hugging Face cache once).
        kwargs: further architecture arguments (compact/enhanced: ``base_channels``,
            ``depth``, ``norm``, ``residual``; smp: e.g. ``encoder_depth``, ``decoder_channels``).

    Returns:
        A module mapping ``(N, in_channels, H, W)`` float32 to ``(N, num_classes, H, W)``
        logits.

    Raises:
        ParamsError: unknown name or encoder (the message lists the valid ones), bad
            arguments, an unreadable weights file or weights of another encoder, an
            unknown weights name, or named weights that are not cached while offline.
    """
    key = name.lower()
    if key in (COMPACT, ENHANCED):
        if encoder is not None or encoder_weights is not None:
            raise ParamsError(
                f"model {name!r} has no separate encoder; set encoder and encoder_weights "
                "to null, or choose an smp architecture such as 'unet'"
            )
        options = (COMPACT_DEFAULTS if key == COMPACT else ENHANCED_DEFAULTS) | kwargs
        _check_kwargs(CompactUNet, name, options)
        return CompactUNet(in_channels, num_classes, **options)
    architectures = _smp_architectures()
    if key not in architectures:
        raise ParamsError(f"unknown model {name!r}; valid names: {', '.join(model_names())}")
    named = None if encoder_weights is None or is_weights_file(encoder_weights) else encoder_weights
    model = _create_smp(architectures[key], key, num_classes, in_channels, encoder, kwargs, named)
    if encoder_weights is not None and named is None:
        load_encoder_weights(model, encoder_weights)
    return model


def architecture(
    name: str,
    num_classes: int,
    in_channels: int = 3,
    *,
    encoder: str | None = None,
    **kwargs: Any,
) -> dict[str, Any]:
    """The full description of a model, as stored in a bundle's ``model.json``.

    Defaults are resolved (compact/enhanced options, the smp encoder), so a bundle
    rebuilds the same network even if defaults change later. Encoder weights are not
    part of it: a bundle's own weights replace them.
    """
    key = name.lower()
    if key in (COMPACT, ENHANCED):
        kwargs = (COMPACT_DEFAULTS if key == COMPACT else ENHANCED_DEFAULTS) | kwargs
    return {
        "name": key,
        "encoder": resolved_encoder(key, encoder),
        "in_channels": in_channels,
        "num_classes": num_classes,
        "kwargs": dict(kwargs),
    }


def create_from_architecture(arch: dict[str, Any]) -> nn.Module:
    """The (randomly initialised) network an :func:`architecture` dict describes."""
    return create_model(
        arch["name"],
        int(arch["num_classes"]),
        int(arch.get("in_channels", 3)),
        encoder=arch.get("encoder"),
        **arch.get("kwargs", {}),
    )


def resolved_encoder(name: str, encoder: str | None) -> str | None:
    """The encoder a model gets: ``encoder``, else the smp architecture's default."""
    key = name.lower()
    if key in (COMPACT, ENHANCED) or encoder is not None:
        return encoder
    cls = _smp_architectures().get(key)
    if cls is None:
        return None
    return inspect.signature(cls.__init__).parameters["encoder_name"].default


def _create_smp(
    cls: type[nn.Module],
    key: str,
    num_classes: int,
    in_channels: int,
    encoder: str | None,
    kwargs: dict[str, Any],
    weights: str | None = None,
) -> nn.Module:
    """An smp model; ``weights``: a pretrained-weights name, already in the cache (smp
    adapts them to ``in_channels``; timm encoders download theirs here)."""
    import segmentation_models_pytorch as smp

    encoder = resolved_encoder(key, encoder)
    assert encoder is not None
    if not encoder.startswith("tu-") and encoder not in smp.encoders.get_encoder_names():
        raise ParamsError(
            f"unknown encoder {encoder!r} for model {key!r}; valid: "
            f"{', '.join(smp.encoders.get_encoder_names())}, or 'tu-<timm model name>'"
        )
    _check_kwargs(cls, key, kwargs, reserved=("encoder_name", "encoder_weights", "classes"))
    if weights is not None:
        fetch_weights(encoder, weights)  # before anything trains: cached, or a clear error
    tu = encoder.startswith("tu-")
    try:
        return cls(
            encoder_name=encoder,
            encoder_weights=(True if tu else weights) if weights else None,
            in_channels=in_channels,
            classes=num_classes,
            **kwargs,
        )
    except OSError as err:  # timm's download of named weights, offline
        raise download_error(encoder, str(weights), err) from None
    except (KeyError, ValueError, TypeError, RuntimeError) as err:
        raise ParamsError(
            f"model {key!r} with encoder {encoder!r} cannot be built: {err}; "
            "check encoder and model_kwargs"
        ) from None


def _check_kwargs(
    cls: type[nn.Module], name: str, kwargs: dict[str, Any], reserved: Sequence[str] = ()
) -> None:
    params = inspect.signature(cls.__init__).parameters
    accepts_any = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())
    valid = [p for p in params if p not in ("self", "in_channels", "num_classes", *reserved)]
    bad = [k for k in kwargs if k in reserved or (k not in valid and not accepts_any)]
    if bad:
        raise ParamsError(
            f"model {name!r} does not take {', '.join(map(repr, bad))}; valid arguments: "
            f"{', '.join(valid)}"
        )


def load_encoder_weights(model: nn.Module, path: str | Path) -> None:
    """Load a local state dict into ``model.encoder`` (safetensors or ``weights_only`` torch).

    Keys may carry an ``encoder.`` prefix. Never unpickles arbitrary objects.

    Raises:
        ParamsError: missing or unreadable file, or weights that do not fit the encoder.
    """
    path = Path(path)
    if not path.is_file():
        raise ParamsError(
            f"train.encoder_weights: {path} not found; give a local weights file, a name smp "
            "knows for the encoder (e.g. imagenet), or null for random initialisation"
        )
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            state = load_file(str(path))
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
    except (OSError, RuntimeError, ValueError) as err:
        raise ParamsError(
            f"train.encoder_weights: {path} is not a readable state dict ({err})"
        ) from None
    state = {k.removeprefix("encoder."): v for k, v in state.items()}
    try:
        model.encoder.load_state_dict(state)
    except RuntimeError as err:
        raise ParamsError(
            f"train.encoder_weights: {path} does not fit the encoder "
            f"({type(model.encoder).__name__}, {_in_channels(model)} input channels): "
            f"{str(err).splitlines()[0]}; use weights saved from the same train.encoder with "
            "the same image_num_channels, or a name smp knows for it (e.g. imagenet)"
        ) from None


def _in_channels(model: nn.Module) -> int | str:
    first = next((m for m in model.modules() if isinstance(m, nn.Conv2d)), None)
    return first.in_channels if first is not None else "?"


# --------------------------------------------------------------------------- input sizes


def input_size_multiple(model: nn.Module) -> int:
    """Height and width of inputs must be multiples of this (1: any size is fine)."""
    if isinstance(model, CompactUNet):
        return model.input_size_multiple
    encoder = getattr(model, "encoder", None)
    if getattr(model, "requires_divisible_input_shape", False) and encoder is not None:
        return int(getattr(encoder, "output_stride", 1))
    return 1


def check_input_size(model: nn.Module, height: int, width: int, in_channels: int) -> None:
    """Raise before training when ``model`` cannot take ``(in_channels, height, width)``.

    Checks the stated multiple first, then runs one forward pass (eval mode, no
    gradients) to catch architecture-specific limits (minimum sizes, fixed ViT sizes)
    and checks the logits come back at the input size.

    Raises:
        ParamsError: names the size, the rule, and the fix (the preprocess image size).
    """
    multiple = input_size_multiple(model)
    fix = "set preprocess.param.image_width/image_height accordingly and run preprocess again"
    if height % multiple or width % multiple:
        up = (-(-height // multiple) * multiple, -(-width // multiple) * multiple)
        raise ParamsError(
            f"input size {width}x{height} (width x height) does not fit the model: height and "
            f"width must be multiples of {multiple}, e.g. {up[1]}x{up[0]}; {fix}"
        )
    was_training = model.training
    model.eval()
    try:
        param = next(model.parameters())
        x = torch.zeros(1, in_channels, height, width, dtype=param.dtype, device=param.device)
        with torch.no_grad():
            out = model(x)
    except (RuntimeError, AssertionError, ValueError) as err:
        raise ParamsError(
            f"input size {width}x{height} with {in_channels} channels does not fit the model "
            f"({str(err).splitlines()[0]}); {fix}"
        ) from None
    finally:
        model.train(was_training)
    if tuple(out.shape[-2:]) != (height, width):
        raise ParamsError(
            f"the model's output {tuple(out.shape[-2:])} differs from its input size "
            f"{(height, width)}; choose another architecture or input size"
        )
