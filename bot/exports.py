"""Which file to hand out for /export: the adapter in use (diffusers) or its kohya copy."""

from __future__ import annotations

from pathlib import Path

import aiosqlite

from storage import artifacts, files
from storage.errors import SubjectError
from storage.subjects import Subject

DIFFUSERS_NAME = "pytorch_lora_weights.safetensors"  # the trainer's file name inside an adapter folder
FORMATS = ("diffusers", "kohya")


async def export_file(db: aiosqlite.Connection, subject: Subject, fmt: str, data_dir: Path) -> tuple[Path, str]:
    """(path on disk, file name to send) of the subject's LoRA in the format asked for."""
    if subject.adapter_artifact_id is None or subject.state in ("revoked", "rejected"):
        raise SubjectError(f"{subject.name!r} has no trained adapter to export (it is "
                           f"{subject.state.replace('_', ' ')}).")
    if fmt == "kohya":
        kohya = await artifacts.for_subject(db, subject.id, kind="adapter_kohya")
        if not kohya:
            raise SubjectError(f"There is no kohya copy of {subject.name!r}; export it as diffusers instead.")
        art = kohya[-1]
    else:
        art = await artifacts.get(db, subject.adapter_artifact_id)
        if art is None:
            raise SubjectError(f"The adapter of {subject.name!r} is gone; train it again with /train.")
    path = find_weights(files.resolve(data_dir, art.path))
    safe = "".join(c if c.isalnum() else "-" for c in subject.name)
    return path, f"{safe}-{fmt}-lora.safetensors"


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
