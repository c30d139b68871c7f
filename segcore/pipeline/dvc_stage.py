"""Run the stages of ``dvc.yaml`` in this process, exactly when and as ``dvc repro`` would.

A caller (the Prefect flow) opens the repository once with :func:`open_pipeline`, which
holds DVC's repository lock for the whole pipeline run, so a second pipeline run (a flow
or ``dvc repro``) in the same repository waits its turn by failing fast with
:class:`PipelineBusyError`. :meth:`DvcPipeline.run` then does for one stage what
``dvc repro`` does, with a Python function in place of the stage's ``cmd``:

1. skip the stage when DVC finds its deps, params, outs and definition unchanged;
2. otherwise remove its outputs (``persist`` ones excepted) and restore them from DVC's
   run cache when this exact stage ran before, else call the function;
3. hash deps and outs, store the outs in the cache, and write the stage's ``dvc.lock``
   entry (plus the run-cache entry when all outputs are cached).

After a pipeline run, ``dvc status`` is therefore clean and ``dvc repro`` has nothing to
do. Staleness comes only from DVC; nothing here decides it.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal, TypeVar

from segcore.common.errors import SegcoreError

if TYPE_CHECKING:
    from dvc.repo import Repo
    from dvc.stage import Stage

T = TypeVar("T")

StageStatus = Literal["ran", "restored", "skipped"]
"""``ran``: the function ran; ``restored``: outputs came from DVC's run cache;
``skipped``: nothing changed."""


class PipelineBusyError(SegcoreError):
    """Another pipeline run (or DVC command) holds the repository's lock."""


class PipelineDefinitionError(SegcoreError):
    """``dvc.yaml`` is missing, invalid or lacks a stage."""


@dataclass(frozen=True)
class StageOutcome:
    """What happened to one stage in a pipeline run.

    Attributes:
        stage: the stage name in ``dvc.yaml``.
        status: ``ran``, ``restored`` or ``skipped``.
        reasons: why DVC called it stale (changed deps, params, outs, definition);
            empty when skipped.
        seconds: wall time of the stage, check and commit included.
    """

    stage: str
    status: StageStatus
    reasons: tuple[str, ...]
    seconds: float


class DvcPipeline:
    """A DVC repository opened for one pipeline run (see :func:`open_pipeline`).

    Args:
        repo: the DVC repository; the caller holds its lock.
    """

    def __init__(self, repo: Repo) -> None:
        self.repo = repo

    @property
    def root(self) -> Path:
        """The repository's root folder."""
        return Path(self.repo.root_dir)

    def stage_names(self) -> list[str]:
        """Names of the stages in ``dvc.yaml``, in the order they are defined."""
        from dvc.dvcfile import load_file

        return list(load_file(self.repo, str(self.root / "dvc.yaml")).stages)

    def _stage(self, name: str) -> Stage:
        from dvc.exceptions import DvcException

        try:
            # A fresh load each time: the lock entries of upstream stages change as they run.
            return self.repo.stage.load_one(str(self.root / "dvc.yaml"), name)
        except KeyError:
            raise PipelineDefinitionError(
                f"{self.root / 'dvc.yaml'}: has no stage {name!r}; add it or restore the file "
                "from git"
            ) from None
        except DvcException as err:
            raise PipelineDefinitionError(
                f"{self.root / 'dvc.yaml'}: cannot be read ({err}); fix the file"
            ) from None

    def changes(self, name: str) -> list[str]:
        """Why ``dvc repro`` would run stage ``name`` now; empty when it is up to date."""
        stage = self._stage(name)
        return self._reasons(stage) if stage.changed() else []

    @staticmethod
    def _reasons(stage: Stage) -> list[str]:
        if not any(entry.hash_info for entry in [*stage.deps, *stage.outs]):
            return ["not in dvc.lock yet"]
        return _describe(stage.status().get(stage.addressing, []))

    def run(self, name: str, fn: Callable[[], T]) -> tuple[StageOutcome, T | None]:
        """Run stage ``name`` through ``fn`` when DVC calls it stale, then record it in DVC.

        Args:
            name: the stage in ``dvc.yaml``.
            fn: does the stage's work (what its ``cmd`` would do), writing its outputs.

        Returns:
            the outcome and ``fn``'s return value (``None`` unless ``fn`` ran).

        Raises:
            whatever ``fn`` raises; DVC's lock and cache are then left as before the
            stage, so the stage stays stale.
        """
        from dvc.stage.cache import RunCacheNotFoundError

        start = time.perf_counter()
        stage = self._stage(name)
        if not stage.changed():
            return StageOutcome(name, "skipped", (), time.perf_counter() - start), None
        reasons = tuple(self._reasons(stage))
        # As `dvc repro`: clear old outputs, then prefer the run cache over running again.
        stage.remove_outs(ignore_remove=False, force=False)
        value: T | None = None
        try:
            self.repo.stage_cache.restore(stage)
            status: StageStatus = "restored"
        except RunCacheNotFoundError:
            stage.save_deps()
            value = fn()
            status = "ran"
        self._record(stage)
        return StageOutcome(name, status, reasons, time.perf_counter() - start), value

    def _record(self, stage: Stage) -> None:
        """Hash deps and outs, cache the outs, write the lock entry (as ``dvc repro``)."""
        from dvc.exceptions import DvcException

        uncached = any(not o.use_cache for o in stage.outs if not (o.is_metric or o.is_plot))
        try:
            stage.save(run_cache=not uncached)
            stage.commit()
        except DvcException as err:
            raise PipelineDefinitionError(
                f"stage {stage.addressing!r} ran, but DVC cannot record it ({err}); make its "
                f"outs in {self.root / 'dvc.yaml'} match the files the stage writes"
            ) from None
        stage.dump(update_pipeline=False)

    def status(self) -> dict[str, list]:
        """``dvc status`` of the whole pipeline (empty when everything is up to date)."""
        return self.repo.status()


