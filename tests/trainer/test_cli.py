"""The trainer's commands, run as a user would: `dreambot train` killed and run again resumes."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from trainer.cli import substitute

ROOT = Path(__file__).resolve().parents[2]


def _env(tiny_model: Path, data_dir: Path) -> dict:
    return {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1", "DREAMBOT_STORAGE_DATA_DIR": str(data_dir),
            "DREAMBOT_TRAINER_BASE_MODEL": str(tiny_model), "DREAMBOT_TRAINER_DEVICE": "cpu",
            "DREAMBOT_TRAINER_RESOLUTION": "64", "DREAMBOT_TRAINER_CLASS_IMAGES": "2",
            "DREAMBOT_TRAINER_SAMPLE_STEPS": "2", "DREAMBOT_TRAINER_CHECKPOINT_EVERY": "5",
            "DREAMBOT_TRAINER_POLL_SECONDS": "0.2", "DREAMBOT_STORAGE_QUEUE_LEASE_SECONDS": "2"}


def test_train_resumes_after_the_process_is_killed(tiny_model, photo_paths, tmp_path):
    """SIGKILL after a checkpoint; the same command again resumes from that checkpoint and finishes."""
    data_dir, out = tmp_path / "data", tmp_path / "out"
    cmd = [sys.executable, "-m", "cli.main", "train", "--name", "rex", "--class-noun", "dog", "--steps", "30",
           "--out", str(out), *map(str, photo_paths)]
    env = _env(tiny_model, data_dir)
    first = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while not list(data_dir.glob("jobs/*/checkpoints/step-*")):
        assert first.poll() is None and time.monotonic() < deadline, "no checkpoint before the run ended"
        time.sleep(0.05)
    first.send_signal(signal.SIGKILL)
    first.wait()
    killed_at = max(int(p.name.split("-")[1]) for p in data_dir.glob("jobs/*/checkpoints/step-*"))
    assert killed_at < 30

    second = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=240)
    assert second.returncode == 0, second.stderr[-3000:]
    resumed = re.search(r"Resuming from the checkpoint at step (\d+) of 30", second.stdout + second.stderr)
    assert resumed and int(resumed.group(1)) >= killed_at
    assert (out / "adapter" / "pytorch_lora_weights.safetensors").is_file()
    assert (out / "kohya_lora.safetensors").is_file() and list(out.glob("grid-*.png"))


@pytest.mark.parametrize(("prompt", "expected"), [
    ("Rex in space", "sks dog in space"),
    ("{subject} on the moon", "sks dog on the moon"),
    ("rexy and rex", "rexy and sks dog"),
])
def test_subject_names_become_trained_words(prompt, expected):
    """The subject's name (whole word, any case) or {subject} becomes the token and class."""
    assert substitute(prompt, name="rex", token="sks", class_noun="dog") == expected
