"""The planner's choices on small hand-made fingerprints, checked against values computed
by hand from the rules' stated constants (input pixels per sample, 2 px defects, 5 %
reserve and 15 s start-up, evaluations at most a tenth of the time and 50 in all)."""

from __future__ import annotations

import math

import pytest

from segcore.common.errors import ParamsError
from segcore.params import Params
from segcore.train.plan import (
    ClassFingerprint,
    DatasetFingerprint,
    Machine,
    StepCost,
    component_sizes,
    plan_training,
)

CPU = Machine(device="cpu", cpu_cores=2)
GPU = Machine(device="cuda:0", cpu_cores=16, gpu_name="test GPU", gpu_memory_gb=80.0)
ALL = None  # every key supported (the version the plan is written for)


def _fp(
    size: tuple[int, int],
    defects: list[tuple[str, float, float | None, float | None]],
    splits: tuple[int, int, int] = (100, 20, 20),
) -> DatasetFingerprint:
    """A fingerprint: background plus ``(name, pixel fraction, median width, median area)``."""
    train = splits[0]
    total = size[0] * size[1] * train
    bg_fraction = 1.0 - sum(d[1] for d in defects)
    classes = [ClassFingerprint(0, "good", round(bg_fraction * total), bg_fraction, train)]
    for i, (name, fraction, width, area) in enumerate(defects, start=1):
        classes.append(
            ClassFingerprint(
                i, name, round(fraction * total), fraction, train // 2, 10, area, width, area
            )
        )
    return DatasetFingerprint(
        num_samples=sum(splits),
        split_counts={"train": splits[0], "validation": splits[1], "test": splits[2]},
        width=size[0],
        height=size[1],
        min_side=min(size),
        max_side=max(size),
        same_size=True,
        channels=3,
        background_id=0,
        classes=classes,
    )


def _fixed(seconds: float, bytes_per_sample: float | None = None):
    """This machine's measured cost, given by the test instead of measured."""
    calls: list[tuple[int, int, int]] = []

    def measure(height: int, width: int, batch: int) -> StepCost:
        calls.append((height, width, batch))
        return StepCost(seconds, bytes_per_sample, steps=2, batch=batch)

    measure.calls = calls  # type: ignore[attr-defined]
    return measure


def _plan(fp, budget=600.0, seconds=0.1, machine=CPU, supported=ALL, multiple=16, **kw):
    return plan_training(
        fp,
        machine,
        budget,
        _fixed(seconds, kw.get("bytes_per_sample")),
        Params(),
        multiple=multiple,
        supported=supported,
    ).values()


def test_pill_like_images_are_resized_and_the_epochs_fill_the_budget() -> None:
    fp = _fp((256, 256), [("contamination", 0.002, 5.0, 64.0), ("crack", 0.002, 3.0, 300.0)])
    v = _plan(fp, budget=600.0, seconds=0.1)
    assert v["preprocess.param.mode"] == "resize"
    assert v["preprocess.param.scale"] == 1.0  # resize mode keeps no scale
    assert (v["preprocess.param.image_width"], v["preprocess.param.image_height"]) == (256, 256)
    assert v["train.batch_size"] == 4  # 4 samples of 256^2 on a CPU
    # An epoch: 100 x 0.1 s = 10 s; an evaluation 20 x 0.1 x 0.35 = 0.7 s (< a tenth: every
    # epoch). 600 x 0.95 - 15 = 555 s hold floor(555 / 10.7) = 51 epochs: 51 evaluations
    # are above 50, so every 2 epochs: floor(555 / 10.35) = 53 epochs, 26 evaluations.
    assert v["train.num_epochs"] == 53
    assert v["train.evaluation_interval_epochs"] == 2.0
    assert v["train.early_stopping_patience"] == 5  # max(5, round(26 / 5))
    assert v["train.time_budget"] == 600
    # Background 0.996: w = 1/(0.002 + 1e-4) / (1/(0.996 + 1e-4)) = 474.3; sqrt / 2 = 10.9.
    assert v["preprocess.class_weights.max_weight"] == 10.9
    assert v["train.loss"] == "ce+dice"  # 0.2 % < 5 %
    assert v["train.augmentation.rotate"] == 90  # square input
    assert v["train.lr_schedule"] == "poly"
    assert v["train.warmup_epochs"] == 2.65  # min(5, max(1, 0.05 x 53), 5.3)
    assert v["train.change_strategies"] == []  # the demo's lr drop at epoch 11 goes
    assert "train.foreground_share" not in v  # resize mode samples whole images


