"""Precision plumbing (any CPU): what each precision resolves to, activations in bf16 under
autocast while weights, gradients, optimizer state and loss stay float32, and bf16 inference."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from pydantic import ValidationError

from segcore.common.errors import ParamsError
from segcore.common.precision import EmulatedPrecisionWarning, native_bf16, resolve_precision
from segcore.infer.apply import SegModel, load_model
from segcore.model.factory import create_model
from segcore.params import InferParams, TrainParams
from segcore.train.amp import backward, forward, optimizer_step
from segcore.train.loss import weighted_cross_entropy
from tests.helpers.models import make_config

CPU = torch.device("cpu")


def _flags() -> set[str]:
    text = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").is_file() else ""
    line = next((ln for ln in text.splitlines() if ln.startswith("flags")), "")
    return set(line.partition(":")[2].split())


def _bf16(device: torch.device = CPU, key: str = "train.precision"):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", EmulatedPrecisionWarning)
        return resolve_precision("bf16", device, key)


def test_auto_follows_the_cpu_flags_and_fp32_is_plain() -> None:
    has = bool(_flags() & {"amx_bf16", "avx512_bf16"})
    assert native_bf16(CPU) is has
    auto = resolve_precision("auto", CPU)
    assert (auto.name, auto.asked, auto.mixed) == (
        ("bf16", "auto", True) if has else ("fp32", "auto", False)
    )
    fp32 = resolve_precision("fp32", CPU)
    assert not fp32.mixed and fp32.dtype == torch.float32 and fp32.grad_scaler() is None
    assert "auto" in auto.describe()


def test_bad_precisions_are_clear_errors() -> None:
    with pytest.raises(ParamsError, match=r"infer.precision: fp16 needs a CUDA device.*bf16.*auto"):
        resolve_precision("fp16", CPU, key="infer.precision")
    with pytest.raises(ParamsError, match=r"unknown 'fp8'.*fp32, bf16, fp16, auto"):
        resolve_precision("fp8", CPU)
    # Checked before any bundle is read.
    with pytest.raises(ParamsError, match=r"infer.precision: fp16 needs a CUDA device"):
        load_model("no-bundle", device="cpu", precision="fp16")
    with pytest.raises(ParamsError, match=r"bf16 runs the torch backend only.*--quantize int8"):
        load_model("no-bundle", device="cpu", backend="onnx", precision="bf16")
    with pytest.raises(ValidationError, match="precision"):
        TrainParams(precision="fp64")
    with pytest.raises(ValidationError, match="precision"):
        InferParams(precision="int8")


@pytest.mark.skipif(native_bf16(CPU), reason="this CPU has native bf16")
def test_bf16_on_a_cpu_without_it_runs_with_a_warning_naming_auto() -> None:
    with pytest.warns(EmulatedPrecisionWarning, match="emulated.*use auto"):
        resolved = resolve_precision("bf16", CPU)
    assert resolved.name == "bf16" and not resolved.native and resolved.mixed


@pytest.mark.skipif(not native_bf16(CPU), reason="this CPU has no native bf16")
def test_bf16_on_a_cpu_with_it_is_native_and_quiet() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert resolve_precision("bf16", CPU).native


def _tiny_net() -> torch.nn.Module:
    torch.manual_seed(0)
    return create_model("compact", 3, 3, base_channels=4, depth=2)


def test_bf16_training_step_keeps_fp32_master_weights_state_and_loss() -> None:
    net, precision = _tiny_net(), _bf16()
    seen: list[torch.dtype] = []
    convs = [m for m in net.modules() if isinstance(m, torch.nn.Conv2d)]
    for conv in convs:
        conv.register_forward_hook(lambda _m, _i, out: seen.append(out.dtype))
    optimizer = torch.optim.Adam(net.parameters(), lr=1e-3)
    x = torch.randn(2, 3, 32, 32)
    y = torch.randint(0, 3, (2, 32, 32))
    logits = forward(net, x, precision)
    assert seen and set(seen) == {torch.bfloat16}  # the convolutions ran in bf16
    assert logits.dtype == torch.float32
    loss = weighted_cross_entropy(logits, y, torch.ones(2, 32, 32))
    assert loss.dtype == torch.float32
    backward(loss, None)
    assert all(p.grad is not None and p.grad.dtype == torch.float32 for p in net.parameters())
    before = [p.detach().clone() for p in net.parameters()]
    optimizer_step(optimizer, None)
    assert all(p.dtype == torch.float32 for p in net.parameters())
    assert any(not torch.equal(b, p) for b, p in zip(before, net.parameters(), strict=True))
    state = [t for s in optimizer.state.values() for t in s.values() if t.is_floating_point()]
    assert state and all(t.dtype == torch.float32 for t in state if t.dim())
    assert all(p.grad is None for p in net.parameters())  # zeroed for the next update

    seen.clear()
    forward(net, x, resolve_precision("fp32", CPU))
    assert set(seen) == {torch.float32}


def test_bf16_inference_gives_float32_probabilities_close_to_fp32() -> None:
    net = _tiny_net()
    config = make_config(class_ids=[0, 1, 2], class_names=["a", "b", "c"], ignore_class_ids=[])
    batch = np.random.default_rng(0).normal(0, 1, (2, 3, 32, 32)).astype(np.float32)
    fp32 = SegModel(net, config).probabilities(batch)
    bf16 = SegModel(net, config, precision=_bf16(key="infer.precision")).probabilities(batch)
    assert bf16.dtype == np.float32 and bf16.shape == fp32.shape == (2, 3, 32, 32)
    assert np.allclose(bf16.sum(axis=1), 1.0, atol=1e-5)
    diff = np.abs(bf16 - fp32).max()
    assert 1e-4 < diff < 0.05  # bf16 rounding (8 bits of mantissa): not identical, yet close
