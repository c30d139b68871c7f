"""Rules for the solver and the data: learning-rate schedule, class-weight cap, loss and
augmentation."""

from __future__ import annotations

import math
from collections.abc import Collection

import numpy as np

from segcore.params import Params
from segcore.train.plan.choice import Choice, Geometry
from segcore.train.plan.fingerprint import DatasetFingerprint

RARE_DEFECT = 0.05
"""A class below this share of the train pixels is rare: the loss adds Dice."""


# --------------------------------------------------------------------------- solver


def choose_lr_schedule(params: Params, epochs: int, supported: Collection[str] | None) -> Choice:
    """Warm-up, then poly decay to zero (nnU-Net); the change strategies of the learning
    rate, written for a fixed epoch count, go. Without the schedule keys: one drop to a
    tenth at 80 % of the epochs, as a change strategy."""
    t = params.train
    others = [c.model_dump() for c in t.change_strategies if c.model_param != "learning_rate"]
    warmup = round(min(5.0, max(1.0, 0.05 * epochs), 0.1 * epochs), 2)
    if supported is None or "train.lr_schedule" in supported:
        why = (
            f"{warmup:g} warm-up epochs from a small rate (Adam from random weights), then "
            f"poly decay (exponent 0.9, nnU-Net's) from {t.learning_rate:g} to 0 at epoch "
            f"{epochs}, so the weights settle however long the budget"
        )
        if len(others) != len(t.change_strategies):
            why += "; the learning-rate change strategy (fixed epochs) is replaced by it"
        values = {
            "train.lr_schedule": "poly",
            "train.warmup_epochs": warmup,
            "train.change_strategies": others,
        }
        return Choice("learning rate", values, why)
    drop = max(1, round(0.8 * epochs))
    strategy = {
        "model_param": "learning_rate",
        "epochs": [drop],
        "values": [float(f"{t.learning_rate / 10:.6g}")],
    }
    why = (
        f"this version has no learning-rate schedule: the rate drops to a tenth "
        f"({t.learning_rate / 10:g}) at epoch {drop} of {epochs} (HALCON's change strategy)"
    )
    return Choice("learning rate", {"train.change_strategies": [*others, strategy]}, why)


def raw_class_weights(fp: DatasetFingerprint) -> np.ndarray:
    """HALCON's class weights before the cap, from the train pixel counts."""
    pixels = np.array([c.train_pixels for c in fp.classes], dtype=np.float64)
    freq = pixels / max(pixels.sum(), 1.0)
    w = np.where(pixels > 0, 1.0 / (freq + 0.0001), 0.0)
    return w / w[w > 0].min() if (w > 0).any() else w


def choose_class_weight_cap(fp: DatasetFingerprint, params: Params) -> Choice:
    """Half the square root of the largest uncapped weight, between 1 and 25: rare classes
    count more, but not so much that the model paints them everywhere (the pill demo:
    weights ~400, cap 10 gave test mean IoU 0.88 where 1000 gave 0.56). Nothing when
    ``class_weights.weights`` gives the weights."""
    if params.preprocess.class_weights.weights is not None:
        why = "preprocess.class_weights.weights gives the weights: nothing computed to cap"
        return Choice("class weights", {}, why)
    w = raw_class_weights(fp)
    raw = float(w.max()) if w.size else 1.0
    cap = round(min(max(math.sqrt(raw) / 2, 1.0), 25.0, max(raw, 1.0)), 1)
    k = int(np.argmax(w)) if w.size else 0
    why = (
        f"the rarest class {fp.classes[k].name} is {100 * fp.classes[k].pixel_fraction:.3f}% "
        f"of the train pixels: uncapped weight {raw:.0f}; capped at {cap:g} (half its square "
        "root, within 1..25: uncapped weights make a model over-segment rare classes)"
    )
    return Choice("class weights", {"preprocess.class_weights.max_weight": cap}, why)


def choose_loss(fp: DatasetFingerprint) -> Choice:
    """Cross-entropy plus Dice when a defect class is rare (Dice does not care how few
    pixels a class has; nnU-Net's default), HALCON's weighted cross-entropy otherwise."""
    rarest = fp.defects[0] if fp.defects else None
    if rarest is not None and rarest.pixel_fraction < RARE_DEFECT:
        why = (
            f"{rarest.name} is {100 * rarest.pixel_fraction:.3f}% of the train pixels (below "
            f"{100 * RARE_DEFECT:g}%): Dice weighs each class by its overlap, not its pixel "
            "count, beside the weighted cross-entropy"
        )
        return Choice("loss", {"train.loss": "ce+dice"}, why)
    share = "no defect class" if rarest is None else f"{rarest.name}, the rarest class, is "
    share += "" if rarest is None else f"{100 * rarest.pixel_fraction:.1f}% of the pixels"
    why = f"{share}: HALCON's weighted cross-entropy suffices"
    return Choice("loss", {"train.loss": "ce"}, why)


def choose_augmentation(fp: DatasetFingerprint, geo: Geometry) -> Choice:
    """Mirrors always; 90-degree rotations only for square inputs (180 otherwise); more
    augmented samples when there are few."""
    square = geo.width == geo.height
    rotate = 90 if square else 180
    few = fp.num_train < 100
    percentage = 75.0 if few else 50.0
    why = (
        f"mirror rows and columns; rotate by {rotate} ("
        + (
            "square input"
            if square
            else f"{geo.width}x{geo.height} is not square: 90 would change its shape"
        )
        + f"); {percentage:g}% of the samples augmented ("
        + (f"only {fp.num_train} train samples" if few else "enough samples")
        + ")"
    )
    values = {
        "train.augmentation.mirror": "rc",
        "train.augmentation.rotate": rotate,
        "train.augmentation.augmentation_percentage": percentage,
    }
    return Choice("augmentation", values, why)
