"""Artifacts: files and folders the worker produced (class-image sets, checkpoints, adapters, grids, images)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiosqlite

from storage import files
from storage.db import fetch_all, fetch_one, now, transaction

KINDS = ("class_images", "checkpoint", "adapter", "adapter_kohya", "grid", "image")


@dataclass(frozen=True)
class Artifact:
    id: int
    kind: str
    job_id: int | None
    subject_id: int | None
    user_id: int | None
    cache_key: str | None
    path: str
    sha256: str
    size_bytes: int
    meta: dict[str, Any]
    created_at: float

    @classmethod
    def from_row(cls, row: aiosqlite.Row) -> Artifact:
        d = dict(row)
        d["meta"] = json.loads(d["meta"])
        return cls(**d)


async def record(db: aiosqlite.Connection, *, kind: str, path: str, data_dir: Path, job_id: int | None = None,
                 subject_id: int | None = None, user_id: int | None = None, cache_key: str | None = None,
                 meta: dict[str, Any] | None = None) -> Artifact:
    """Record a file or folder already written under data_dir; its hash and size are measured here. With an object
    store, the writer publishes it first (files.publish): uploading here would hold the transaction open."""
    if kind not in KINDS:
        raise ValueError(f"unknown artifact kind {kind!r}")
    digest, size = files.tree_sha256(files.resolve(data_dir, path))
    query = """
        INSERT INTO artifacts (kind, job_id, subject_id, user_id, cache_key, path, sha256, size_bytes, meta, created_at)
        VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING *
    """
    async with transaction(db):
        row = await fetch_one(db, query, (kind, job_id, subject_id, user_id, cache_key, path, digest, size,
                                          json.dumps(meta or {}), now()))
    return Artifact.from_row(row)


async def get(db: aiosqlite.Connection, artifact_id: int) -> Artifact | None:
    row = await fetch_one(db, "SELECT * FROM artifacts WHERE id = ?", (artifact_id,))
    return Artifact.from_row(row) if row else None


async def find_cached(db: aiosqlite.Connection, cache_key: str) -> Artifact | None:
    row = await fetch_one(db, "SELECT * FROM artifacts WHERE cache_key = ?", (cache_key,))
    return Artifact.from_row(row) if row else None


async def for_subject(db: aiosqlite.Connection, subject_id: int, kind: str | None = None) -> list[Artifact]:
    query = "SELECT * FROM artifacts WHERE subject_id = ? AND (? IS NULL OR kind = ?) ORDER BY id"
    return [Artifact.from_row(r) for r in await fetch_all(db, query, (subject_id, kind, kind))]


async def for_job(db: aiosqlite.Connection, job_id: int, kind: str | None = None) -> list[Artifact]:
    query = "SELECT * FROM artifacts WHERE job_id = ? AND (? IS NULL OR kind = ?) ORDER BY id"
    return [Artifact.from_row(r) for r in await fetch_all(db, query, (job_id, kind, kind))]


async def for_user(db: aiosqlite.Connection, user_id: int) -> list[Artifact]:
    query = "SELECT * FROM artifacts WHERE user_id = ? ORDER BY id"
    return [Artifact.from_row(r) for r in await fetch_all(db, query, (user_id,))]


async def delete(db: aiosqlite.Connection, *, artifact_id: int, data_dir: Path) -> bool:
    """Remove the row, then the file or folder on disk and in the object store; True when the artifact existed."""
    async with transaction(db):
        row = await fetch_one(db, "DELETE FROM artifacts WHERE id = ? RETURNING path", (artifact_id,))
    if row is None:
        return False
    files.remove(data_dir, row["path"])
    return True
