"""Deploy the pipeline flow to a Prefect work pool, on the cron schedule of ``params.yaml``.

For a Prefect server with workers (instead of ``make serve``'s runner in one process)::

    export PREFECT_API_URL=http://prefect.example:4200/api
    .venv/bin/prefect work-pool create segcore --type process
    .venv/bin/prefect worker start --pool segcore            # on the machine with the repo
    .venv/bin/python -m flows.deploy --pool segcore          # from the repository root

A ``process`` pool runs the flow from this repository's folder. For Docker or Kubernetes
pools, give the image that holds the repository and its ``.venv`` (``--image``) and the
repository's folder inside it (``--repo``); ``--env`` passes settings such as
``MLFLOW_TRACKING_URI`` to the flow-run containers. Each deployment runs one flow run at a
time (the flow holds the repository's DVC lock anyway).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any
from uuid import UUID

from prefect.deployments.runner import EntrypointType
from prefect.schedules import Cron

from segcore.common.errors import EXIT_USER_ERROR, ParamsError, SegcoreError
from segcore.params import Params, load_params
from segcore.tracking.run import find_repo_root

from . import tool
from .pipeline import segmentation_pipeline

ENTRYPOINT = f"{__package__}.pipeline.segmentation_pipeline"
"""The flow a deployment runs, by module: ``flows.pipeline`` in this repository (the worker
runs in its checkout), ``segcore.flows.pipeline`` in a project that ``segcore init`` wrote.
A module path, not the file ``flows/pipeline.py``: loaded by its file path the flow's
modules would get names that Dask's workers cannot import (``pipeline.cluster``)."""


def deploy(
    params: Params,
    root: Path,
    pool: str,
    *,
    image: str | None = None,
    repo: str | None = None,
    env: dict[str, str] | None = None,
    schedule: bool = True,
) -> UUID:
    """Create or update the deployment ``segmentation_pipeline/<flow.deployment_name>``.

    Args:
        params: the repository's params (``flow`` section: name, cron, time zone).
        root: the repository on this machine.
        pool: the work pool's name.
        image: a container image holding the repository (Docker / Kubernetes pools);
            ``None`` runs the flow from ``root`` (process pools).
        repo: the repository's folder where the flow runs (default: ``root``).
        env: environment variables of the flow runs.
        schedule: attach the cron schedule (else runs start only when triggered).

    Returns:
        The deployment's id.
    """
    where = repo or str(root)
    options: dict[str, Any] = {
        "name": params.flow.deployment_name,
        "work_pool_name": pool,
        "parameters": {"repo": where},
        "schedules": [Cron(params.flow.cron, timezone=params.flow.timezone)] if schedule else [],
        "concurrency_limit": 1,
        "tags": ["segcore"],
        "job_variables": {"env": env} if env else None,
        "description": f"segcore pipeline of {where}",
        "print_next_steps": False,
        "ignore_warnings": True,
    }
    if image is None:
        flow = segmentation_pipeline.from_source(source=str(root), entrypoint=ENTRYPOINT)
        return flow.deploy(**options)
    # The image was built beforehand; its working directory is the repository. The flow is
    # named by module there too (ENTRYPOINT).
    return segmentation_pipeline.deploy(
        image=image,
        build=False,
        push=False,
        entrypoint_type=EntrypointType.MODULE_PATH,
        **options,
    )


def _env(pairs: list[str]) -> dict[str, str]:
    bad = [p for p in pairs if "=" not in p or p.startswith("=")]
    if bad:
        raise ParamsError(f"--env {bad}: give KEY=VALUE pairs, e.g. --env MLFLOW_TRACKING_URI=...")
    return dict(p.split("=", 1) for p in pairs)


def main(argv: list[str] | None = None) -> int:
    """``python -m flows.deploy --pool NAME [--image IMAGE --repo DIR] [--env K=V ...]``."""
    parser = argparse.ArgumentParser(prog=f"python -m {__package__}.deploy", description=__doc__)
    parser.add_argument("--pool", required=True, help="work pool to deploy to")
    parser.add_argument("--image", help="container image with the repository (Docker/K8s)")
    parser.add_argument("--repo", help="the repository's folder where flows run")
    parser.add_argument("--env", action="append", default=[], help="KEY=VALUE for flow runs")
    parser.add_argument("--no-schedule", action="store_true", help="deploy without the cron")
    args = parser.parse_args(argv)
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    root = find_repo_root()
    try:
        params = load_params(root / "params.yaml")
        deployment = deploy(
            params,
            root,
            args.pool,
            image=args.image,
            repo=args.repo,
            env=_env(args.env),
            schedule=not args.no_schedule,
        )
    except SegcoreError as err:
        print(f"error: {err.render()}", file=sys.stderr)
        return EXIT_USER_ERROR
    name = f"{segmentation_pipeline.name}/{params.flow.deployment_name}"
    print(
        f"Deployed '{name}' ({deployment}) to pool '{args.pool}'"
        + (
            f" on cron '{params.flow.cron}' ({params.flow.timezone})"
            if not args.no_schedule
            else ""
        )
        + f".\nA run now: {tool('prefect')} deployment run '{name}'"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
