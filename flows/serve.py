"""``make serve``: serve the pipeline flow on the cron schedule of ``params.yaml`` (``flow``).

The runner polls for scheduled runs and runs each in its own process, one at a time (the
flow also holds DVC's repository lock). A run with unchanged data and params finds every
stage up to date and ends in seconds; a failing run is marked failed in Prefect and the
schedule goes on. Without ``PREFECT_API_URL`` Prefect starts a local server for the
session; point it at ``prefect server start`` to keep runs and see them in the UI.
"""

from __future__ import annotations

import sys
from pathlib import Path

from prefect import serve
from prefect.deployments.runner import EntrypointType, RunnerDeployment
from prefect.schedules import Cron

from flows.pipeline import segmentation_pipeline
from segcore.errors import SegcoreError
from segcore.params import Params, load_params
from segcore.tracking import find_repo_root


def build_deployment(params: Params, root: Path) -> RunnerDeployment:
    """The scheduled deployment of :func:`segmentation_pipeline` for the repository ``root``."""
    return segmentation_pipeline.to_deployment(
        name=params.flow.deployment_name,
        schedules=[Cron(params.flow.cron, timezone=params.flow.timezone)],
        parameters={"repo": str(root)},
        concurrency_limit=1,
        description=f"segcore pipeline of {root}, on cron {params.flow.cron!r} "
        f"({params.flow.timezone})",
        tags=["segcore"],
        entrypoint_type=EntrypointType.MODULE_PATH,
    )


def main() -> int:
    """Serve until interrupted; a params problem ends with a message and exit code 2."""
    root = find_repo_root()
    try:
        params = load_params(root / "params.yaml")
    except SegcoreError as err:
        print(f"error: {err.render()}", file=sys.stderr)
        return 2
    deployment = build_deployment(params, root)
    print(
        f"Serving '{segmentation_pipeline.name}/{params.flow.deployment_name}' on "
        f"'{params.flow.cron}' ({params.flow.timezone}); Ctrl+C stops. A run now: "
        f"prefect deployment run '{segmentation_pipeline.name}/{params.flow.deployment_name}'"
    )
    serve(deployment, limit=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