def test_a_huge_image_with_thin_defects_is_tiled_at_native_resolution() -> None:
    fp = _fp((4096, 3072), [("scratch", 0.0005, 3.0, 30.0)], splits=(40, 10, 10))
    v = _plan(fp, budget=3600.0, seconds=0.1)
    # Resized to 256^2 the factor is sqrt(65536 / 12.6 M) = 0.072: 3 px -> 0.2 px. Keeping
    # 2 px needs factor 2/3: 5.6 M pixels, far above 2 x 65536: tiles.
    assert v["preprocess.param.mode"] == "tiled"
    assert v["preprocess.param.scale"] == 1.0  # 3 px wide needs the native size
    assert (v["preprocess.param.image_width"], v["preprocess.param.image_height"]) == (256, 256)
    assert v["train.foreground_share"] == 0.5  # 0.05 % of the pixels: very rare
    assert v["train.augmentation.rotate"] == 90  # square tiles
    # An epoch: 16 x 12 = 192 tiles cover an image, 40 x 192 x 0.1 s = 768 s; an
    # evaluation 10 x 192 x 0.1 x 0.35 = 67.2 s (under a tenth: every epoch);
    # 3600 x 0.95 - 15 = 3405 s hold floor(3405 / 835.2) = 4 epochs, too few to stop early.
    assert v["train.num_epochs"] == 4
    assert v["train.evaluation_interval_epochs"] == 1.0
    assert v["train.early_stopping_patience"] is None


def test_big_defects_on_a_huge_image_are_resized_keeping_the_aspect_ratio() -> None:
    fp = _fp((4096, 3072), [("stain", 0.08, 400.0, 200_000.0)])
    v = _plan(fp, seconds=0.1)
    # factor sqrt(65536 / (4096 x 3072)) = 0.0722: 4096 -> 295.6 -> 288, 3072 -> 221.7 -> 224.
    assert v["preprocess.param.mode"] == "resize"
    assert (v["preprocess.param.image_width"], v["preprocess.param.image_height"]) == (288, 224)
    assert v["train.augmentation.rotate"] == 180  # not square: 90 would change the shape
    assert v["train.loss"] == "ce"  # 8 % is not rare


def test_a_tiny_defect_on_a_moderate_image_gets_a_larger_resize_instead_of_tiles() -> None:
    fp = _fp((480, 320), [("crack", 0.015, 3.0, 250.0)])
    v = _plan(fp, seconds=0.1)
    # At 256^2 (factor 0.653) the crack is 1.96 px wide; factor 2/3 keeps 2 px with
    # 68,267 pixels (<= 2 x 65536): 480 x 2/3 = 320, 320 x 2/3 = 213.3 -> 224 (up to 16).
    assert v["preprocess.param.mode"] == "resize"
    assert (v["preprocess.param.image_width"], v["preprocess.param.image_height"]) == (320, 224)


def test_a_one_pixel_defect_is_tiled_even_on_a_small_image() -> None:
    fp = _fp((1024, 1024), [("pit", 0.0001, 1.0, 2.0)])
    v = _plan(fp, budget=3600.0, seconds=0.05)
    assert v["preprocess.param.mode"] == "tiled"
    assert v["preprocess.param.scale"] == 1.0
    assert (v["preprocess.param.image_width"], v["preprocess.param.image_height"]) == (256, 256)


def test_very_few_samples_get_small_batches_more_augmentation_and_no_early_stop() -> None:
    fp = _fp((256, 256), [("dent", 0.01, 6.0, 80.0)], splits=(6, 0, 2))
    v = _plan(fp, budget=120.0, seconds=0.1)
    assert v["train.batch_size"] == 2  # not 4: an epoch of 6 samples keeps 3 updates
    assert v["train.augmentation.augmentation_percentage"] == 75.0
    assert v["train.early_stopping_patience"] is None  # no validation split
    # 6 x 0.1 = 0.6 s per epoch, no evaluation: 120 x 0.95 - 15 = 99 s hold 165 epochs.
    assert v["train.num_epochs"] == 165


