"""Encoder weights by name (``train.encoder_weights: imagenet``): read from the Hugging Face
cache, never downloaded in a test; offline and not cached, a clear error before training."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from huggingface_hub import constants
from safetensors.torch import save_file

from segcore.common.errors import ParamsError
from segcore.model.factory import create_model
from segcore.model.pretrained import is_weights_file, weight_names

REPO = "smp-hub/resnet18.imagenet"
REVISION = "3f2325ff978283d47aa6a1d6878ca20565622683"
"""Where smp 0.6 keeps resnet18's ImageNet weights (its pretrained_settings)."""
SMALL = {"decoder_channels": (16, 16, 8, 8, 8)}
"""A narrow decoder: the encoder is what the tests look at."""


@pytest.fixture
def hub_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty Hugging Face cache, the client offline, and no proxy."""
    cache = tmp_path / "hub"
    cache.mkdir()
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    for name in ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy", "ALL_PROXY"):
        monkeypatch.delenv(name, raising=False)
    return cache


def _cache_weights(cache: Path) -> dict[str, torch.Tensor]:
    """Put resnet18 encoder weights where the cache keeps smp's `imagenet` files."""
    torch.manual_seed(5)
    state = create_model("unet", 2, encoder="resnet18", **SMALL).encoder.state_dict()
    snapshot = cache / f"models--{REPO.replace('/', '--')}" / "snapshots" / REVISION
    snapshot.mkdir(parents=True)
    save_file({k: v.contiguous() for k, v in state.items()}, str(snapshot / "model.safetensors"))
    (snapshot / "config.json").write_text('{"mean": [0.485, 0.456, 0.406], "std": [1, 1, 1]}')
    return state


def test_cached_named_weights_load_offline_and_adapt_to_grey_inputs(hub_cache: Path) -> None:
    state = _cache_weights(hub_cache)
    torch.manual_seed(6)
    model = create_model("unet", 2, encoder="resnet18", encoder_weights="imagenet", **SMALL)
    for key, value in state.items():
        assert torch.equal(model.encoder.state_dict()[key], value), key
    grey = create_model("unet", 2, 1, encoder="resnet18", encoder_weights="imagenet", **SMALL)
    # smp folds the RGB filters of the first convolution into one grey channel.
    torch.testing.assert_close(
        grey.encoder.conv1.weight, state["conv1.weight"].sum(1, keepdim=True)
    )


def test_offline_without_cached_weights_fails_saying_how_to_give_a_file(hub_cache: Path) -> None:
    with pytest.raises(ParamsError) as err:
        create_model("unet", 2, encoder="resnet18", encoder_weights="imagenet")
    text = str(err.value)
    for part in (
        "train.encoder_weights 'imagenet'",
        "not in the Hugging Face cache and cannot be downloaded (HF_HUB_OFFLINE is set)",
        f"model.safetensors of the Hugging Face repository {REPO}",
        "set train.encoder_weights to its path",
    ):
        assert part in text, part
    assert not any(hub_cache.iterdir())  # nothing half-downloaded


def test_an_unreachable_hub_fails_at_once(hub_cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Not declared offline, but nothing listens where the Hub should be: one refused
    connection, no retries."""
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(constants, "ENDPOINT", "http://127.0.0.1:9")
    with pytest.raises(ParamsError, match=r"127\.0\.0\.1:9 cannot be reached"):
        create_model("unet", 2, encoder="resnet18", encoder_weights="imagenet")


def test_a_name_smp_does_not_know_for_the_encoder_lists_its_names(hub_cache: Path) -> None:
    assert weight_names("resnet18") == ["imagenet", "ssl", "swsl"]
    with pytest.raises(ParamsError) as err:
        create_model("unet", 2, encoder="resnet18", encoder_weights="noisy-student")
    text = str(err.value)
    assert "train.encoder_weights 'noisy-student'" in text
    assert "names smp knows for it: imagenet, ssl, swsl" in text


def test_files_and_names_are_told_apart(tmp_path: Path) -> None:
    local = tmp_path / "weights"
    local.write_bytes(b"")
    assert is_weights_file(str(local))  # an existing file, whatever its name
    assert is_weights_file("enc.safetensors") and is_weights_file("weights/enc")
    assert not is_weights_file("imagenet") and not is_weights_file("imagenet+5k")


def test_timm_encoders_fail_offline_with_the_same_advice(hub_cache: Path) -> None:
    """``tu-`` encoders take timm's pretrained weights (tag in the encoder name)."""
    with pytest.raises(ParamsError) as err:
        create_model("unet", 2, encoder="tu-mobilenetv3_small_050", encoder_weights="imagenet")
    text = str(err.value)
    assert "encoder 'tu-mobilenetv3_small_050' are not in the Hugging Face cache" in text
    assert "set train.encoder_weights to its path" in text
