"""The ``synth`` stage: params -> the synthetic pill images and labels."""

from __future__ import annotations

import os
from typing import Any

from segcore.data.synth import generate_pills
from segcore.params import Params
from segcore.pipeline.result import StageResult, stage_path


def run_synth(params: Params, workdir: str | os.PathLike[str] = ".") -> StageResult[Any]:
    """Generate the synthetic pill dataset (``synth`` section)."""
    p = params.synth
    summary = generate_pills(
        stage_path(workdir, p.out_dir),
        num_images=p.num_images,
        width=p.width,
        height=p.height,
        defect_free_fraction=p.defect_free_fraction,
        seed=p.seed,
        defect_scale=p.defect_scale,
    )
    return StageResult(str(summary).splitlines()[0], summary)