def _describe(entries: list) -> list[str]:
    """DVC's status entries -> one readable line per changed item."""
    lines = []
    for entry in entries:
        if isinstance(entry, str):
            lines.append(entry)
            continue
        for kind, items in entry.items():
            for path, change in items.items():
                if isinstance(change, dict):  # params: {"params.yaml": {"train.seed": "modified"}}
                    lines.extend(f"{kind}: {path}: {key} {what}" for key, what in change.items())
                else:
                    lines.append(f"{kind}: {path} {change}")
    return lines


@contextlib.contextmanager
def open_pipeline(root: str | Path) -> Iterator[DvcPipeline]:
    """Open the DVC repository at ``root`` for one pipeline run, holding its lock.

    Files DVC changes (``dvc.lock``, ``.gitignore``) are staged in git at the end when the
    repository sets ``core.autostage``, as ``dvc repro`` does. DVC resolves paths against
    the working directory, so it is ``root`` while the pipeline is open (restored after).

    Raises:
        PipelineDefinitionError: ``root`` is not a DVC repository or has no ``dvc.yaml``.
        PipelineBusyError: another pipeline run or DVC command holds the lock.
    """
    from dvc.exceptions import NotDvcRepoError
    from dvc.lock import LockError
    from dvc.repo import Repo, lock_repo

    root = Path(root).resolve()
    if not (root / "dvc.yaml").is_file():
        raise PipelineDefinitionError(
            f"{root / 'dvc.yaml'}: not found; run the pipeline from the project root"
        )
    with contextlib.ExitStack() as stack:
        stack.enter_context(contextlib.chdir(root))
        try:
            repo = Repo(str(root))
        except NotDvcRepoError:
            raise PipelineDefinitionError(
                f"{root}: not a DVC repository; run `dvc init` there first"
            ) from None
        stack.callback(repo.close)
        try:
            stack.enter_context(lock_repo(repo))
        except LockError:
            raise PipelineBusyError(
                f"{root / '.dvc' / 'tmp' / 'lock'}: another pipeline run or DVC command is "
                "using this repository; wait for it to finish (remove the lock file only if "
                "no such process is left)"
            ) from None
        stack.enter_context(repo.scm_context(quiet=True))
        yield DvcPipeline(repo)
