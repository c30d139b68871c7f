"""The evaluation report: metrics.json for DVC, tables, PNGs that open, one self-contained HTML."""

from __future__ import annotations

import base64
import io
import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from helpers.models import CLASS_NAMES, make_dataset, oracle_model
from PIL import Image

from segcore.evaluate.evaluation import evaluate_model
from segcore.evaluate.report import write_evaluation_report

PNGS = (
    "escapes.png",
    "false_rejects.png",
    "tradeoff.png",
    "confusion_matrix.png",
    "confusion_matrix_normalized.png",
    "class_measures.png",
    "training_curves.png",
    "worst_samples.png",
)


@pytest.fixture(scope="module")
def evaluated(tmp_path_factory: pytest.TempPathFactory) -> tuple:
    root = tmp_path_factory.mktemp("report")
    path, _, _ = make_dataset(root / "ds")
    model = oracle_model()
    return path, model, evaluate_model(model, path, keep_worst=2)


def test_report_files(evaluated: tuple, tmp_path: Path) -> None:
    path, _, result = evaluated
    history = tmp_path / "history.csv"
    pd.DataFrame(
        {
            "epoch": [1, 2, 3, 4],
            "loss": [1.0, 0.7, 0.5, 0.4],
            "learning_rate": [1e-3, 1e-3, 1e-4, 1e-4],
            "seconds": [2.0, 2.1, 2.0, 2.2],
            "mean_iou": [np.nan, 0.4, np.nan, 0.6],
            "note": ["a", "b", "c", "d"],  # not numeric: left out
        }
    ).to_csv(history, index=False)
    out = tmp_path / "reports"
    html_path = write_evaluation_report(result, path, out, history_path=history, worst_k=2)
    assert html_path == out / "report.html"

    metrics = json.loads((out / "metrics.json").read_text())
    for key in ("pixel_accuracy", "mean_accuracy", "mean_iou", "frequency_weighted_iou"):
        assert metrics[key] == pytest.approx(result.measures[key])
    assert list(metrics["class_iou"]) == CLASS_NAMES
    assert metrics["class_iou"]["border"] == -1
    assert metrics["num_images"] == 6
    # the decision measures beside the pixel ones (every sample holds a defect here)
    decided = result.decision_measures
    assert metrics["escape_rate"] == decided["escape_rate"] == decided["escapes"] / 6
    assert set(metrics["image_confusion"]) == {"ok_as_ok", "ok_as_ng", "ng_as_ok", "ng_as_ng"}
    assert set(metrics["region_recall"]) == {"contamination", "crack"}
    assert "false_reject_rate" not in metrics  # no defect-free image: undefined

    matrix = pd.read_csv(out / "confusion_matrix.csv", index_col=0)
    assert list(matrix.columns) == CLASS_NAMES and list(matrix.index) == CLASS_NAMES
    np.testing.assert_array_equal(matrix.to_numpy(), result.confusion_matrix)
    ranked = pd.read_csv(out / "per_image.csv")
    assert ranked["mean_iou"].is_monotonic_increasing and len(ranked) == 6

    for name in PNGS:
        with Image.open(out / name) as img:
            img.verify()
        with Image.open(out / name) as img:
            assert img.format == "PNG" and min(img.size) > 200, name

    # Every figure is embedded, so the page opens anywhere on its own.
    page = html_path.read_text()
    embedded = re.findall(r"data:image/png;base64,([A-Za-z0-9+/=]+)", page)
    assert len(embedded) == len(PNGS)
    # the images the decision got wrong come first
    assert page.index("<h2>Escapes") < page.index("<h2>Confusion matrix")
    for data in embedded:
        Image.open(io.BytesIO(base64.b64decode(data))).verify()
    assert "src='http" not in page and "crack" in page
    markdown = (out / "report.md").read_text()
    assert all(f"]({name})" in markdown for name in PNGS)


def test_without_history_and_more_worst_samples_than_kept(evaluated: tuple, tmp_path: Path) -> None:
    path, model, result = evaluated
    out = tmp_path / "reports"
    html_path = write_evaluation_report(
        result, path, out, history_path=tmp_path / "missing.csv", worst_k=4, model=model
    )
    assert not (out / "training_curves.png").exists()
    assert "No training history at" in html_path.read_text()
    with Image.open(out / "worst_samples.png") as four, Image.open(out / "class_measures.png"):
        tall = four.size[1]
    write_evaluation_report(result, path, out, worst_k=1)
    with Image.open(out / "worst_samples.png") as one:
        assert one.size[1] < tall  # four rows of samples were drawn, then one