def test_the_epochs_are_capped_and_a_long_run_stops_early() -> None:
    fp = _fp((256, 256), [("dent", 0.01, 6.0, 80.0)], splits=(10, 5, 5))
    v = _plan(fp, budget=36_000.0, seconds=0.01)
    # An epoch 10 x 0.01 = 0.1 s, an evaluation 5 x 0.01 x 0.35 = 0.0175 s: every
    # ceil(0.0175 / 0.01) = 2 epochs; 34,185 s hold far more than 300 epochs: capped; 150
    # evaluations are above 50: every 6 epochs, 50 evaluations, patience a fifth.
    assert v["train.num_epochs"] == 300
    assert v["train.evaluation_interval_epochs"] == 6.0
    assert v["train.early_stopping_patience"] == 10


def test_a_budget_shorter_than_one_epoch_is_refused_with_the_budget_it_needs() -> None:
    fp = _fp((256, 256), [("dent", 0.01, 6.0, 80.0)])
    with pytest.raises(ParamsError) as err:
        _plan(fp, budget=60.0, seconds=1.0)
    # 100 s of training + 20 x 0.35 s of evaluation + 15 s start-up, over 0.95: 128.4 s.
    assert "--budget 60 s is too short for one epoch" in str(err.value)
    assert "give --budget 129 or more" in str(err.value)
    assert "1000 ms per sample at batch 4" in str(err.value)  # probed at the planned batch


def test_on_a_gpu_the_batch_fills_half_the_memory_at_most_32() -> None:
    fp = _fp((1024, 1024), [("stain", 0.1, 50.0, 5000.0)], splits=(400, 50, 50))
    measure = _fixed(0.01, bytes_per_sample=3 * 2**30)
    plan = plan_training(fp, GPU, 3600.0, measure, Params(), multiple=32, supported=ALL)
    v = plan.values()
    assert (v["preprocess.param.image_width"], v["preprocess.param.image_height"]) == (512, 512)
    assert v["train.batch_size"] == 8  # 40 GiB / 3 GiB = 13.3 -> the power of two below
    assert measure.calls == [(512, 512, 2), (512, 512, 8)]  # probed, then timed at 8
    small = _fixed(0.01, bytes_per_sample=2**28)
    v = plan_training(fp, GPU, 3600.0, small, Params(), multiple=32).values()
    assert v["train.batch_size"] == 32


def test_without_the_schedule_keys_the_learning_rate_drops_by_a_change_strategy() -> None:
    fp = _fp((256, 256), [("dent", 0.01, 6.0, 80.0)])
    v = _plan(fp, budget=600.0, seconds=0.1, supported={"train.num_epochs"})
    epochs = v["train.num_epochs"]
    assert "train.lr_schedule" not in v
    strategy = v["train.change_strategies"]
    assert strategy == [
        {"model_param": "learning_rate", "epochs": [float(round(0.8 * epochs))], "values": [3e-4]}
    ]


def test_component_sizes_measure_area_and_width_at_the_thickest_point() -> None:
    import numpy as np

    mask = np.zeros((30, 40), bool)
    mask[2, 5:15] = True  # a 1 px line: area 10, width 1
    mask[10:13, 2:30] = True  # a 3 px bar: area 84, width 3
    mask[20:25, 30:35] = True  # a 5 x 5 square: width 5
    mask[0:3, 36:40] = True  # 3 px at the image border: the border is outside
    areas, widths = component_sizes(mask)
    assert sorted(zip(areas, widths, strict=True)) == [
        (10.0, 1.0),
        (12.0, 3.0),
        (25.0, 5.0),
        (84.0, 3.0),
    ]
    assert component_sizes(np.zeros((4, 4), bool)) == ([], [])
    assert math.isclose(sum(areas), mask.sum())


