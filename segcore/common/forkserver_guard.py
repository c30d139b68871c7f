"""Imported by the ``forkserver`` of a worker pool (its preload): the forkserver dies with
the process that started it (see segcore.common.lifeline)."""

from __future__ import annotations

import os

from segcore.common.lifeline import PARENT_ENV, die_with_parent

if os.environ.get(PARENT_ENV):
    die_with_parent(int(os.environ[PARENT_ENV]))
