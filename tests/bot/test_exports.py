"""/export's file choice: the adapter in use, and the kohya copy of exactly that version."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from bot.exports import export_file
from storage import artifacts, jobs
from storage.config import QueueConfig
from storage.errors import SubjectError
from storage.subjects import Subject


def _subject(adapter_artifact_id: int) -> Subject:
    """A trained subject using the given adapter (only the fields export_file reads matter)."""
    blank = {f.name: None for f in dataclasses.fields(Subject)}
    return Subject(**blank | {"id": 1, "owner_id": 1, "name": "rex", "state": "trained",
                              "adapter_artifact_id": adapter_artifact_id})


async def _put(db, data_dir: Path, rel: str, files: dict[str, bytes], **kw) -> artifacts.Artifact:
    """Write small fake files under data_dir/rel ("" for rel itself) and record rel as an artifact."""
    for name, data in files.items():
        path = data_dir / rel / name if name else data_dir / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    return await artifacts.record(db, path=rel, data_dir=data_dir, **kw)


async def _trained_job(db, data_dir: Path, name: str, *, checkpoint_kohya: bool = True) -> dict[str, int]:
    """A train job's artifacts laid out as trainer/train.py and the worker leave them; returns their ids."""
    job = await jobs.enqueue(db, kind="train", user_id=1, params={}, cfg=QueueConfig())
    files = {"trainable.safetensors": b"state",
             "adapter/pytorch_lora_weights.safetensors": f"{name}-step2".encode()}
    if checkpoint_kohya:
        files["kohya.safetensors"] = f"{name}-step2-kohya".encode()
    ckpt = await _put(db, data_dir, f"jobs/{job.id}/checkpoints/step-000002", files, kind="checkpoint",
                      job_id=job.id, meta={"step": 2})
    final = await _put(db, data_dir, f"subjects/1/job-{job.id}-adapter",
                       {"pytorch_lora_weights.safetensors": name.encode(), "config.json": b"{}"},
                       kind="adapter", job_id=job.id)
    await _put(db, data_dir, f"subjects/1/job-{job.id}-kohya.safetensors", {"": f"{name}-kohya".encode()},
               kind="adapter_kohya", job_id=job.id)
    # what storage.lifecycle.choose_adapter records when the owner keeps the step-2 checkpoint
    kept = await _put(db, data_dir, f"{ckpt.path}/adapter", {}, kind="adapter", job_id=job.id,
                      meta={"steps": 2, "from_checkpoint": ckpt.id})
    return {"final": final.id, "step 2": kept.id}


@pytest.mark.parametrize(("job", "version", "fmt", "content"), [
    ("first", "final", "kohya", b"first-kohya"),  # not the second job's, though that one is newer
    ("second", "final", "kohya", b"second-kohya"),
    ("first", "step 2", "kohya", b"first-step2-kohya"),  # not the final kohya file
    ("first", "step 2", "diffusers", b"first-step2"),
    ("first", "final", "diffusers", b"first"),
])
async def test_export_hands_out_the_version_in_use(db, tmp_path, job, version, fmt, content):
    """Either format is the file of the adapter in use: its own job's final copy, or its checkpoint's."""
    data_dir = tmp_path / "data"
    made = {name: await _trained_job(db, data_dir, name) for name in ("first", "second")}
    data, name = await export_file(db, _subject(made[job][version]), fmt, data_dir)
    assert data == content and name == f"rex-{fmt}-lora.safetensors"


async def test_kohya_export_of_a_checkpoint_without_its_copy_is_refused(db, tmp_path):
    """A checkpoint saved before checkpoints carried a kohya copy never falls back to the final file."""
    data_dir = tmp_path / "data"
    made = await _trained_job(db, data_dir, "old", checkpoint_kohya=False)
    with pytest.raises(SubjectError, match="export it as diffusers"):
        await export_file(db, _subject(made["step 2"]), "kohya", data_dir)
