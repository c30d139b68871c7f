"""segcore as a user installs it: a wheel built from this checkout, installed into a new
virtual environment that has nothing of this repository.

A full dependency install takes minutes, so the new environment borrows the third-party
packages of the test environment: one ``.pth`` line puts that environment's site-packages
on ``sys.path`` after its own. A ``.pth`` line adds a folder but runs none of the ``.pth``
files inside it, so the test environment's editable segcore (a ``.pth`` import hook) does
not come along; the wheel, installed first and without dependencies, is the only segcore.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGE_SOURCES = ("pyproject.toml", "README.md", "segcore", "flows")
"""What building the wheel reads from the checkout."""


def build_wheel(dest: Path) -> Path:
    """Build segcore's wheel (``pip wheel --no-deps``) from a copy of the package sources,
    so the checkout gets no ``build/`` folder; returns the wheel's path."""
    src = dest / "src"
    src.mkdir(parents=True)
    for name in PACKAGE_SOURCES:
        if (ROOT / name).is_dir():
            shutil.copytree(ROOT / name, src / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(ROOT / name, src / name)
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation",
         "--disable-pip-version-check", "-w", str(dest / "dist"), str(src)],
        check=True, capture_output=True, text=True,
    )  # fmt: skip
    (wheel,) = (dest / "dist").glob("segcore-*.whl")
    return wheel


def venv_with_wheel(dest: Path, wheel: Path) -> Path:
    """A new virtual environment at ``dest`` with ``wheel`` installed (no dependencies) and
    the test environment's third-party packages behind it; returns its Python."""
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(dest)], check=True)
    python = dest / "bin" / "python"
    subprocess.run(
        [sys.executable, "-m", "pip", "--python", str(python), "install", "-q", "--no-deps",
         "--no-index", "--disable-pip-version-check", str(wheel)],
        check=True, capture_output=True, text=True,
    )  # fmt: skip
    version = f"python{sys.version_info.major}.{sys.version_info.minor}"
    site = dest / "lib" / version / "site-packages"
    (site / "zz_test_environment.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    return python


def clean_env(python: Path, **extra: str) -> dict[str, str]:
    """The environment of a user whose shell has ``python``'s folder first on ``PATH``:
    without this test run's ``PYTHONPATH`` (which points at the checkout)."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env["PATH"] = f"{python.parent}{os.pathsep}{env.get('PATH', '')}"
    return {**env, **extra}
