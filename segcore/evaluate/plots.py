"""Evaluation plots (HALCON: dev_display_segmentation_evaluation and friends), as PNG files.

Confusion matrix (absolute and normalised), per-class IoU and accuracy, training curves,
samples side by side (image | ground truth | prediction | difference | confidence), and
the decision's trade-off curves (escape rate vs false-reject rate).
Matplotlib's object API with the Agg canvas is used directly: no pyplot, no global
backend switch, safe in threads and on machines without a display. Class colours are
the fixed ones of :func:`segcore.common.display.class_colors`, the same as in inference overlays
(:mod:`segcore.common.display`).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.colors import ListedColormap, LogNorm
from matplotlib.figure import Figure
from matplotlib.image import AxesImage
from matplotlib.patches import Patch

from segcore.common.display import IGNORE_COLOR, class_colors, colorize, network_input_rgb
from segcore.common.io import atomic_path

if TYPE_CHECKING:
    from segcore.evaluate.calibrate import Sweep, Tradeoff
    from segcore.evaluate.result import EvaluatedSample

DPI = 100
DIFF_COLORS = ((0, 0, 0), (255, 255, 255), IGNORE_COLOR)
"""Difference panel: correct (black), wrong (white), not evaluated (as ignore pixels)."""


def _save(fig: Figure, path: str | os.PathLike[str]) -> None:
    FigureCanvasAgg(fig)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=DPI, bbox_inches="tight", format="png")


def _compact(n: float) -> str:
    for unit, div in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if n >= div:
            return f"{n / div:.3g}{unit}"
    return f"{int(n)}"


def plot_confusion_matrix(
    matrix: np.ndarray,
    class_names: Sequence[str],
    path: str | os.PathLike[str],
    *,
    normalized: bool = False,
) -> None:
    """Confusion matrix image: rows predicted class, columns ground truth (as HALCON).

    Args:
        matrix: ``(K, K)`` pixel counts.
        normalized: show each column as shares of that ground-truth class's pixels (so a
            column sums to 1 and the diagonal is the class pixel accuracy); columns without
            ground truth are left blank.
    """
    m = np.asarray(matrix, dtype=np.float64)
    k = len(class_names)
    size = max(4.0, 1.0 + 0.9 * k)
    fig = Figure(figsize=(size + 1.2, size))
    ax = fig.add_subplot()
    if normalized:
        gt = m.sum(axis=0, keepdims=True)
        shown = np.divide(m, gt, out=np.full_like(m, np.nan), where=gt > 0)
        im = ax.imshow(shown, cmap="Blues", vmin=0.0, vmax=1.0)
        texts = [["" if np.isnan(v) else f"{v:.3f}" for v in r] for r in shown]
        dark = shown > 0.5
        title = "Confusion matrix, normalised per ground-truth class"
    else:
        shown = np.where(m > 0, m, np.nan)
        vmax = max(float(m.max()), 1.0)
        im = ax.imshow(shown, cmap="Blues", norm=LogNorm(vmin=1.0, vmax=max(vmax, 10.0)))
        texts = [[_compact(v) for v in r] for r in m]
        dark = m > np.sqrt(vmax)
        title = "Confusion matrix (pixels, log colour scale)"
    for i in range(k):
        for j in range(k):
            color = "white" if dark[i, j] else "black"
            ax.text(j, i, texts[i][j], ha="center", va="center", color=color, fontsize=9)
    ax.set_xticks(range(k), class_names, rotation=30, ha="right")
    ax.set_yticks(range(k), class_names)
    ax.set_xlabel("ground-truth class")
    ax.set_ylabel("predicted class")
    ax.set_title(title, fontsize=10)
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04)
    _save(fig, path)


def plot_class_measures(
    class_iou: Sequence[float],
    class_accuracy: Sequence[float],
    class_names: Sequence[str],
    path: str | os.PathLike[str],
    *,
    title: str = "",
) -> None:
    """Grouped bars of IoU and pixel accuracy per class; classes without ground truth say so."""
    k = len(class_names)
    y = np.arange(k)
    fig = Figure(figsize=(7.5, 1.2 + 0.7 * k))
    ax = fig.add_subplot()
    colors = class_colors(k) / 255.0
    for offset, values, label, hatch in (
        (-0.2, class_iou, "IoU", None),
        (0.2, class_accuracy, "pixel accuracy", "//"),
    ):
        vals = np.asarray(values, dtype=float)
        shown = np.where(vals >= 0, vals, 0.0)
        ax.barh(
            y + offset,
            shown,
            height=0.38,
            color=colors,
            edgecolor="black",
            hatch=hatch,
            label=label,
        )
        for yi, v in zip(y + offset, vals, strict=True):
            text = f"{v:.3f}" if v >= 0 else "no ground truth"
            ax.text(max(v, 0) + 0.01, yi, text, va="center", fontsize=8)
    ax.set_yticks(y, class_names)
    ax.invert_yaxis()
    ax.set_xlim(0, 1.15)
    ax.set_xlabel("value (0-1)")
    ax.legend(
        handles=[
            Patch(facecolor="white", edgecolor="black", label="IoU"),
            Patch(facecolor="white", edgecolor="black", hatch="//", label="pixel accuracy"),
        ],
        loc="lower right",
        fontsize=8,
    )
    ax.set_title(title or "Per-class IoU and pixel accuracy", fontsize=10)
    ax.grid(axis="x", alpha=0.3)
    _save(fig, path)


COUNTER_COLUMNS = frozenset({"epoch", "step", "iteration"})
"""History columns that count (the x axis, updates done): never drawn as curves."""


def curve_groups(history: pd.DataFrame) -> dict[str, list[str]]:
    """The panels of :func:`plot_training_curves` and the history columns each draws.

    Counters (:data:`COUNTER_COLUMNS`) are left out: ``step`` (0-400) on the measures'
    0-1 axis would flatten every measure."""
    numeric = [
        c
        for c in history.columns
        if c.lower() not in COUNTER_COLUMNS
        and pd.api.types.is_numeric_dtype(history[c])
        and history[c].notna().any()
    ]
    groups: dict[str, list[str]] = {"loss": [], "measures": [], "learning rate": [], "time": []}
    for col in numeric:
        low = col.lower()
        if "loss" in low:
            groups["loss"].append(col)
        elif "learning_rate" in low or low in ("lr", "momentum"):
            groups["learning rate"].append(col)
        elif "second" in low or "time" in low:
            groups["time"].append(col)
        else:
            groups["measures"].append(col)
    return {k: v for k, v in groups.items() if v}


def plot_training_curves(history: pd.DataFrame, path: str | os.PathLike[str]) -> bool:
    """Training curves: every numeric column of the history, grouped into panels.

    Panels: loss columns, evaluation measures (values logged only at evaluations are
    drawn with markers), learning rate (log scale) and seconds per epoch. The x axis is
    the ``epoch`` column (the row number when it is missing).

    Returns:
        ``False`` (and nothing written) when there is nothing to plot.
    """
    groups = curve_groups(history)
    if history.empty or not groups:
        return False
    x = (
        history["epoch"]
        if "epoch" in history and pd.api.types.is_numeric_dtype(history["epoch"])
        else pd.Series(np.arange(1, len(history) + 1), index=history.index)
    )
    fig = Figure(figsize=(6.0 * min(len(groups), 2), 3.6 * ((len(groups) + 1) // 2)))
    for i, (panel, cols) in enumerate(groups.items()):
        ax = fig.add_subplot((len(groups) + 1) // 2, min(len(groups), 2), i + 1)
        for col in cols:
            series = history[col]
            ok = series.notna()
            sparse = ok.sum() < len(series)
            ax.plot(
                x[ok],
                series[ok],
                marker="o" if sparse or ok.sum() < 15 else None,
                markersize=3,
                label=col,
            )
        if panel == "learning rate" and (history[cols] > 0).all().all():
            ax.set_yscale("log")
        ax.set_title(panel, fontsize=10)
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    _save(fig, path)
    return True


def plot_samples(
    samples: Sequence[EvaluatedSample],
    class_ids: Sequence[int],
    class_names: Sequence[str],
    path: str | os.PathLike[str],
    *,
    ignore_class_ids: Sequence[int] = (),
    title: str = "",
) -> None:
    """Samples side by side: image | ground truth | prediction | difference | confidence.

    Difference: black where prediction and ground truth agree, white where they differ,
    light grey where not evaluated (ignore classes, as in the label panels). Confidence: probability of the predicted class.
    A legend shows the fixed class colours.
    """
    columns = ("image", "ground truth", "prediction", "difference", "confidence")
    n = max(len(samples), 1)
    fig = Figure(figsize=(2.3 * len(columns) + 0.8, 2.3 * n + 0.8), layout="constrained")
    axes = fig.subplots(n, len(columns), squeeze=False)
    ignore = set(ignore_class_ids)
    valid = np.isin(np.arange(65536, dtype=np.int64), [c for c in class_ids if c not in ignore])
    diff_cmap = ListedColormap(np.array(DIFF_COLORS) / 255.0)
    conf_im = None
    any_ignored = False
    for r, s in enumerate(samples):
        conf_im, ignored = _sample_row(axes[r], s, valid, class_ids, ignore_class_ids, diff_cmap)
        any_ignored = any_ignored or ignored
    for ax in axes.ravel():
        ax.set_xticks([])
        ax.set_yticks([])
    for c, name in enumerate(columns):
        axes[0, c].set_title(name, fontsize=10)
    if conf_im is not None:
        fig.colorbar(conf_im, ax=axes[:, 4].tolist(), shrink=min(1.0, 3.0 / n), label="confidence")
    handles = _legend_handles(class_ids, class_names, ignore, any_ignored)
    fig.legend(handles=handles, loc="outside upper center", ncol=min(len(handles), 6), fontsize=8)
    if title:
        fig.suptitle(title, fontsize=11)
    _save(fig, path)


def _sample_row(
    axes: np.ndarray,
    s: EvaluatedSample,
    valid: np.ndarray,
    class_ids: Sequence[int],
    ignore_class_ids: Sequence[int],
    diff_cmap: ListedColormap,
) -> tuple[AxesImage, bool]:
    """Draw one sample into a row of ``axes``; its confidence image, and if a pixel is ignored."""
    evaluated = valid[s.label.astype(np.int64)]
    diff = np.where(evaluated, (s.prediction != s.label).astype(np.int64), 2)
    panels = (
        network_input_rgb(s.image),
        colorize(s.label, class_ids, ignore_class_ids),
        colorize(s.prediction, class_ids, ignore_class_ids),
        diff,
    )
    for c, panel in enumerate(panels):
        ax = axes[c]
        if c == 3:
            ax.imshow(panel, cmap=diff_cmap, vmin=0, vmax=2, interpolation="nearest")
        else:
            ax.imshow(panel, interpolation="nearest")
    conf_im = axes[4].imshow(s.confidence, cmap="viridis", vmin=0, vmax=1)
    axes[0].set_ylabel(f"{s.name}\nmIoU {s.mean_iou:.3f}", fontsize=8)
    return conf_im, not evaluated.all()


def _legend_handles(
    class_ids: Sequence[int], class_names: Sequence[str], ignore: set[int], any_ignored: bool
) -> list[Patch]:
    """Legend: each evaluated class's colour, the difference colours, and ignore if it occurs."""
    colors = class_colors(len(class_ids)) / 255.0
    handles = [
        Patch(facecolor=colors[k], edgecolor="black", label=f"{name} ({cid})")
        for k, (cid, name) in enumerate(zip(class_ids, class_names, strict=True))
        if cid not in ignore
    ]
    handles += [
        Patch(facecolor="black", edgecolor="black", label="difference: correct"),
        Patch(facecolor="white", edgecolor="black", label="difference: wrong"),
    ]
    if any_ignored:
        handles.append(
            Patch(facecolor=np.array(IGNORE_COLOR) / 255, edgecolor="black", label="ignore")
        )
    return handles


