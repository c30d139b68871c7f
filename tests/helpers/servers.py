"""Real servers for the scale-out tests, on free loopback ports, always stopped again.

Each server runs in its own process group (so its workers stop with it), writes its log to
a file (shown when it fails to start), and is waited for on its health URL with a
timeout. The context managers stop the server however the body ends: SIGTERM to the group,
SIGKILL after a grace period.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
LOOPBACK = "127.0.0.1"
SCRIPTS = ROOT / "scripts"

POSTGRES_NOT_INSTALLABLE = 3
"""Exit code of scripts/start_postgres.sh when PostgreSQL is missing and cannot be installed."""


class ServerError(RuntimeError):
    """A server did not start or answer in time (its log tail is in the message)."""


class PostgresUnavailable(RuntimeError):
    """PostgreSQL is not installed and cannot be installed on this machine."""


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as s:
        s.bind((LOOPBACK, 0))
        return int(s.getsockname()[1])


def http_ok(url: str, timeout_s: float = 2.0) -> bool:
    """Whether ``url`` answers 200 (no retries)."""
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as response:
            return response.status == 200
    except (urllib.error.URLError, OSError):
        return False


@dataclass
class Server:
    """A started server process.

    Attributes:
        name: for messages.
        proc: the process (leader of its own process group).
        url: its base URL.
        log: the file receiving its stdout and stderr.
    """

    name: str
    proc: subprocess.Popen
    url: str
    log: Path

    def log_tail(self, chars: int = 4000) -> str:
        """The end of the server's log."""
        try:
            return self.log.read_text(errors="replace")[-chars:]
        except OSError:
            return ""

    def stop(self, grace_s: float = 3.0) -> None:
        """SIGTERM the process group, SIGKILL what is left after ``grace_s``."""
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(timeout=grace_s)
        # The leader may be gone while its workers linger: end the whole group.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(timeout=10)


def spawn(
    name: str,
    cmd: Sequence[str],
    log: Path,
    *,
    env: dict[str, str | None] | None = None,
    cwd: Path | None = None,
    url: str = "",
) -> Server:
    """Start ``cmd`` in a new process group, its output going to ``log``; no waiting.

    ``env`` is added to this process's environment; a ``None`` value removes the variable.
    """
    log.parent.mkdir(parents=True, exist_ok=True)
    full_env = {**os.environ, **(env or {})}
    with open(log, "ab") as out:
        proc = subprocess.Popen(
            list(cmd),
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env={k: v for k, v in full_env.items() if v is not None},
            cwd=cwd,
            start_new_session=True,
        )
    return Server(name, proc, url, log)


def start(
    name: str,
    cmd: Sequence[str],
    url: str,
    health_url: str,
    log: Path,
    *,
    env: dict[str, str | None] | None = None,
    cwd: Path | None = None,
    timeout_s: float = 180.0,
) -> Server:
    """:func:`spawn` ``cmd``, then :func:`wait_healthy`."""
    server = spawn(name, cmd, log, env=env, cwd=cwd, url=url)
    wait_healthy(server, health_url, timeout_s)
    return server


def wait_healthy(server: Server, health_url: str, timeout_s: float = 180.0) -> None:
    """Wait until ``health_url`` answers 200.

    Raises:
        ServerError: the process exited, or did not answer within ``timeout_s`` (it is
            stopped then).
    """
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if server.proc.poll() is not None:
            server.stop()
            raise ServerError(
                f"{server.name} exited with code {server.proc.returncode}:\n{server.log_tail()}"
            )
        if http_ok(health_url):
            return
        time.sleep(0.5)
    server.stop()
    raise ServerError(
        f"{server.name} did not answer {health_url} within {timeout_s:.0f} s:\n{server.log_tail()}"
    )


# --------------------------------------------------------------------------- PostgreSQL


