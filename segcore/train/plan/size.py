"""Rules for the input and the time: tiling or resizing, input size, batch size, epochs,
evaluation interval, early stopping and the time budget."""

from __future__ import annotations

import math
from typing import Any

from segcore.common.constants import VALIDATION
from segcore.common.errors import ParamsError
from segcore.train.plan.choice import Choice, Geometry, Measure
from segcore.train.plan.fingerprint import DatasetFingerprint
from segcore.train.plan.machine import Machine, StepCost

CPU_INPUT_PIXELS = 256 * 256
"""Network input per sample on a CPU (the compact model trains ~0.1 s per sample there)."""
GPU_INPUT_PIXELS = 512 * 512
"""Network input per sample on a GPU."""
MIN_DEFECT_WIDTH = 2.0
"""A defect narrower than this many pixels at the network's resolution is lost to resizing."""
MIN_DEFECT_AREA = 4.0
"""A defect smaller than this many pixels at the network's resolution is lost too."""
EVAL_COST = 0.35
"""Cost of evaluating a sample relative to training on it (forward only, no update)."""
STARTUP_SECONDS = 15.0
"""Loading the data and building the model, before the first step."""
RESERVE = 0.05
"""Share of the budget kept free for measurement error and writing the bundles."""
MAX_RESIZE_GROWTH = 2.0
"""Resize mode may take an input up to this many times the target pixels to keep defects;
beyond that, tiles are cheaper."""
MAX_EPOCHS = 300
MAX_EVALUATIONS = 50
VERY_RARE_DEFECT = 0.001
"""Below this share, half the training tiles are centred on defects."""


# --------------------------------------------------------------------------- input size


def _round_to(value: float, multiple: int) -> int:
    """``value`` rounded to the nearest multiple of ``multiple`` (at least one multiple)."""
    return max(multiple, round(value / multiple) * multiple)


