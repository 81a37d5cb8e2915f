"""The trainer's commands, run as a user would: `dreambot train` needs consent, and killed and run again resumes."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from storage import consent, jobs, subjects
from storage import db as database
from storage.subjects import Subject
from trainer.cli import LOCAL_USER_ID, substitute

ROOT = Path(__file__).resolve().parents[2]


def _env(tiny_model: Path | str, data_dir: Path) -> dict:
    return {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1", "DREAMBOT_STORAGE_DATA_DIR": str(data_dir),
            "DREAMBOT_TRAINER_BASE_MODEL": str(tiny_model), "DREAMBOT_TRAINER_DEVICE": "cpu",
            "DREAMBOT_TRAINER_RESOLUTION": "64", "DREAMBOT_TRAINER_CLASS_IMAGES": "2",
            "DREAMBOT_TRAINER_SAMPLE_STEPS": "2", "DREAMBOT_TRAINER_CHECKPOINT_EVERY": "5",
            "DREAMBOT_TRAINER_GRID_STEPS": "2", "DREAMBOT_TRAINER_FINAL_GRID_STEPS": "2",
            "DREAMBOT_TRAINER_POLL_SECONDS": "0.2", "DREAMBOT_STORAGE_QUEUE_LEASE_SECONDS": "2"}


def test_train_resumes_after_the_process_is_killed(tiny_model, photo_paths, tmp_path):
    """SIGKILL after a checkpoint; the same command again resumes from that checkpoint and finishes."""
    data_dir, out = tmp_path / "data", tmp_path / "out"
    cmd = [sys.executable, "-m", "cli.main", "train", "--name", "rex", "--class-noun", "dog", "--steps", "30",
           "--consent", "--out", str(out), *map(str, photo_paths)]
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


def _train_without_consent(photo_paths, data_dir: Path) -> subprocess.CompletedProcess:
    """`dreambot train` with no --consent and no terminal to answer on (stdin is not a tty)."""
    cmd = [sys.executable, "-m", "cli.main", "train", "--name", "rex", "--class-noun", "dog", *map(str, photo_paths)]
    return subprocess.run(cmd, cwd=ROOT, env=_env("no-model-is-loaded", data_dir), stdin=subprocess.DEVNULL,
                          capture_output=True, text=True, timeout=120)


async def test_train_without_consent_trains_nothing(photo_paths, tmp_path):
    """Without --consent or an interactive yes, `dreambot train` exits non-zero and queues and records nothing."""
    data_dir = tmp_path / "data"
    run = _train_without_consent(photo_paths, data_dir)
    assert run.returncode != 0 and "--consent" in run.stderr
    assert "Before dreambot trains" in run.stdout  # the text it would have needed consent to
    async with database.connect(data_dir / "dreambot.sqlite3") as db:
        assert await jobs.list_jobs(db) == []
        assert await consent.for_user(db, LOCAL_USER_ID) == []


async def test_train_without_consent_keeps_no_photos(photo_paths, tmp_path):
    """Refused for want of consent, `dreambot train` keeps neither a subject nor a photo of it."""
    data_dir = tmp_path / "data"
    assert _train_without_consent(photo_paths, data_dir).returncode != 0
    async with database.connect(data_dir / "dreambot.sqlite3") as db:
        assert await subjects.list_for_owner(db, LOCAL_USER_ID) == []
    assert not list(data_dir.glob("blobs/*/*"))


async def test_training_a_child_from_the_command_line_needs_a_named_reviewer(photo_paths, tmp_path):
    """`dreambot train` of a class noun that names a minor refuses without --reviewed-by and keeps nothing."""
    data_dir = tmp_path / "data"
    cmd = [sys.executable, "-m", "cli.main", "train", "--name", "lily", "--class-noun", "little girl", "--consent",
           *map(str, photo_paths)]
    run = subprocess.run(cmd, cwd=ROOT, env=_env("no-model-is-loaded", data_dir), stdin=subprocess.DEVNULL,
                         capture_output=True, text=True, timeout=120)
    assert run.returncode != 0 and "--reviewed-by" in run.stderr and "Traceback" not in run.stderr
    async with database.connect(data_dir / "dreambot.sqlite3") as db:
        assert await jobs.list_jobs(db) == []
        assert await subjects.list_for_owner(db, LOCAL_USER_ID) == []


REX = Subject(id=1, owner_id=LOCAL_USER_ID, guild_id=None, name="rex", token="sks", class_noun="dog", state="trained",
              adapter_artifact_id=1, created_at=0.0, updated_at=0.0)


@pytest.mark.parametrize(("prompt", "expected"), [
    ("Rex in space", "a photo of sks dog in space"),
    ("{subject} on the moon", "a photo of sks dog on the moon"),
    ("rexy and rex", "rexy and sks dog"),
    ("in space", "a photo of sks dog in space"),
])
def test_subject_names_become_trained_words(prompt, expected):
    """As in the bot (storage.prompts.expand): the name (whole word, any case) or {subject} becomes the token and
    class, with "a photo of" in front when the prompt starts with it; a prompt naming it not at all gets it."""
    assert substitute(prompt, REX) == expected


def test_imagine_from_an_adapter_folder_withholds_flagged_images(pipe, train_cfg, photo_paths, tmp_path,
                                                                 tiny_model, flags_everything, capsys):
    """`dreambot imagine --subject DIR` checks its images as the worker does: flagged ones are not written."""
    import dataclasses

    from tests.trainer.conftest import make_app_cfg
    from trainer import train
    from trainer.cli import build_parser
    from trainer.models import pick_runtime

    cfg = dataclasses.replace(train_cfg, steps=1, checkpoint_every=1, class_images=0)
    train.train(pipe, pick_runtime("cpu"), cfg, instance_paths=photo_paths[:1], class_dir=None,
                out_dir=tmp_path / "job", export_dir=tmp_path / "adapter", kohya_path=tmp_path / "kohya.safetensors")
    app = make_app_cfg(tiny_model, tmp_path / "data")
    app = dataclasses.replace(app, trainer=dataclasses.replace(app.trainer, safety_checker=str(flags_everything)))
    args = build_parser().parse_args(["imagine", "rex in space", "--subject", str(tmp_path / "adapter"), "--n", "2",
                                      "--steps", "1", "--out", str(tmp_path / "out")])
    assert args.func(args, app) == 0
    assert "2 image(s) withheld" in capsys.readouterr().out
    assert not list((tmp_path / "out").glob("*.png"))


def test_toy_subject_writes_the_photos_and_prints_what_trains_on_them(tmp_path, capsys):
    """`dreambot toy-subject DIR` writes the toy subject's photos and prints the shipped model and its settings."""
    import json

    from storage.config import Config
    from trainer.cli import build_parser
    from trainer.toyworld import dreambooth

    args = build_parser().parse_args(["toy-subject", str(tmp_path)])
    assert args.func(args, Config()) == 0
    info = json.loads(capsys.readouterr().out)
    assert sorted(Path(p).name for p in info["photos"]) == sorted(p.name for p in tmp_path.iterdir())
    assert (info["model"], info["class_noun"]) == (str(dreambooth.TOY_MODEL), "circle")
    assert info["trainer"]["learning_rate_scale"] == dreambooth.LEARNING_RATE_SCALE
    assert info["resolution"] == 64 and "safety_checker" not in info["trainer"]
