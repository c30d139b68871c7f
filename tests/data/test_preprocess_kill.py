"""Killing `segcore preprocess` (SIGKILL, or SIGTERM as timeout, Docker, Kubernetes and
Prefect send it) leaves no process behind: forkserver, workers, resource tracker."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
import yaml
from test_preprocess import make_dataset


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM])
def test_killed_preprocess_leaves_no_process(tmp_path: Path, sig: signal.Signals) -> None:
    ds = make_dataset(tmp_path / "raw", n=200, size=(400, 400))
    table = ds.save(tmp_path / "split.parquet")
    out = tmp_path / "pre"
    params = tmp_path / "params.yaml"
    params.write_text(
        yaml.safe_dump(
            {
                "preprocess": {
                    "dataset": str(table),
                    "out_dir": str(out),
                    "param": {"image_width": 256, "image_height": 256},
                }
            }
        )
    )
    proc = subprocess.Popen(
        [sys.executable, "-m", "segcore.cli", "preprocess", "-p", str(params), "--workers", "2"],
        env={**os.environ, "SEGCORE_PROGRESS": "0"},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    children: list[psutil.Process] = []
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and proc.poll() is None:
            if len(list((out / "samples").glob("0*.safetensors"))) >= 2:
                break
            time.sleep(0.01)
        assert proc.poll() is None, "preprocessing ended before it could be killed"
        children = psutil.Process(proc.pid).children(recursive=True)
        assert len(children) >= 3  # forkserver and 2 workers (and the resource tracker)
        proc.send_signal(sig)
        proc.wait(timeout=30)
        _, alive = psutil.wait_procs(children, timeout=5)
        assert not alive, [(p.pid, p.cmdline()) for p in alive]
    finally:
        proc.kill()
        for child in children:  # leave nothing behind when the test fails
            with contextlib.suppress(psutil.NoSuchProcess):
                child.kill()