def _floor_to(value: float, multiple: int) -> int:
    return max(multiple, int(value // multiple) * multiple)


def _lost_defects(fp: DatasetFingerprint, factor: float) -> list[str]:
    """The defect classes whose typical component is lost when images shrink by ``factor``."""
    lost = []
    for c in fp.defects:
        if c.median_width is None or c.median_area is None:
            continue
        width, area = c.median_width * factor, c.median_area * factor**2
        if width < MIN_DEFECT_WIDTH or area < MIN_DEFECT_AREA:
            lost.append(
                f"{c.name} (typically {c.median_width:.0f} px wide, {c.median_area:.0f} px"
                f" -> {width:.2f} px wide, {area:.0f} px)"
            )
    return lost


def _needed_factor(fp: DatasetFingerprint, width: float, area: float) -> float:
    """The smallest factor at which every measured typical defect stays ``width`` px wide
    and ``area`` px large (at most 1)."""
    need = 0.0
    for c in fp.defects:
        if c.median_width is not None and c.median_area is not None:
            need = max(need, width / c.median_width, math.sqrt(area / c.median_area))
    return min(1.0, need)


def choose_geometry(
    fp: DatasetFingerprint, machine: Machine, multiple: int
) -> tuple[Geometry, Choice]:
    """Resize (HALCON's) when the defects survive shrinking the images to the machine's
    input size (or to an input at most ``MAX_RESIZE_GROWTH`` times larger), else tiles at
    native resolution (or at the scale that keeps the defects)."""
    target = GPU_INPUT_PIXELS if machine.is_cuda else CPU_INPUT_PIXELS
    pixels = fp.width * fp.height
    factor = min(1.0, math.sqrt(target / pixels))
    lost = _lost_defects(fp, factor) if factor < 1.0 else []
    size = f"{fp.width}x{fp.height}" + ("" if fp.same_size else " (median; sizes vary)")
    where = f"{int(math.sqrt(target))}^2 px per sample on {'a GPU' if machine.is_cuda else 'a CPU'}"
    if not lost:
        why = f"images are {size}; at {{w}}x{{h}} ({where}, aspect ratio kept) the typical "
        why += f"defects stay at least {MIN_DEFECT_WIDTH:g} px wide"
        why += " (no shrinking needed)" if factor >= 1.0 else ""
        return _resize(fp, factor, multiple, why)
    lost_text = f"resized to {where} (factor {factor:.2f}) these defects would shrink below "
    lost_text += f"{MIN_DEFECT_WIDTH:g} px or {MIN_DEFECT_AREA:g} px: {'; '.join(lost)}"
    need = _needed_factor(fp, MIN_DEFECT_WIDTH, MIN_DEFECT_AREA)
    if need**2 * pixels <= MAX_RESIZE_GROWTH * target:
        why = f"images are {size}; {lost_text}. At {{w}}x{{h}} (factor {need:.2f}, "
        why += f"{need**2 * pixels / target:.1f}x the pixels, aspect ratio kept) they keep it"
        return _resize(fp, need, multiple, why, up=True)
    return _tiled(fp, factor, target, multiple, f"images are {size}; {lost_text}")


def _resize(
    fp: DatasetFingerprint, factor: float, multiple: int, why: str, up: bool = False
) -> tuple[Geometry, Choice]:
    """Resize mode at ``factor`` of the median size, sides multiples of ``multiple``
    (rounded up with ``up``, so no defect ends below the limit)."""
    if up:
        w = max(multiple, math.ceil(fp.width * factor / multiple - 1e-9) * multiple)
        h = max(multiple, math.ceil(fp.height * factor / multiple - 1e-9) * multiple)
    else:
        w, h = _round_to(fp.width * factor, multiple), _round_to(fp.height * factor, multiple)
    values = {
        "preprocess.param.mode": "resize",
        "preprocess.param.scale": 1.0,
        "preprocess.param.image_width": w,
        "preprocess.param.image_height": h,
    }
    why = why.format(w=w, h=h) + f"; sides are multiples of {multiple} for the model"
    return Geometry("resize", w, h, 1.0, 1), Choice("input size", values, why)


def _tiled(
    fp: DatasetFingerprint, factor: float, target: int, multiple: int, why: str
) -> tuple[Geometry, Choice]:
    """Tiled mode: square tiles of the target size (smaller for small images) from images
    at the scale that keeps the defects."""
    scale = _tiled_scale(fp, factor)
    side = _floor_to(math.sqrt(target), multiple)
    sw, sh = fp.width * scale, fp.height * scale
    side = min(side, _floor_to(fp.min_side * scale, multiple))  # no tile beyond an image
    w, h = min(side, _floor_to(sw, multiple)), min(side, _floor_to(sh, multiple))
    tiles = math.ceil(sw / w) * math.ceil(sh / h)  # the grid that covers an image once
    why += (
        f". Tiles of {w}x{h} cut from images at scale {scale:g} keep them ({tiles} tiles cover "
        "an image)"
    )
    values = {
        "preprocess.param.mode": "tiled",
        "preprocess.param.scale": scale,
        "preprocess.param.image_width": w,
        "preprocess.param.image_height": h,
    }
    return Geometry("tiled", w, h, scale, tiles), Choice("input size", values, why)


def _tiled_scale(fp: DatasetFingerprint, factor: float) -> float:
    """The smallest scale (in steps of 0.05) at which every typical defect stays
    ``MIN_DEFECT_WIDTH + 1`` px wide and ``(MIN_DEFECT_WIDTH + 1)^2`` px large; 1.0 at most."""
    need = max(factor, _needed_factor(fp, MIN_DEFECT_WIDTH + 1, (MIN_DEFECT_WIDTH + 1) ** 2))
    return min(1.0, math.ceil(need * 20) / 20)


def choose_foreground_share(fp: DatasetFingerprint) -> Choice:
    """nnU-Net's foreground oversampling: a third of the tiles on defects, half when rare."""
    rarest = fp.defects[0] if fp.defects else None
    very_rare = rarest is not None and rarest.pixel_fraction < VERY_RARE_DEFECT
    share = 0.5 if very_rare else 0.33
    why = (
        f"{share:g} of the training tiles are centred on defect pixels ("
        + (
            f"{rarest.name} is only {100 * rarest.pixel_fraction:.3f}% of the train pixels"
            if very_rare and rarest is not None
            else "nnU-Net's share"
        )
        + "), so random tiles of mostly good surface do not starve the defect classes"
    )
    return Choice("tile sampling", {"train.foreground_share": share}, why)


# --------------------------------------------------------------------------- batch and epochs


def _pow2(value: float) -> int:
    """The power of two nearest to ``value`` (on a log scale), at least 1."""
    return 1 << max(0, round(math.log2(max(value, 1.0))))


def choose_batch(
    machine: Machine, geo: Geometry, units: int, measure: Measure
) -> tuple[int, StepCost, Choice]:
    """CPU: 4 samples of 256^2, fewer for larger inputs (a CPU gains little from larger
    batches, and smaller ones update more often). GPU: as many as half the memory holds,
    measured at batch 2. At most a quarter of an epoch's inputs, so an epoch has several
    updates, but 2 where there are 2 (batch norm learns little from one sample)."""
    pixels = geo.width * geo.height
    per_epoch_cap = max(min(2, units), units // 4)
    if machine.is_cuda:
        probe = measure(geo.height, geo.width, 2)
        assert probe.bytes_per_sample is not None and machine.gpu_memory_gb is not None
        fits = 0.5 * machine.gpu_memory_gb * 2**30 / probe.bytes_per_sample
        batch = min(
            max(2, min(32, 1 << max(0, math.floor(math.log2(max(fits, 1.0)))))), per_epoch_cap
        )
        why = (
            f"half of the GPU's {machine.gpu_memory_gb:.0f} GiB holds about {fits:.0f} samples "
            f"of {geo.width}x{geo.height} (measured {probe.bytes_per_sample / 2**20:.0f} MiB "
            "per sample); at most 32"
        )
    else:
        batch = min(max(2, min(8, _pow2(4 * CPU_INPUT_PIXELS / pixels))), per_epoch_cap)
        why = (
            f"on a CPU a larger batch barely speeds up a step; {_n(batch, 'sample')} of "
            f"{geo.width}x{geo.height} per step"
        )
    if batch == per_epoch_cap and units < 32:
        why += f"; only {_n(units, 'training input')} per epoch, so an epoch has several updates"
    # Measured at the batch that trains: a CPU's time per sample still depends on it.
    cost = measure(geo.height, geo.width, batch)
    why += (
        f". Measured here: {1000 * cost.seconds_per_sample:.0f} ms per sample "
        f"(forward, backward and update, {cost.steps} steps of batch {cost.batch})"
    )
    return batch, cost, Choice("batch size", {"train.batch_size": batch}, why)


def _n(count: int, noun: str) -> str:
    return f"{count} {noun}{'' if count == 1 else 's'}"


def _fits(total: float, each: float) -> int:
    """How many ``each`` fit into ``total`` (a rounding error does not cost one)."""
    return math.floor(total / each + 1e-9)


def _epochs_and_interval(usable: float, train_s: float, eval_s: float) -> tuple[int, int, bool]:
    """Epochs that fit ``usable`` seconds (at most ``MAX_EPOCHS``; ``capped`` says so) and
    the evaluation interval: evaluations take at most a tenth of the training time, there
    are at most ``MAX_EVALUATIONS`` of them and at least one."""
    interval = max(1, math.ceil(eval_s / (0.1 * train_s))) if train_s > 0 else 1
    epochs = _fits(usable, train_s + eval_s / interval)
    capped = epochs > MAX_EPOCHS
    epochs = min(epochs, MAX_EPOCHS)
    if epochs // interval > MAX_EVALUATIONS:
        interval = math.ceil(epochs / MAX_EVALUATIONS)
        if not capped:
            epochs = min(MAX_EPOCHS, _fits(usable, train_s + eval_s / interval))
    if epochs < interval:  # evaluate at least once, at the end
        interval = max(1, epochs)
        epochs = max(1, min(MAX_EPOCHS, _fits(usable, train_s + eval_s / interval)))
        interval = min(interval, epochs)
    return epochs, interval, capped


def choose_epochs(
    fp: DatasetFingerprint, geo: Geometry, units: int, budget: float, cost: StepCost
) -> tuple[int, float, list[Choice]]:
    """As many epochs as the budget holds at the measured speed, with evaluations at most
    a tenth of the time; early stopping when there are enough evaluations to judge.

    Raises:
        ParamsError: the budget does not hold one epoch.
    """
    train_s = units * cost.seconds_per_sample
    val_units = fp.split_counts.get(VALIDATION, 0) * geo.tiles_per_image
    eval_s = val_units * cost.seconds_per_sample * EVAL_COST
    usable = budget * (1 - RESERVE) - STARTUP_SECONDS
    if usable < train_s + eval_s:
        need = math.ceil((train_s + eval_s + STARTUP_SECONDS) / (1 - RESERVE))
        raise ParamsError(
            f"--budget {budget:g} s is too short for one epoch: {units} training inputs of "
            f"{geo.width}x{geo.height} take about {train_s + eval_s:.0f} s per epoch on this "
            f"machine (measured {1000 * cost.seconds_per_sample:.0f} ms per sample at batch "
            f"{cost.batch}), plus {STARTUP_SECONDS:.0f} s to start; give --budget {need} or more"
        )
    epochs, interval, capped = _epochs_and_interval(usable, train_s, eval_s)
    epoch_s = train_s + eval_s / interval
    tiled = (
        " (an epoch: the tiles that cover every train image once)" if geo.mode == "tiled" else ""
    )
    why = (
        f"an epoch of {units} training inputs{tiled} takes about {epoch_s:.1f} s here "
        f"(evaluation included); {budget:g} s less {STARTUP_SECONDS:.0f} s start-up and "
        f"{100 * RESERVE:.0f}% reserve hold {epochs}"
        + (
            f" (capped at {MAX_EPOCHS}; early stopping ends it when it stops improving)"
            if capped
            else ""
        )
    )
    evaluations = epochs // interval
    choices = [
        Choice("epochs", {"train.num_epochs": epochs}, why),
        _evaluation_choice(fp, interval, eval_s, evaluations),
        Choice(
            "time budget",
            {"train.time_budget": int(budget)},
            f"training stops cleanly after {budget:g} s even if this machine runs slower "
            "than measured; the best model so far is kept",
        ),
    ]
    return epochs, epoch_s, choices


def _evaluation_choice(
    fp: DatasetFingerprint, interval: int, eval_s: float, evaluations: int
) -> Choice:
    n_val = fp.split_counts.get(VALIDATION, 0)
    values: dict[str, Any] = {"train.evaluation_interval_epochs": float(interval)}
    why = f"one evaluation of {_n(n_val, 'validation sample')} takes about {eval_s:.1f} s; "
    why += "every epoch" if interval == 1 else f"every {interval} epochs keeps it under a tenth"
    if n_val == 0:
        values["train.early_stopping_patience"] = None
        return Choice("evaluation", values, why + "; no validation split, no early stopping")
    if evaluations < 10:
        values["train.early_stopping_patience"] = None
        return Choice(
            "evaluation", values, why + f"; {evaluations} evaluations are too few to stop early"
        )
    patience = max(5, round(evaluations / 5))
    values["train.early_stopping_patience"] = patience
    why += (
        f"; stop when the comparison key has not improved for {patience} of the "
        f"{evaluations} evaluations (a fifth)"
    )
    return Choice("evaluation", values, why)