@contextlib.contextmanager
def postgres(timeout_s: float = 600.0) -> Iterator[str]:
    """A scratch PostgreSQL server on loopback (scripts/start_postgres.sh); yields its URI.

    The cluster lives in a new folder under the system temp dir (the ``postgres`` user must
    be able to reach it when root starts it), removed at the end.

    Raises:
        PostgresUnavailable: PostgreSQL is missing and cannot be installed here.
        ServerError: it is installed but did not start.
    """
    folder = Path(tempfile.mkdtemp(prefix="segcore-pg-"))
    proc = subprocess.run(
        ["bash", str(SCRIPTS / "start_postgres.sh"), "--dir", str(folder)],
        capture_output=True,
        text=True,
        timeout=timeout_s,
        check=False,
    )
    try:
        if proc.returncode == POSTGRES_NOT_INSTALLABLE:
            raise PostgresUnavailable(proc.stderr.strip().splitlines()[-1])
        if proc.returncode != 0:
            raise ServerError(f"scripts/start_postgres.sh failed:\n{proc.stderr[-4000:]}")
        yield proc.stdout.strip().splitlines()[-1]
    finally:
        if (folder / ".dir").is_file():
            subprocess.run(
                ["bash", str(SCRIPTS / "stop_postgres.sh"), str(folder)],
                capture_output=True,
                timeout=120,
                check=False,
            )
        else:
            subprocess.run(["rm", "-rf", str(folder)], check=False)


# --------------------------------------------------------------------------- MLflow


def mlflow_server(backend_uri: str, artifacts: Path, log: Path, *, wait: bool = True) -> Server:
    """``mlflow server`` on a free loopback port with ``backend_uri`` as backend store,
    serving artifacts from the local folder ``artifacts``; healthy unless ``wait`` is false
    (then :func:`wait_healthy` on ``<url>/health`` later). The caller stops it."""
    url = f"http://{LOOPBACK}:{free_port()}"
    cmd = [
        str(BIN / "mlflow"),
        "server",
        "--backend-store-uri",
        backend_uri,
        "--artifacts-destination",
        str(artifacts),
        "--host",
        LOOPBACK,
        "--port",
        url.rsplit(":", 1)[1],
        "--workers",
        "1",
    ]
    server = spawn("mlflow server", cmd, log, url=url)
    if wait:
        wait_healthy(server, f"{url}/health")
    return server


# --------------------------------------------------------------------------- Prefect


def prefect_env(home: Path, api_url: str | None = None) -> dict[str, str]:
    """Environment for Prefect commands against a server of ours, offline."""
    env = {
        "PREFECT_HOME": str(home),
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "PREFECT_UI_ENABLED": "false",
        "PREFECT_LOGGING_LEVEL": "INFO",
        "SEGCORE_PROGRESS": "0",
    }
    if api_url:
        env["PREFECT_API_URL"] = api_url
    return env


def prefect_server(home: Path, log: Path) -> Server:
    """``prefect server start`` on loopback with its database in ``home``; its
    :attr:`Server.url` is the API URL (``.../api``)."""
    port = free_port()
    api = f"http://{LOOPBACK}:{port}/api"
    cmd = [
        str(BIN / "prefect"),
        "server",
        "start",
        "--host",
        LOOPBACK,
        "--port",
        str(port),
    ]
    # The server must not inherit an API URL (it would talk to another server).
    env: dict[str, str | None] = {**prefect_env(home), "PREFECT_API_URL": None}
    return start("prefect server", cmd, api, f"{api}/health", log, env=env, timeout_s=240)


@pytest.fixture(scope="session")
def prefect_api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The API URL of one ``prefect server start`` shared by the session's scale-out tests
    (use it through ``prefect.settings.temporary_settings``; nothing sets it globally)."""
    home = tmp_path_factory.mktemp("prefect_home")
    server = prefect_server(home, home / "server.log")
    try:
        yield server.url
    finally:
        from prefect.events.worker import EventsWorker
        from prefect.logging.handlers import APILogWorker

        # Send what this process still holds for the server before it goes away.
        APILogWorker.drain_all(timeout=30)
        EventsWorker.drain_all(timeout=30)
        server.stop()
