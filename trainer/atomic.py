"""Files and folders that appear whole or not at all: written under a temporary sibling name, then renamed.

A crash or an error mid-write leaves at worst a `.tmp-<name>-<random>` sibling, never a half-written
file under the real name. The random part keeps two writers of the same target (a worker that lost
its lease and the one that took the job over) out of each other's way.
"""

from __future__ import annotations

import os
import secrets
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from storage.files import fsync_path

TMP_PREFIX = ".tmp-"


def tmp_sibling(path: Path) -> Path:
    return path.with_name(f"{TMP_PREFIX}{path.name}-{secrets.token_hex(4)}")


@contextmanager
def atomic_file(path: Path) -> Iterator[Path]:
    """Yield a temporary path beside `path` to write; on success fsync it and rename it over `path`."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = tmp_sibling(path)
    try:
        yield tmp
        fsync_path(tmp)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fsync_path(path.parent)


@contextmanager
def atomic_dir(path: Path) -> Iterator[Path]:
    """Yield an empty temporary folder beside `path` to fill; on success it becomes `path`, files fsynced.

    A folder cannot be renamed over a non-empty one, so an existing `path` is first renamed aside and
    deleted after the swap: a crash between the two renames leaves no `path` (and the old folder
    aside), never a mix of old and new files.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = tmp_sibling(path)
    tmp.mkdir()
    try:
        yield tmp
        for sub in sorted(tmp.rglob("*"), reverse=True):  # files before the folders that list them
            fsync_path(sub)
        fsync_path(tmp)
        old = tmp_sibling(path) if path.exists() else None
        if old is not None:
            os.replace(path, old)
        try:
            os.replace(tmp, path)
        except BaseException:
            if old is not None:
                os.replace(old, path)
            raise
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    fsync_path(path.parent)
    if old is not None:
        _remove(old)


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)
