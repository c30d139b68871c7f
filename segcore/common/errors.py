"""Errors that reach the user.

Every problem with user input (files, parameters, command-line options) is raised as a
:class:`SegcoreError`. It carries one or more problems, each naming the file or key and
the fix. The CLI prints them without a traceback and exits with :data:`EXIT_USER_ERROR`.
"""

from __future__ import annotations

from collections.abc import Iterable

EXIT_USER_ERROR = 2
"""Exit code for bad input (files, parameters, options)."""

EXIT_PARTIAL_FAILURE = 3
"""Exit code when a batch command finished but some of its inputs failed."""


class SegcoreError(Exception):
    """Bad user input; holds every problem found, so the user can fix them all at once.

    Args:
        problems: one message per problem; each names the file or key and the fix.
        title: a one-line summary printed above the problems.
    """

    def __init__(self, problems: str | Iterable[str], title: str | None = None) -> None:
        self.problems = [problems] if isinstance(problems, str) else list(problems)
        if not self.problems:
            raise ValueError("SegcoreError needs at least one problem")
        self.title = title
        super().__init__(self.render())

    def render(self) -> str:
        """The message as printed: the title, then one line per problem."""
        if len(self.problems) == 1 and self.title is None:
            return self.problems[0]
        head = self.title or f"{len(self.problems)} problems found"
        return head + "\n" + "\n".join(f"  - {p}" for p in self.problems)


class ParamsError(SegcoreError):
    """Invalid parameters in params.yaml or on the command line."""


class DatasetError(SegcoreError):
    """Invalid or inconsistent dataset files (images, labels, tables)."""


class Problems:
    """Collects problems while validating, then raises them together.

    >>> problems = Problems()
    >>> problems.add("batch_size: must be > 0 (got 0); set it to 1 or more")
    >>> problems.raise_if_any(ParamsError, "params.yaml is invalid")
    Traceback (most recent call last):
    ...
    segcore.common.errors.ParamsError: batch_size: must be > 0 (got 0); set it to 1 or more
    """

    def __init__(self) -> None:
        self.items: list[str] = []

    def add(self, message: str) -> None:
        self.items.append(message)

    def extend(self, messages: Iterable[str]) -> None:
        self.items.extend(messages)

    def __bool__(self) -> bool:
        return bool(self.items)

    def __len__(self) -> int:
        return len(self.items)

    def raise_if_any(
        self, kind: type[SegcoreError] = SegcoreError, title: str | None = None
    ) -> None:
        if self.items:
            raise kind(self.items, title=title if len(self.items) > 1 else None)
