"""The evaluation report: metrics for DVC, tables, plots, and one self-contained HTML page.

:func:`write_evaluation_report` writes into the report folder:

- ``metrics.json``: the scalar measures plus ``class_iou`` / ``class_pixel_accuracy`` as
  ``{class name: value}`` (-1: no ground truth), ``num_images``, ``resolution``
  (``network`` or ``original``: where predictions met the labels), and the decision's
  image- and region-level measures (``escape_rate``, ``false_reject_rate``,
  ``image_confusion.ng_as_ok``, ``region_recall.crack``, ``false_alarm_regions``, ...;
  :mod:`segcore.evaluate.decisions`); ``dvc metrics show`` lists them as ``mean_iou``,
  ``class_iou.crack``, ...
- ``confusion_matrix.csv`` (rows predicted, columns ground truth), ``class_measures.csv``,
  ``per_image.csv`` (every image, worst mean IoU first);
- ``escapes.png`` and ``false_rejects.png`` (the images the decision got wrong, shown
  first), ``tradeoff.png`` (escape rate vs false-reject rate on this split, per class and
  overall, the rules in use marked), ``confusion_matrix.png``,
  ``confusion_matrix_normalized.png``, ``class_measures.png``, ``training_curves.png``
  (when a training history exists), ``worst_samples.png``;
- ``report.html`` (every image embedded, opens anywhere) and ``report.md`` (links the PNGs).
"""

from __future__ import annotations

import base64
import html
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from segcore.common.constants import COL_SAMPLE_FILE, METRICS_FILE, REPORT_HTML, REPORT_MD
from segcore.common.io import write_json_atomic, write_text_atomic
from segcore.data.dldataset import DLDataset
from segcore.data.samples import load_sample
from segcore.evaluate.metrics import class_iou, class_pixel_accuracy
from segcore.evaluate.plots import (
    plot_class_measures,
    plot_confusion_matrix,
    plot_samples,
    plot_training_curves,
)
from segcore.evaluate.report_decisions import (
    decision_rows,
    plot_decisions,
    region_columns,
    rules_note,
)
from segcore.evaluate.resolution import Predictor, display_copy
from segcore.evaluate.result import EvaluatedSample, EvaluationResult
from segcore.infer.apply import SegModel


def metrics_dict(result: EvaluationResult) -> dict[str, Any]:
    """What ``metrics.json`` holds: numbers only, per-class values keyed by class name."""
    out: dict[str, Any] = dict(result.scalar_measures())
    for measure in ("class_iou", "class_pixel_accuracy"):
        if measure in result.measures:
            out[measure] = result.per_class(measure)
    out["num_images"] = result.num_images
    out.update(result.decision_measures)
    out["resolution"] = result.resolution
    return out


def class_table(result: EvaluationResult) -> pd.DataFrame:
    """One row per class: id, name, IoU, pixel accuracy, ground-truth and predicted pixels."""
    m = result.confusion_matrix
    return pd.DataFrame(
        {
            "class_id": result.class_ids,
            "class_name": result.class_names,
            "iou": class_iou(m),
            "pixel_accuracy": class_pixel_accuracy(m),
            "ground_truth_pixels": m.sum(axis=0),
            "predicted_pixels": m.sum(axis=1),
            **region_columns(result),
        }
    )


def confusion_frame(result: EvaluationResult) -> pd.DataFrame:
    """The confusion matrix with class names: rows predicted, columns ground truth."""
    frame = pd.DataFrame(
        result.confusion_matrix, index=result.class_names, columns=result.class_names
    )
    frame.index.name = "predicted \\ ground truth"
    return frame


def write_evaluation_report(
    result: EvaluationResult,
    dataset: DLDataset | str | os.PathLike[str] | None,
    report_dir: str | os.PathLike[str],
    *,
    history_path: str | os.PathLike[str] | None = None,
    worst_k: int = 6,
    model: SegModel | None = None,
) -> Path:
    """Write metrics, tables, plots and the HTML report (see the module docstring).

    Args:
        result: from :func:`segcore.evaluate.evaluation.evaluate_model`.
        dataset: the evaluated dataset; with ``model``, used to show more worst samples
            than the result kept.
        report_dir: output folder (created).
        history_path: the training history CSV (``train.history``); skipped when missing.
        worst_k: number of worst samples (by per-image mean IoU) to show.
        model: the evaluated model, only needed when ``worst_k`` exceeds the kept samples.

    Returns:
        the path of ``report.html``.
    """
    out = Path(report_dir)
    out.mkdir(parents=True, exist_ok=True)
    classes, ranked = _write_tables(result, out)
    figures = plot_decisions(result, out) + _plot_measures(result, classes, out)
    history_note = _training_curves(history_path, out / "training_curves.png")
    if history_note is None:
        figures.append(("training_curves.png", "Training curves", str(history_path)))
    figures += _plot_worst(result, dataset, worst_k, model, out)
    write_text_atomic(out / REPORT_MD, _markdown(result, classes, ranked, figures, history_note))
    path = out / REPORT_HTML
    write_text_atomic(path, _html(result, classes, ranked, figures, out, history_note))
    return path


