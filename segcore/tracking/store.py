"""MLflow store health: is the tracking store there, and is a failure its absence?

- **Start of a run**: :func:`check_store` asks the store with a short timeout (a tracking
  server's ``/health``, or a connection to a database store), so a run against a server
  that is down fails within seconds, with the fix in the message, before anything trains.
  (MLflow's own client retries for minutes, which is right for a blip in the middle of a
  run but not for a server that is simply not there.)
- **During and at the end of training**: when the store stops answering, training goes on:
  the per-epoch history is in the history file and the bundles are on disk. The training
  callback stops logging after the first failure (:func:`is_store_unreachable` tells such
  failures from real errors) and the run is left open; :mod:`segcore.tracking.catch_up`
  completes it later.
"""

from __future__ import annotations

import logging
import urllib.error
import urllib.request
from collections.abc import Callable

from segcore.common.errors import SegcoreError

log = logging.getLogger(__name__)

STORE_TIMEOUT_S = 5.0
"""How long :func:`check_store` waits for the store to answer."""

UNREACHABLE_CODES = frozenset(
    {"INTERNAL_ERROR", "TEMPORARILY_UNAVAILABLE", "REQUEST_LIMIT_EXCEEDED", "DEADLINE_EXCEEDED"}
)
"""MLflow error codes of a store that is down or overloaded (connection failures included)."""

_DATABASE_SCHEMES = ("postgresql", "mysql")


class StoreUnreachableError(SegcoreError):
    """The MLflow tracking store does not answer."""


def check_store(uri: str, *, hint: str = "", timeout_s: float = STORE_TIMEOUT_S) -> None:
    """Raise unless the MLflow store at ``uri`` answers within ``timeout_s`` seconds.

    Tracking servers (``http``/``https``) are asked for ``/health`` (any answer below 500
    counts: a server behind authentication answers too); PostgreSQL and MySQL stores get a
    connection. Local stores (``sqlite``, ``file``) and others are not checked.

    Args:
        uri: the tracking URI.
        hint: appended to the message, e.g. what is kept on disk.
        timeout_s: seconds to wait.

    Raises:
        StoreUnreachableError: no answer, a refused connection, or a server error.
    """
    scheme = uri.split(":", 1)[0].lower()
    if scheme in ("http", "https"):
        problem = _http_problem(uri.rstrip("/") + "/health", timeout_s)
    elif scheme.split("+", 1)[0] in _DATABASE_SCHEMES:
        problem = _database_problem(uri, timeout_s)
    else:
        return
    if problem is None:
        return
    raise StoreUnreachableError(
        f"MLflow tracking store {_redact(uri)} does not answer ({problem}); start it, or point "
        "MLFLOW_TRACKING_URI (or tracking.tracking_uri in params.yaml) at a running one "
        f"(unset both to use the repository's mlflow.db).{' ' + hint if hint else ''}"
    )


def _redact(uri: str) -> str:
    """``uri`` without a password (``user:secret@host`` -> ``user:***@host``)."""
    head, sep, rest = uri.partition("://")
    creds, at, host = rest.rpartition("@")
    if not at or ":" not in creds:
        return uri
    return f"{head}{sep}{creds.split(':', 1)[0]}:***@{host}"


def _http_problem(url: str, timeout_s: float) -> str | None:
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as response:
            status = response.status
    except urllib.error.HTTPError as err:  # it answered, with an error status
        status = err.code
    except (urllib.error.URLError, OSError) as err:
        reason = getattr(err, "reason", err)
        return f"{type(reason).__name__}: {reason}" if str(reason) else type(reason).__name__
    return f"HTTP {status} from {url}" if status >= 500 else None


def _database_problem(uri: str, timeout_s: float) -> str | None:
    import sqlalchemy
    from sqlalchemy.exc import SQLAlchemyError

    try:
        engine = sqlalchemy.create_engine(
            uri, connect_args={"connect_timeout": max(2, round(timeout_s))}
        )
    except ImportError as err:
        return f"its database driver is missing: {err}; install it (PostgreSQL: psycopg[binary])"
    try:
        with engine.connect():
            return None
    except SQLAlchemyError as err:
        return str(err.orig if getattr(err, "orig", None) else err).strip().splitlines()[0]
    finally:
        engine.dispose()


def is_store_unreachable(err: BaseException) -> bool:
    """Whether an MLflow error means the store is down or overloaded (not a bad request)."""
    from mlflow.exceptions import MlflowException

    return isinstance(err, MlflowException) and err.error_code in UNREACHABLE_CODES


def unless_store_lost(action: Callable[[], object], what: str) -> str | None:
    """Run ``action``; when the store does not answer, warn (``what`` says what happens
    instead) and return the reason rather than raise. Other errors propagate."""
    from mlflow.exceptions import MlflowException

    try:
        action()
    except MlflowException as err:
        if not is_store_unreachable(err):
            raise
        log.warning("MLflow store stopped answering (%s); %s", err.message, what)
        return err.message
    return None
