"""``make serve``: serve the pipeline flow on the cron schedule of ``params.yaml`` (``flow``).

The runner polls for scheduled runs and runs each in its own process, one at a time (the
flow also holds DVC's repository lock). A run with unchanged data and params finds every
stage up to date and ends in seconds; a failing run is marked failed in Prefect and the
schedule goes on. Without ``PREFECT_API_URL`` a local ``prefect server start`` runs for
the session (UI on http://127.0.0.1:4200); set it to use a server of your own.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

from prefect.deployments.runner import EntrypointType, RunnerDeployment
from prefect.schedules import Cron

from segcore.common.errors import SegcoreError
from segcore.params import Params, load_params
from segcore.tracking.run import find_repo_root

from . import tool
from .pipeline import segmentation_pipeline

SERVER_PORT = 4200
"""Port of the local Prefect server (API and UI) when ``PREFECT_API_URL`` is not set."""


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


@contextlib.contextmanager
def prefect_server(port: int = SERVER_PORT) -> Iterator[str]:
    """The Prefect API to serve against: ``PREFECT_API_URL`` when set, else a local
    ``prefect server start`` for the session (its scheduler creates the scheduled runs,
    which Prefect's temporary in-process server does not; its UI is on ``port``)."""
    from prefect.settings import PREFECT_API_URL, temporary_settings

    configured = PREFECT_API_URL.value()
    if configured:
        yield configured
        return
    url = f"http://127.0.0.1:{port}/api"
    cmd = [
        sys.executable,
        "-m",
        "prefect",
        "server",
        "start",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
    ]
    server = subprocess.Popen(cmd)
    try:
        _wait_until_healthy(url, server)
        with temporary_settings(updates={PREFECT_API_URL: url}):
            yield url
    finally:
        server.terminate()
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()


def _wait_until_healthy(url: str, server: subprocess.Popen, timeout_s: float = 180.0) -> None:
    import httpx

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise SegcoreError(
                f"`prefect server start` exited with code {server.returncode}; is port "
                f"{SERVER_PORT} in use? Start a server yourself and set PREFECT_API_URL"
            )
        try:
            if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(1)
    raise SegcoreError(f"the Prefect server at {url} did not answer within {timeout_s:.0f} s")


def main() -> int:
    """Serve until interrupted; a params problem ends with a message and exit code 2."""
    from prefect import serve

    # Offline by default: Prefect's server would otherwise try to send usage data.
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    root = find_repo_root()
    try:
        params = load_params(root / "params.yaml")
        with prefect_server() as api:
            name = f"{segmentation_pipeline.name}/{params.flow.deployment_name}"
            print(
                f"Serving '{name}' on cron '{params.flow.cron}' ({params.flow.timezone}) "
                f"against {api}; Ctrl+C stops.\nA run now: PREFECT_API_URL={api} "
                f"{tool('prefect')} deployment run '{name}'"
            )
            serve(build_deployment(params, root), limit=1)
    except SegcoreError as err:
        print(f"error: {err.render()}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