def _write_tables(result: EvaluationResult, out: Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Write ``metrics.json`` and the CSVs; returns the class table and per-image, worst first."""
    write_json_atomic(out / METRICS_FILE, metrics_dict(result))
    _write_csv(confusion_frame(result), out / "confusion_matrix.csv", index=True)
    classes = class_table(result)
    _write_csv(classes, out / "class_measures.csv")
    ranked = result.per_image.sort_values("mean_iou", na_position="last", kind="stable")
    _write_csv(ranked, out / "per_image.csv")
    return classes, ranked


def _plot_measures(
    result: EvaluationResult, classes: pd.DataFrame, out: Path
) -> list[tuple[str, str, str]]:
    """Plot both confusion matrices and the class measures; their ``(file, heading, caption)``."""
    plot_confusion_matrix(result.confusion_matrix, result.class_names, out / "confusion_matrix.png")
    plot_confusion_matrix(
        result.confusion_matrix,
        result.class_names,
        out / "confusion_matrix_normalized.png",
        normalized=True,
    )
    plot_class_measures(
        classes["iou"],
        classes["pixel_accuracy"],
        result.class_names,
        out / "class_measures.png",
        title=f"Per-class IoU and pixel accuracy ({result.split}, {result.num_images} images)",
    )
    return [
        ("confusion_matrix.png", "Confusion matrix", "Pixels; rows predicted, columns truth."),
        (
            "confusion_matrix_normalized.png",
            "Confusion matrix, normalised",
            "Each column divided by the ground-truth pixels of its class.",
        ),
        ("class_measures.png", "Per-class IoU and accuracy", ""),
    ]


def _plot_worst(
    result: EvaluationResult,
    dataset: DLDataset | str | os.PathLike[str] | None,
    worst_k: int,
    model: SegModel | None,
    out: Path,
) -> list[tuple[str, str, str]]:
    """Plot the worst samples (none: remove an old plot); its figure entry, if any."""
    samples = _worst_samples(result, dataset, worst_k, model)
    if not samples:
        (out / "worst_samples.png").unlink(missing_ok=True)
        return []
    plot_samples(
        samples,
        result.class_ids,
        result.class_names,
        out / "worst_samples.png",
        ignore_class_ids=result.ignore_class_ids,
    )
    return [
        (
            "worst_samples.png",
            f"The {len(samples)} worst samples",
            f"Ranked by per-image mean IoU at {result.resolution} resolution.",
        )
    ]


def _write_csv(frame: pd.DataFrame, path: Path, index: bool = False) -> None:
    write_text_atomic(path, frame.to_csv(index=index, float_format="%.6g"))


def _training_curves(history_path: str | os.PathLike[str] | None, png: Path) -> str | None:
    """Plot the history; ``None`` on success, else why there is no plot."""
    if history_path is None:
        png.unlink(missing_ok=True)
        return "No training history given."
    try:
        history = pd.read_csv(history_path)
    except FileNotFoundError:
        reason = f"No training history at {history_path}."
    except (OSError, pd.errors.EmptyDataError, pd.errors.ParserError) as err:
        reason = f"Training history {history_path} is not readable ({err})."
    else:
        if plot_training_curves(history, png):
            return None
        reason = f"Training history {history_path} has no numeric columns to plot."
    png.unlink(missing_ok=True)
    return reason


def _worst_samples(
    result: EvaluationResult,
    dataset: DLDataset | str | os.PathLike[str] | None,
    worst_k: int,
    model: SegModel | None,
) -> list[EvaluatedSample]:
    """The ``worst_k`` lowest mean-IoU samples: the kept ones, or predicted again."""
    evaluated = result.per_image.dropna(subset=["mean_iou"])
    wanted = min(worst_k, len(evaluated))
    if len(result.worst) >= wanted or model is None or dataset is None:
        return result.worst[:wanted]
    ds = dataset if isinstance(dataset, DLDataset) else DLDataset.load(dataset)
    assert ds.sample_dir is not None
    rows = evaluated.sort_values("mean_iou", kind="stable").head(wanted)
    by_id = ds.samples.set_index("image_id")
    ids = np.asarray(result.class_ids, dtype=np.uint16)
    predictor = Predictor.of(model, ds, result.resolution, tile_overlap=result.tile_overlap)
    out = []
    for row in rows.itertuples():
        table_row = {"image_id": row.image_id, **by_id.loc[row.image_id].to_dict()}
        sample = load_sample(Path(ds.sample_dir) / table_row[COL_SAMPLE_FILE])
        (counted,) = predictor.run([(table_row, sample)])
        out.append(
            EvaluatedSample(
                int(row.image_id), str(row.name), float(row.mean_iou), *display_copy(counted, ids)
            )
        )
    return out


def _resolution_note(result: EvaluationResult) -> str:
    """One sentence: where predictions met the labels."""
    if result.resolution == "original":
        return (
            "Measured at original resolution: predictions resized to each original label "
            "image's own size, as segcore infer delivers them."
        )
    return "Measured at network resolution: predictions against the preprocessed labels."


def _fmt(v: Any) -> str:
    if isinstance(v, float | np.floating):
        return "–" if np.isnan(v) else ("no ground truth" if v == -1 else f"{v:.4f}")
    return str(v)


def _rows(frame: pd.DataFrame) -> list[list[str]]:
    return [[_fmt(v) for v in row] for row in frame.itertuples(index=False)]


def _html_table(header: Sequence[str], rows: list[list[str]]) -> str:
    head = "".join(f"<th>{html.escape(str(h))}</th>" for h in header)
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>" for row in rows
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _measure_rows(result: EvaluationResult) -> list[list[str]]:
    return [[k, f"{v:.4f}"] for k, v in result.scalar_measures().items()]


_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,sans-serif;margin:2rem auto;max-width:1200px;
color:#222;padding:0 1rem}h1{font-size:1.6rem}h2{font-size:1.2rem;margin-top:2rem;
border-bottom:1px solid #ddd}table{border-collapse:collapse;margin:.5rem 0}
td,th{border:1px solid #ccc;padding:.25rem .6rem;text-align:right}th{background:#f3f3f3}
td:first-child,th:first-child{text-align:left}img{max-width:100%;height:auto}
.note{color:#666;font-size:.9rem}
"""


def _html(
    result: EvaluationResult,
    classes: pd.DataFrame,
    ranked: pd.DataFrame,
    figures: list[tuple[str, str, str]],
    out: Path,
    history_note: str | None,
) -> str:
    parts = [
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>",
        f"<title>segcore evaluation: {html.escape(result.split)}</title>",
        f"<style>{_CSS}</style></head><body>",
        f"<h1>Evaluation on the {html.escape(result.split)} split</h1>",
        f"<p>{result.num_images} images, {result.seconds:.1f} s. Ignore classes: "
        f"{html.escape(str(result.ignore_class_ids or 'none'))}. Measures as HALCON's "
        "evaluate_dl_model, from one confusion matrix over all pixels; -1 / "
        "'no ground truth' marks classes without ground-truth pixels.</p>",
        f"<p><strong>{html.escape(_resolution_note(result))}</strong></p>",
        "<h2>Decisions (OK / NG per image)</h2>",
        f"<p class='note'>{html.escape(rules_note(result))}</p>",
        _html_table(["measure", "value"], decision_rows(result)),
        "<h2>Measures</h2>",
        _html_table(["measure", "value"], _measure_rows(result)),
        "<h2>Per class</h2>",
        _html_table(list(classes.columns), _rows(classes)),
    ]
    for file, heading, caption in figures:
        data = base64.b64encode((out / file).read_bytes()).decode("ascii")
        parts.append(f"<h2>{html.escape(heading)}</h2>")
        if caption:
            parts.append(f"<p class='note'>{html.escape(caption)}</p>")
        parts.append(f"<img alt='{html.escape(heading)}' src='data:image/png;base64,{data}'>")
    if history_note:
        parts.append(f"<h2>Training curves</h2><p class='note'>{html.escape(history_note)}</p>")
    parts += [
        "<h2>Images ranked by mean IoU (worst first)</h2>",
        _html_table(list(ranked.columns), _rows(ranked.head(50))),
        f"<p class='note'>All {len(ranked)} images: per_image.csv.</p></body></html>",
    ]
    return "\n".join(parts)


def _md_table(header: Sequence[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(map(str, header)) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


def _markdown(
    result: EvaluationResult,
    classes: pd.DataFrame,
    ranked: pd.DataFrame,
    figures: list[tuple[str, str, str]],
    history_note: str | None,
) -> str:
    parts = [
        f"# Evaluation on the {result.split} split",
        f"{result.num_images} images, {result.seconds:.1f} s. Ignore classes: "
        f"{result.ignore_class_ids or 'none'}.",
        f"**{_resolution_note(result)}**",
        "## Decisions (OK / NG per image)",
        rules_note(result),
        _md_table(["measure", "value"], decision_rows(result)),
        "## Measures",
        _md_table(["measure", "value"], _measure_rows(result)),
        "## Per class",
        _md_table(list(classes.columns), _rows(classes)),
    ]
    for file, heading, caption in figures:
        parts += [f"## {heading}", caption, f"![{heading}]({file})"]
    if history_note:
        parts += ["## Training curves", history_note]
    parts += [
        "## Images ranked by mean IoU (worst first)",
        _md_table(list(ranked.columns), _rows(ranked.head(20))),
    ]
    return "\n\n".join(p for p in parts if p) + "\n"
