"""The file store under the data directory: content-addressed blobs, atomic writes, real deletion.

Paths recorded in the database are relative to the data directory and are built only from
hashes and ids, never from a name a user typed. With an object store attached (storage.blobs), the
data directory is this host's cache of it: `publish` uploads what was written here, `local` downloads
what is about to be read, and `remove` deletes in both places.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from pathlib import Path

from storage import blobs

BLOB_DIR = "blobs"


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def tree_sha256(path: Path) -> tuple[str, int]:
    """Hash and total size of a file, or of a folder's files (names and contents, in order)."""
    if path.is_file():
        return sha256_file(path), path.stat().st_size
    h, size = hashlib.sha256(), 0
    for f in sorted(p for p in path.rglob("*") if p.is_file()):
        h.update(f.relative_to(path).as_posix().encode() + b"\0" + bytes.fromhex(sha256_file(f)))
        size += f.stat().st_size
    return h.hexdigest(), size


def atomic_write(path: Path, data: bytes) -> None:
    """Write to a temporary file beside `path`, fsync, then rename over it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=path.suffix)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    fsync_path(path.parent)


def fsync_path(path: Path) -> None:
    """Flush a file, or a folder's entries (after a rename into it), to disk."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def put_blob(data_dir: Path, data: bytes, suffix: str) -> tuple[str, str]:
    """Store `data` content-addressed, and publish it; returns (sha256, path relative to data_dir). Idempotent."""
    digest = sha256_bytes(data)
    rel = Path(BLOB_DIR) / digest[:2] / f"{digest}{suffix}"
    store = blobs.for_dir(data_dir)
    if store.remote:
        # The bucket keeps the only copy: a photo leaves no trace on the disk of the host that took it in (the
        # bot's), which a /forget run by another process could not reach. Uploaded even when the object exists:
        # it is fresh again for the sweep, which may have been about to collect an unused copy.
        store.put_bytes(rel.as_posix(), data)
        return digest, rel.as_posix()
    target = data_dir / rel
    if target.exists():
        os.utime(target)  # fresh again: the sweep collects only blobs left unused for a while
    else:
        atomic_write(target, data)
    return digest, rel.as_posix()


def resolve(data_dir: Path, rel: str) -> Path:
    """The absolute path of a recorded relative path; refuses anything that escapes the data directory."""
    root = data_dir.resolve()
    path = (root / rel).resolve()
    if root != path and root not in path.parents:
        raise ValueError(f"recorded path {rel!r} is outside the data directory")
    return path


def local(data_dir: Path, rel: str) -> Path:
    """The absolute path of a recorded file or folder about to be read, downloaded from the object store first
    when this host does not have it yet (a missing one is returned missing, as without a store)."""
    resolve(data_dir, rel)  # refuses an escaping path before any request
    return blobs.for_dir(data_dir).materialize(rel)


def publish(data_dir: Path, rel: str) -> None:
    """Upload a file or folder written under data_dir to the object store, before its path is recorded, so a
    worker or bot on another host can read it. A no-op without an object store."""
    resolve(data_dir, rel)
    blobs.for_dir(data_dir).publish(rel)


def read_uncached(data_dir: Path, rel: str, pick=None) -> bytes:
    """The bytes of a recorded file, or of `pick(folder)` inside a recorded folder, for a process that only passes
    them on (the bot posting an image, sending an export): with an object store nothing of it stays on this
    host's disk (a file is read straight into memory; a folder's pick is downloaded, read and dropped)."""
    store = blobs.for_dir(data_dir)
    resolve(data_dir, rel)
    if store.remote and pick is None:
        return store.get_bytes(rel)
    try:
        path = local(data_dir, rel)
        return (pick(path) if pick else path).read_bytes()
    finally:
        evict(data_dir, rel)


def evict(data_dir: Path, rel: str) -> bool:
    """Drop this host's cached copy of a recorded file or folder that the object store holds (a worker, after a
    job, so a later /forget leaves no copy on its disk); a no-op without an object store, where the copy is the
    file. True if a copy was dropped."""
    if not blobs.for_dir(data_dir).remote:
        return False
    path = resolve(data_dir, rel)
    if path.is_dir():
        shutil.rmtree(path, ignore_errors=True)
        return True
    if path.exists():
        path.unlink(missing_ok=True)
        return True
    return False


def remove(data_dir: Path, rel: str) -> bool:
    """Delete a recorded file or folder for real, here and in the object store; True if something was removed."""
    path = resolve(data_dir, rel)
    removed = False
    if path.is_dir():
        shutil.rmtree(path)
        removed = True
    elif path.exists():
        path.unlink()
        removed = True
    return blobs.for_dir(data_dir).remove(rel) or removed
