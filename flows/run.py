"""``make run``: the whole pipeline once, then where to look.

Runs :func:`flows.pipeline.segmentation_pipeline` on this repository with the params of
``params.yaml`` (generating the synthetic pill data first when it is missing, since that is
the first stage), then prints the measures, the registry decision and the commands that
show the rest.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

from segcore.common.constants import REPORT_HTML
from segcore.common.errors import EXIT_USER_ERROR, SegcoreError
from segcore.params import load_params
from segcore.pipeline.results import PipelineResults
from segcore.tracking.run import find_repo_root, resolve_tracking_uri

from . import tool


def where_to_look(root: Path, statuses: dict[str, str], seconds: float) -> str:
    """The closing message: what ran, the test measures, and where the rest is."""
    params = load_params(root / "params.yaml")
    results = PipelineResults.load(params, root)
    lines = [
        f"Pipeline finished in {seconds:.0f} s: "
        + ", ".join(f"{stage} {status}" for stage, status in statuses.items()),
    ]
    headline = results.headline(params.evaluate.split)
    if headline:
        lines.append(headline)
    if results.registry:
        r = results.registry
        lines.append(
            f"Registry: {r['model_name']} version {r['version']}, "
            f"{'champion' if r['promoted'] else 'challenger'} (champion: version {r['champion']})"
        )
    uri = resolve_tracking_uri(params.tracking, root)
    dvc, segcore = tool("dvc"), tool("segcore")
    lines += [
        "",
        "Where to look:",
        f"  report          {results.report_dir / REPORT_HTML}",
        f"  MLflow runs     make ui   (http://127.0.0.1:5000; store {uri})",
        f"  DVC measures    {dvc} metrics show   |   {dvc} plots show",
        f"  OK/NG on images {segcore} infer {params.decision.calibration.out_bundle} "
        "IMAGES... --out DIR   (the calibrated decision rules)",
        f"  parameters      {dvc} params diff   (after editing params.yaml)",
        f"  serve champion  PATH={Path(sys.executable).parent}:$PATH MLFLOW_TRACKING_URI={uri} mlflow models serve "
        f"-m 'models:/{params.registry.model_name}@{params.registry.champion_alias}' "
        "--env-manager local -p 5001",
        "  schedule        make serve   (cron from params.yaml: flow.cron)",
    ]
    return "\n".join(lines)


def main() -> int:
    """Run the flow once on the repository of the current folder."""
    # Offline by default: Prefect's local server would otherwise try to send usage data.
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    # The first start after an install compiles Prefect's server modules and can take longer
    # than Prefect's 20 s on a 2-core machine ("Timed out while attempting to connect to
    # ephemeral Prefect API server"); later starts take a few seconds.
    os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "180")
    from .pipeline import segmentation_pipeline

    root = find_repo_root()
    start = time.perf_counter()
    try:
        statuses = segmentation_pipeline(repo=str(root))
    except SegcoreError as err:
        print(f"error: {err.render()}", file=sys.stderr)
        return EXIT_USER_ERROR
    print(where_to_look(root, statuses, time.perf_counter() - start))
    return 0


if __name__ == "__main__":
    sys.exit(main())