def test_given_class_weights_are_not_capped() -> None:
    from segcore.params import ClassWeightParams, PreprocessStageParams

    fp = _fp((256, 256), [("dent", 0.001, 6.0, 80.0)])
    weights = PreprocessStageParams(class_weights=ClassWeightParams(weights=[1.0, 5.0]))
    params = Params(preprocess=weights)
    v = plan_training(fp, CPU, 600.0, _fixed(0.1), params, multiple=16).values()
    assert "preprocess.class_weights.max_weight" not in v
    v = plan_training(fp, CPU, 600.0, _fixed(0.1), Params(), multiple=16).values()
    # 1 / (0.001 + 1e-4) / (1 / (0.999 + 1e-4)) = 908.3: half its square root is 15.1.
    assert v["preprocess.class_weights.max_weight"] == 15.1


def test_the_diff_tells_changed_same_and_unsupported_keys_apart() -> None:
    from segcore.pipeline.stage_plan import CHANGE, SAME, UNSUPPORTED, diff_plan, lookup
    from segcore.train.plan import Choice, Plan

    params = Params()
    plan = Plan(
        [
            Choice("a", {"train.batch_size": 8, "train.num_epochs": 15}, "why"),
            Choice("b", {"train.no_such_key": 1, "preprocess.param.no_such": 2}, "why"),
            Choice("c", {"train.augmentation.rotate": 90, "register.model_name": "x"}, "why"),
        ],
        budget=60.0,
        cost=StepCost(0.1),
        epoch_seconds=1.0,
    )
    status = {d.key: (d.status, d.current) for d in diff_plan(params, plan)}
    assert status == {
        "train.batch_size": (CHANGE, 4),
        "train.num_epochs": (SAME, 15),
        "train.no_such_key": (UNSUPPORTED, None),
        "preprocess.param.no_such": (UNSUPPORTED, None),
        "train.augmentation.rotate": (SAME, 90),
        "register.model_name": (CHANGE, "segcore-pills"),  # the section's alias
    }
    assert lookup(params, "train.batch_size.deeper") == (False, None)


def test_the_budget_defaults_to_the_time_budget_key_else_half_an_hour() -> None:
    from segcore.pipeline.stage_plan import DEFAULT_BUDGET, plan_budget

    assert DEFAULT_BUDGET == 1800.0
    assert plan_budget(Params(), 60.0) == 60.0
    assert plan_budget(Params(), None) == 1800.0  # train.time_budget unset (or not known)


def test_tiles_are_never_larger_than_the_smallest_image() -> None:
    from dataclasses import replace

    fp = _fp((4096, 3072), [("scratch", 0.0005, 3.0, 30.0)], splits=(40, 10, 10))
    fp = replace(fp, min_side=200, same_size=False)  # some images are only 200 px high
    v = _plan(fp, budget=3600.0, seconds=0.1)
    assert v["preprocess.param.mode"] == "tiled"
    assert (v["preprocess.param.image_width"], v["preprocess.param.image_height"]) == (192, 192)


def test_the_machine_is_measured_with_real_training_steps() -> None:
    import torch

    from segcore.params import TrainParams
    from segcore.train.plan import detect_machine, measure_step
    from segcore.train.plan.machine import model_multiple

    machine = detect_machine("cpu")
    assert machine.device == "cpu" and machine.cpu_cores >= 1 and not machine.is_cuda
    params = TrainParams(model_kwargs={"base_channels": 4, "depth": 2})
    threads = torch.get_num_threads()
    cost = measure_step(
        params.model_copy(update={"num_threads": 1}),
        machine,
        num_classes=3,
        channels=3,
        height=32,
        width=32,
        batch=2,
        seconds=0.0,
    )
    assert cost.steps == 3  # at least three timed steps, even with no time to spend
    assert 0 < cost.seconds_per_sample < 5 and cost.bytes_per_sample is None
    assert torch.get_num_threads() == threads  # num_threads applies to the probe only
    assert model_multiple(params, 3, 3) == 4  # two halvings
    assert model_multiple(TrainParams(), 3, 3) == 16  # the compact default: four
    if not torch.cuda.is_available():
        with pytest.raises(ParamsError, match="CUDA is not available"):
            detect_machine("cuda")
