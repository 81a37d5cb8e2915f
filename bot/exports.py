"""Which file to hand out for /export: the adapter in use (diffusers) or its kohya copy (fetched from the
object store first when storage.blob_url names one)."""

from __future__ import annotations

import asyncio
from pathlib import Path, PurePosixPath

import aiosqlite

from storage import artifacts, files
from storage.errors import SubjectError
from storage.subjects import Subject

DIFFUSERS_NAME = "pytorch_lora_weights.safetensors"  # the trainer's file name inside an adapter folder
CHECKPOINT_KOHYA = "kohya.safetensors"  # a checkpoint's kohya copy, beside its adapter/ (trainer/checkpoints.py)
FORMATS = ("diffusers", "kohya")


async def export_file(db: aiosqlite.Connection, subject: Subject, fmt: str, data_dir: Path) -> tuple[bytes, str]:
    """(the file's bytes, the name to send it under) of the subject's LoRA in the format asked for; with an object
    store nothing of it stays on the bot's disk."""
    if subject.adapter_artifact_id is None or subject.state != "trained":
        raise SubjectError(f"{subject.name!r} has no trained adapter to export (it is "
                           f"{subject.state.replace('_', ' ')}).")
    art = await artifacts.get(db, subject.adapter_artifact_id)
    if art is None:
        raise SubjectError(f"The adapter of {subject.name!r} is gone; train it again with /train.")
    if fmt == "kohya":
        data = await _kohya_copy(db, subject, art, data_dir)
    else:
        data = await asyncio.to_thread(files.read_uncached, data_dir, art.path, find_weights)
    safe = "".join(c if c.isalnum() else "-" for c in subject.name)
    return data, f"{safe}-{fmt}-lora.safetensors"


async def _kohya_copy(db: aiosqlite.Connection, subject: Subject, adapter: artifacts.Artifact,
                      data_dir: Path) -> bytes:
    """The kohya file of exactly the adapter in use: its checkpoint's copy, or its own job's final one."""
    missing = SubjectError(f"There is no kohya copy of the version of {subject.name!r} in use; "
                           "export it as diffusers instead.")
    if adapter.meta.get("from_checkpoint") is not None:
        # storage.lifecycle records a kept checkpoint's adapter as <checkpoint folder>/adapter
        rel = PurePosixPath(adapter.path)
        if rel.name != "adapter":
            raise missing
        try:
            return await asyncio.to_thread(files.read_uncached, data_dir, (rel.parent / CHECKPOINT_KOHYA).as_posix())
        except FileNotFoundError:  # a checkpoint written before checkpoints carried one
            raise missing from None
    if adapter.job_id is None:
        raise missing
    kohya = await artifacts.for_job(db, adapter.job_id, kind="adapter_kohya")
    if not kohya:
        raise missing
    return await asyncio.to_thread(files.read_uncached, data_dir, kohya[-1].path, find_weights)


def find_weights(path: Path) -> Path:
    """The .safetensors file itself, or the one inside an adapter or checkpoint folder."""
    if path.is_file():
        return path
    preferred = path / DIFFUSERS_NAME
    if preferred.is_file():
        return preferred
    found = sorted(path.rglob("*.safetensors")) if path.is_dir() else []
    if not found:
        raise SubjectError("The trained file could not be found on disk; ask the bot's operator.")
    return next((p for p in found if p.name == DIFFUSERS_NAME), found[0])
