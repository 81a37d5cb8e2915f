"""bench/gpu_check.sh --dry-run: the GPU check's steps run on the CPU with the tiny models, as CI runs them."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_gpu_check_dry_run_exits_0_and_writes_its_figures(tmp_path):
    """The dry run exits 0 and writes bench.gpu_step's JSON with every figure the GPU run reports."""
    env = {**os.environ, "OUT": str(tmp_path), "PYTHON": sys.executable, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(["bash", "bench/gpu_check.sh", "--dry-run"], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    result = json.loads((tmp_path / "gpu_step.json").read_text())
    assert {"device", "dry_run", "rounds", "step_ms", "best", "best_step_ms", "speedup", "peak_share",
            "imagine_1_s", "imagine_4_s", "targets", "met"} <= set(result)
    assert set(result["step_ms"]) == {"plain", "eager"}  # the dry run leaves the compiled variants out
    assert result["dry_run"] and result["speedup"] > 0
    assert (tmp_path / "train_sdxl.json").is_file()


def test_gpu_check_exits_1_when_a_step_fails(tmp_path):
    """A failing step (here an interpreter that always fails) still lets the others run, then the check exits 1."""
    env = {**os.environ, "OUT": str(tmp_path), "PYTHON": "false"}
    done = subprocess.run(["bash", "bench/gpu_check.sh", "--dry-run"], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 1
    assert "== gpu_step FAILED" in done.stdout and "== train_sdxl FAILED" in done.stdout
