"""Every model name: forward/backward, output shape, bundle round trip; factory errors."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch
from safetensors.torch import save_file

from segcore.common.constants import BUNDLE_CONFIG, BUNDLE_WEIGHTS
from segcore.common.errors import ParamsError
from segcore.model.bundle import (
    BundleConfig,
    BundleError,
    load_bundle,
    read_bundle_config,
    save_bundle,
)
from segcore.model.factory import (
    MODEL_NAMES,
    architecture,
    check_input_size,
    create_from_architecture,
    create_model,
    input_size_multiple,
    model_names,
)
from segcore.model.outputs import mask_ignored_logits
from segcore.params import PreprocessParams
from segcore.train.checkpoint import load_checkpoint, save_checkpoint

SMALL_ENCODER = "tu-mobilenetv3_small_050"
"""A small timm encoder (random weights): keeps the smp architectures quick on the CPU."""

SMALL: dict[str, dict[str, Any]] = {
    "compact": {"base_channels": 8, "depth": 3},
    "enhanced": {"base_channels": 8},
    "unet": {"decoder_channels": (16, 16, 8, 8, 8)},
    "unetplusplus": {"decoder_channels": (16, 16, 8, 8, 8)},
    "manet": {"decoder_channels": (16, 16, 8, 8, 8), "decoder_pab_channels": 8},
    "linknet": {},
    "fpn": {"decoder_pyramid_channels": 32, "decoder_segmentation_channels": 32},
    "pspnet": {"psp_out_channels": 16},
    "deeplabv3": {"decoder_channels": 16},
    "deeplabv3plus": {"decoder_channels": 16},
    "pan": {"decoder_channels": 16},
    "upernet": {"decoder_channels": 16},
    "segformer": {"decoder_segmentation_channels": 16},
    "dpt": {
        "decoder_intermediate_channels": (16, 16, 16, 16),
        "decoder_fusion_channels": 16,
        "decoder_readout": "ignore",
        "img_size": 32,
    },
}
"""Narrow decoders per architecture; every name must appear (the base test covers all)."""


def _encoder(name: str) -> str | None:
    if name in ("compact", "enhanced"):
        return None
    return "tu-vit_tiny_patch16_224" if name == "dpt" else SMALL_ENCODER


def _size(name: str) -> int:
    # The smallest inputs they take: PAN's pyramid pooling needs 128 px, FPN's group
    # norm more than one pixel per group at stride 32.
    return {"pan": 128, "fpn": 64}.get(name, 32)


def test_every_listed_name_is_tested_and_valid() -> None:
    assert list(MODEL_NAMES) == model_names()
    assert set(SMALL) == set(MODEL_NAMES)


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_model_forward_backward_shape_and_bundle_round_trip(name: str, tmp_path: Path) -> None:
    torch.manual_seed(0)
    kwargs = SMALL[name]
    model = create_model(name, 3, 3, encoder=_encoder(name), **kwargs)
    size = _size(name)
    check_input_size(model, size, size, 3)
    assert size % input_size_multiple(model) == 0
    x = torch.randn(2, 3, size, size)
    logits = model(x)
    assert logits.shape == (2, 3, size, size) and logits.dtype == torch.float32
    logits.logsumexp(1).mean().backward()
    # Gradients reach the first and the last layer and are finite (PSPNet leaves deep
    # encoder stages unused, so not every parameter gets one).
    params = list(model.parameters())
    assert params[0].grad is not None and params[-1].grad is not None
    assert all(torch.isfinite(p.grad).all() for p in params if p.grad is not None)

    arch = architecture(name, 3, 3, encoder=_encoder(name), **kwargs)
    config = BundleConfig(
        architecture=arch,
        class_ids=[0, 1, 7],
        class_names=["good", "dirt", "crack"],
        ignore_class_ids=[1],
        preprocess_param=PreprocessParams(image_width=size, image_height=size).model_dump(),
        training_summary={"epoch": 3},
    )
    bundle = save_bundle(tmp_path / "bundle", model, config)
    assert sorted(p.name for p in bundle.iterdir()) == sorted([BUNDLE_CONFIG, BUNDLE_WEIGHTS])
    loaded, loaded_config = load_bundle(bundle)
    assert not loaded.training
    assert json.loads(json.dumps(loaded_config.architecture)) == json.loads(json.dumps(arch))
    assert loaded_config.class_ids == [0, 1, 7] and loaded_config.ignore_class_ids == [1]
    model.eval()
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), model(x))
    for key, value in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], value), key


def test_unknown_model_lists_the_valid_names() -> None:
    with pytest.raises(ParamsError) as err:
        create_model("unte", 3)
    assert "unknown model 'unte'" in str(err.value)
    for name in ("compact", "enhanced", "unet", "deeplabv3plus"):
        assert name in str(err.value)


def test_unknown_encoder_and_bad_arguments_are_params_errors() -> None:
    with pytest.raises(ParamsError, match=r"unknown encoder 'resnet999'.*resnet18"):
        create_model("unet", 3, encoder="resnet999")
    with pytest.raises(ParamsError, match=r"does not take 'widht'.*base_channels"):
        create_model("compact", 3, widht=3)
    with pytest.raises(ParamsError, match="no separate encoder"):
        create_model("compact", 3, encoder="resnet18")


def test_smp_architectures_default_to_random_encoder_weights_and_resolve_the_encoder() -> None:
    arch = architecture("Unet", 2, 1)
    assert arch["name"] == "unet" and arch["encoder"] == "resnet34"
    assert architecture("compact", 2)["kwargs"] == {
        "base_channels": 16,
        "depth": 4,
        "norm": "batch",
    }
    assert create_from_architecture(architecture("compact", 2, 1, depth=2)).depth == 2


def test_local_encoder_weights_are_loaded_and_wrong_ones_rejected(tmp_path: Path) -> None:
    torch.manual_seed(1)
    source = create_model("linknet", 2, encoder=SMALL_ENCODER)
    path = tmp_path / "encoder.safetensors"
    save_file({k: v.contiguous() for k, v in source.encoder.state_dict().items()}, str(path))
    torch.manual_seed(2)
    model = create_model("linknet", 2, encoder=SMALL_ENCODER, encoder_weights=str(path))
    for key, value in source.encoder.state_dict().items():
        assert torch.equal(model.encoder.state_dict()[key], value)
    with pytest.raises(ParamsError, match="does not fit the encoder"):
        create_model("linknet", 2, encoder="resnet18", encoder_weights=str(path))
    with pytest.raises(ParamsError, match="not found; give a local weights file"):
        create_model("linknet", 2, encoder=SMALL_ENCODER, encoder_weights="nope.pth")


def test_input_size_check_names_the_multiple_and_the_fix() -> None:
    model = create_model("compact", 3, depth=3)
    check_input_size(model, 64, 40, 3)
    with pytest.raises(ParamsError, match=r"multiples of 8, e.g. 72x64.*image_width"):
        check_input_size(model, 64, 66, 3)
    pan = create_model("pan", 3, encoder=SMALL_ENCODER, decoder_channels=16)
    with pytest.raises(ParamsError, match="does not fit the model"):
        check_input_size(pan, 32, 32, 3)
    with pytest.raises(ParamsError, match="3 channels"):
        check_input_size(create_model("compact", 3, in_channels=1), 32, 32, 3)


def test_ignored_classes_are_never_predicted() -> None:
    logits = torch.zeros(1, 3, 2, 2)
    logits[:, 1] = 10.0  # the ignore class would win everywhere
    config = BundleConfig({}, [0, 5, 9], ["a", "b", "c"], [5], {})
    masked = mask_ignored_logits(logits, config)
    assert (masked.argmax(1) != 1).all()
    assert torch.equal(mask_ignored_logits(logits, [1]), masked)
    assert mask_ignored_logits(logits, []) is logits
    assert torch.isfinite(torch.softmax(masked, 1)).all()


def _bundle(tmp_path: Path) -> Path:
    model = create_model("compact", 2, base_channels=4, depth=1)
    config = BundleConfig(
        architecture("compact", 2, base_channels=4, depth=1),
        [0, 1],
        ["a", "b"],
        [],
        PreprocessParams().model_dump(),
    )
    return save_bundle(tmp_path / "b", model, config)


def test_bundle_errors_name_the_file_and_the_fix(tmp_path: Path) -> None:
    with pytest.raises(BundleError, match="not a model bundle"):
        load_bundle(tmp_path / "missing")
    bundle = _bundle(tmp_path)
    (bundle / BUNDLE_WEIGHTS).write_bytes(b"garbage")
    with pytest.raises(BundleError, match="not readable safetensors"):
        load_bundle(bundle)
    bundle = _bundle(tmp_path)
    meta = json.loads((bundle / BUNDLE_CONFIG).read_text())
    meta["architecture"]["kwargs"]["base_channels"] = 8
    (bundle / BUNDLE_CONFIG).write_text(json.dumps(meta))
    with pytest.raises(BundleError, match="do not fit the architecture"):
        load_bundle(bundle)
    (bundle / BUNDLE_CONFIG).write_text("{not json")
    with pytest.raises(BundleError, match="not readable JSON"):
        read_bundle_config(bundle)


def test_saving_replaces_a_bundle_whole(tmp_path: Path) -> None:
    bundle = _bundle(tmp_path)
    (bundle / "model.onnx").write_bytes(b"stale export of the old weights")
    _bundle(tmp_path)
    assert sorted(p.name for p in bundle.iterdir()) == [BUNDLE_CONFIG, BUNDLE_WEIGHTS]
    assert [p.name for p in tmp_path.iterdir()] == ["b"]  # no temporary leftovers


def test_file_formats_stay_readable_by_earlier_and_later_versions(tmp_path: Path) -> None:
    """The format tags are a contract with files already on disk: bundles and checkpoints
    written before must load, and new ones must carry the same tags."""
    bundle = _bundle(tmp_path)
    meta = json.loads((bundle / BUNDLE_CONFIG).read_text())
    assert meta["format"] == "segcore.bundle/1"
    meta["format"] = "segcore.bundle/1"  # as every earlier version wrote it
    (bundle / BUNDLE_CONFIG).write_text(json.dumps(meta))
    assert read_bundle_config(bundle).class_ids == meta["class_ids"]
    path = tmp_path / "checkpoint.pt"
    save_checkpoint(path, {"epoch": 1})
    assert torch.load(path, weights_only=True)["format"] == "segcore.checkpoint/1"
    assert load_checkpoint(path)["epoch"] == 1


def test_enhanced_is_deeper_and_wider_than_compact_with_residual_blocks() -> None:
    from segcore.model.compact import ResBlock

    compact, enhanced = (create_model(n, 3, 3) for n in ("compact", "enhanced"))
    assert enhanced.depth > compact.depth and input_size_multiple(enhanced) == 32
    widths = [m.out_channels for m in (compact.head, enhanced.head)]  # full resolution
    assert widths == [3, 3]
    first = [net.encoder[0] for net in (compact, enhanced)]
    assert first[1].body[0].out_channels == 2 * first[0][0].out_channels
    assert all(isinstance(block, ResBlock) for block in enhanced.encoder)
    params = [sum(p.numel() for p in net.parameters()) for net in (compact, enhanced)]
    assert params[1] > 10 * params[0]
    assert architecture("enhanced", 3, 3)["kwargs"]["residual"] is True
    torch.manual_seed(0)
    x = torch.randn(1, 3, 64, 64)
    enhanced.eval()
    with torch.no_grad():
        assert enhanced(x).shape == (1, 3, 64, 64)