def plot_tradeoff(
    sweep: Sweep,
    point: tuple[float, float] | None,
    path: str | os.PathLike[str],
    *,
    front: Tradeoff | None = None,
    title: str = "",
) -> None:
    """Escape rate vs false-reject rate as the confidence thresholds sweep: one curve per
    defect class (its escapes among the images holding it) and the overall one, the
    operating point marked.

    Args:
        sweep: from :func:`segcore.evaluate.calibrate.confidence_sweep`.
        point: ``(escape rate, false-reject rate)`` of the rules in use, or ``None``.
        front: the calibration's overall path (min_area and min_confidence both chosen),
            drawn as points.
    """
    fig = Figure(figsize=(6.4, 4.8), layout="constrained")
    ax = fig.add_subplot()
    colors = class_colors(len(sweep.classes) + 1) / 255.0
    for i, (name, (escape, reject)) in enumerate(sweep.classes.items()):
        ax.plot(
            reject, escape, color=colors[i + 1], alpha=0.85, label=f"{name} (images holding it)"
        )
    escape, reject = sweep.overall
    ax.plot(reject, escape, color="black", linewidth=2, label="overall")
    if front is not None and len(front.escape_rate):
        ax.plot(
            front.false_reject_rate,
            front.escape_rate,
            "s",
            color="grey",
            markersize=5,
            label="calibration path (area and confidence)",
        )
    if point is not None:
        ax.plot(point[1], point[0], "o", color="red", markersize=10, label="operating point")
    ax.set_xlabel(f"false-reject rate ({sweep.num_defect_free} defect-free images)")
    ax.set_ylabel(f"escape rate ({sweep.num_defective} defective images)")
    ax.set_xlim(-0.02, 1.02)
    ax.set_ylim(-0.02, 1.02)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    if title:
        ax.set_title(title, fontsize=10)
    _save(fig, path)


def plot_message(path: str | os.PathLike[str], text: str) -> None:
    """A small image that says ``text`` (a panel with nothing to show, e.g. no escapes)."""
    fig = Figure(figsize=(6.0, 2.5))
    ax = fig.add_subplot()
    ax.set_xticks([])
    ax.set_yticks([])
    ax.text(0.5, 0.5, text, ha="center", va="center", fontsize=11)
    _save(fig, path)
