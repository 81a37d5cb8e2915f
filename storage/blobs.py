"""Where recorded files live: the data directory itself, or an S3-compatible object store mirroring it.

With `storage.blob_url` empty the data directory *is* the store, and every call here is a no-op. With
`s3://bucket/prefix`, each recorded relative path `rel` is also the object key `prefix/rel` (a folder is
every key under `prefix/rel/`), so a worker on another host needs no shared disk: its data directory is
only a scratch cache that `materialize` fills on demand. The endpoint (AWS_ENDPOINT_URL), region and
credentials (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY) come from the environment, read by boto3 itself;
no message here ever names a credential.

`attach` (called once by each entry point with its StorageConfig) says which store serves a data
directory; storage.files asks `for_dir` on every write, read and delete.
"""

from __future__ import annotations

import logging
import os
import secrets
import shutil
import threading
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path, PurePosixPath
from typing import Protocol
from urllib.parse import urlsplit

from storage.errors import BlobStoreError

log = logging.getLogger(__name__)

TMP_PREFIX = ".tmp-"  # a file or folder still being written (storage.files, trainer.atomic): never published
CONNECT_TIMEOUT_SECONDS = 10
READ_TIMEOUT_SECONDS = 120
ATTEMPTS = 4  # botocore's own retries of a failed request, backing off between them


class Store(Protocol):
    remote: bool  # False: the data directory is the store

    def check(self) -> None: ...
    def publish(self, rel: str) -> None: ...
    def put_bytes(self, rel: str, data: bytes) -> None: ...
    def get_bytes(self, rel: str) -> bytes: ...
    def materialize(self, rel: str) -> Path: ...
    def remove(self, rel: str) -> bool: ...
    def children(self, folder: str) -> set[str]: ...
    def files(self, folder: str) -> list[tuple[str, float]]: ...


class LocalStore:
    """The data directory is the store: nothing to upload, download or delete beyond the local files."""

    remote = False

    def __init__(self, root: Path):
        self.root = root

    def check(self) -> None:
        pass

    def publish(self, rel: str) -> None:
        pass

    def put_bytes(self, rel: str, data: bytes) -> None:
        raise NotImplementedError("the local store keeps files under data_dir: write them there (files.put_blob)")

    def get_bytes(self, rel: str) -> bytes:
        return (self.root / rel).read_bytes()

    def materialize(self, rel: str) -> Path:
        return self.root / rel

    def remove(self, rel: str) -> bool:
        return False

    def children(self, folder: str) -> set[str]:
        return set()

    def files(self, folder: str) -> list[tuple[str, float]]:
        return []


def parse_url(url: str) -> tuple[str, str]:
    """(bucket, key prefix without slashes at either end) of `s3://bucket/prefix`."""
    parts = urlsplit(url)
    if parts.scheme != "s3" or not parts.netloc:
        raise BlobStoreError(f"storage.blob_url = {url!r} is not an object store URL: use s3://bucket/prefix, "
                             "or leave it empty to keep files under data_dir.")
    return parts.netloc, parts.path.strip("/")


class S3Store:
    """An S3-compatible bucket under a key prefix, with `root` (the data directory) as this host's cache."""

    remote = True

    def __init__(self, url: str, root: Path, *, client=None):
        self.url = url
        self.bucket, self.prefix = parse_url(url)
        self.root = root
        self._client = client
        self._lock = threading.Lock()

    @property
    def client(self):
        with self._lock:  # a boto3 client is thread-safe once made; making one is not
            if self._client is None:
                import boto3
                from botocore.config import Config

                for name in ("botocore", "boto3", "s3transfer"):  # their debug lines carry request signatures
                    if logging.getLogger(name).getEffectiveLevel() < logging.INFO:
                        logging.getLogger(name).setLevel(logging.INFO)
                self._client = boto3.session.Session().client("s3", config=Config(
                    connect_timeout=CONNECT_TIMEOUT_SECONDS, read_timeout=READ_TIMEOUT_SECONDS,
                    retries={"max_attempts": ATTEMPTS, "mode": "standard"}))
            return self._client

    def where(self) -> str:
        """The bucket, prefix and endpoint, for messages (never a credential)."""
        try:
            endpoint = self.client.meta.endpoint_url
        except Exception:  # the client itself could not be made (say, no region): name the URL alone
            endpoint = os.environ.get("AWS_ENDPOINT_URL") or "the default AWS endpoint"
        parts = urlsplit(endpoint)
        if parts.username or parts.password:  # never repeat a password written into the endpoint
            endpoint = parts._replace(netloc=parts.hostname + (f":{parts.port}" if parts.port else "")).geturl()
        return f"{self.url} at {endpoint}"

    # --- the operations storage.files uses ---------------------------------------------------------

    def check(self) -> None:
        """Raise BlobStoreError unless the bucket exists and answers with these credentials."""
        with self._errors("check the bucket"):
            self.client.head_bucket(Bucket=self.bucket)

    def publish(self, rel: str) -> None:
        """Upload the file, or every file of the folder, at data_dir/rel (temporary names left out)."""
        path = self.root / rel
        if path.is_dir():
            uploads = [(f, f"{rel}/{f.relative_to(path).as_posix()}") for f in sorted(path.rglob("*"))
                       if f.is_file() and not _is_tmp(f.relative_to(path).as_posix())]
        elif path.is_file():
            uploads = [(path, rel)]
        else:
            raise FileNotFoundError(f"nothing to publish at {path}")
        with self._errors(f"upload {rel}"):
            for file, name in uploads:
                self.client.upload_file(str(file), self.bucket, self.key(name))
        log.debug("published %s (%d files)", rel, len(uploads))

    def put_bytes(self, rel: str, data: bytes) -> None:
        """Upload `data` as the object of `rel` without writing it on this host's disk."""
        with self._errors(f"upload {rel}"):
            self.client.put_object(Bucket=self.bucket, Key=self.key(rel), Body=data)

    def get_bytes(self, rel: str) -> bytes:
        """The object of `rel`, read into memory without touching this host's disk; FileNotFoundError if absent."""
        with self._errors(f"download {rel}"):
            try:
                return self.client.get_object(Bucket=self.bucket, Key=self.key(rel))["Body"].read()
            except self.client.exceptions.NoSuchKey:
                raise FileNotFoundError(f"{rel} is not in the object store") from None

    def materialize(self, rel: str) -> Path:
        """data_dir/rel, downloaded first when it is missing here (a file, or a folder's every object).

        Written under a temporary sibling name and renamed, so a killed process never leaves a partial file
        or folder under the real name. A path the store does not hold either is returned as it is (missing):
        the caller reports it as it would a deleted local file."""
        path = self.root / rel
        if path.exists():
            return path
        objects = list(self._objects(rel))
        if not objects:
            return path
        key = self.key(rel)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f"{TMP_PREFIX}{path.name}-{secrets.token_hex(4)}")
        try:
            with self._errors(f"download {rel}"):
                if len(objects) == 1 and objects[0][0] == key:
                    self.client.download_file(self.bucket, key, str(tmp))
                else:
                    for name, _ in objects:
                        target = tmp / name[len(key) + 1:]
                        target.parent.mkdir(parents=True, exist_ok=True)
                        self.client.download_file(self.bucket, name, str(target))
            try:
                os.replace(tmp, path)
            except OSError:
                if not path.exists():  # not a concurrent download of the same folder finishing first
                    raise
        finally:
            if tmp.is_dir():
                shutil.rmtree(tmp, ignore_errors=True)
            else:
                tmp.unlink(missing_ok=True)
        log.debug("materialized %s (%d objects)", rel, len(objects))
        return path

    def remove(self, rel: str) -> bool:
        """Delete the object, or every object under the folder; True when there was one."""
        names = [name for name, _ in self._objects(rel, include_tmp=True)]
        with self._errors(f"delete {rel}"):
            for start in range(0, len(names), 1000):  # DeleteObjects takes at most 1000 keys
                batch = [{"Key": name} for name in names[start:start + 1000]]
                answer = self.client.delete_objects(Bucket=self.bucket, Delete={"Objects": batch, "Quiet": True})
                if answer.get("Errors"):
                    failed = answer["Errors"][0]
                    raise BlobStoreError(f"The object store {self.where()} refused to delete {failed.get('Key')!r} "
                                         f"({failed.get('Code')}); the retention sweep will try again.")
        return bool(names)

    def children(self, folder: str) -> set[str]:
        """Names directly under `folder` in the store (its sub-folders and files)."""
        base = self.key(folder) + "/"
        found: set[str] = set()
        with self._errors(f"list {folder}"):
            pages = self.client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=base,
                                                                           Delimiter="/")
            for page in pages:
                found.update(p["Prefix"][len(base):].rstrip("/") for p in page.get("CommonPrefixes", []))
                found.update(o["Key"][len(base):] for o in page.get("Contents", []))
        return {name for name in found if name and not _is_tmp(name)}

    def files(self, folder: str) -> list[tuple[str, float]]:
        """(recorded relative path, last-modified time) of every object under `folder`."""
        strip = len(self.prefix) + 1 if self.prefix else 0
        return [(name[strip:], mtime) for name, mtime in self._objects(folder)]

    # --- helpers -------------------------------------------------------------------------------------

    def key(self, rel: str) -> str:
        """The object key of a recorded relative path; refuses one that could escape the prefix."""
        parts = PurePosixPath(rel).parts
        if not parts or PurePosixPath(rel).is_absolute() or ".." in parts:
            raise ValueError(f"recorded path {rel!r} is not a relative path inside the store")
        clean = "/".join(parts)
        return f"{self.prefix}/{clean}" if self.prefix else clean

    def _objects(self, rel: str, *, include_tmp: bool = False) -> Iterator[tuple[str, float]]:
        """(key, last-modified) of the object `rel` and of every object under the folder `rel`; never those of
        a sibling that merely starts with the same characters (jobs/1 is not jobs/10)."""
        key = self.key(rel)
        with self._errors(f"list {rel}"):
            for page in self.client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=key):
                for obj in page.get("Contents", []):
                    name = obj["Key"]
                    if name != key and not name.startswith(key + "/"):
                        continue
                    if not include_tmp and _is_tmp(name[len(key):]):
                        continue
                    modified = obj["LastModified"]
                    yield name, modified.timestamp() if isinstance(modified, datetime) else float(modified)

    def _errors(self, doing: str):
        return _Translate(self, doing)


class _Translate:
    """Turns boto3's errors into a BlobStoreError naming the bucket, endpoint and what to check."""

    def __init__(self, store: S3Store, doing: str):
        self.store, self.doing = store, doing

    def __enter__(self):
        return self

    def __exit__(self, kind, exc, tb) -> bool:
        if exc is None or isinstance(exc, BlobStoreError):
            return False
        from botocore import exceptions as boto

        if isinstance(exc, boto.NoCredentialsError | boto.PartialCredentialsError):
            hint = "no credentials were found: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY"
        elif isinstance(exc, boto.ClientError):
            code = str(exc.response.get("Error", {}).get("Code", "error"))
            if code in ("NoSuchBucket", "404"):
                hint = (f"the bucket {self.store.bucket!r} does not exist: create it, or fix the bucket in "
                        "storage.blob_url")
            elif code in ("AccessDenied", "403", "InvalidAccessKeyId", "SignatureDoesNotMatch"):
                hint = (f"access was refused ({code}): check AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY and the "
                        "bucket's permissions")
            else:
                hint = f"the store answered {code}"
        elif isinstance(exc, boto.BotoCoreError):
            hint = (f"it could not be reached ({type(exc).__name__}): check AWS_ENDPOINT_URL and that the store "
                    "is running")
        else:
            return False  # an OSError writing the local cache, say: the caller's own error
        raise BlobStoreError(f"The object store {self.store.where()} failed to {self.doing}: {hint}.") from exc


def _is_tmp(rel: str) -> bool:
    return any(part.startswith(TMP_PREFIX) for part in PurePosixPath(rel).parts)


# --- which store serves a data directory -------------------------------------------------------------

_stores: dict[Path, S3Store] = {}
_stores_lock = threading.Lock()


def attach(storage) -> Store:
    """The store `storage` (a StorageConfig) names, registered for its data directory; idempotent, and makes no
    request (call `check` for that). An empty blob_url makes the data directory its own store again."""
    root = Path(storage.data_dir).resolve()
    url = storage.blob_url
    with _stores_lock:
        if not url:
            _stores.pop(root, None)
            return LocalStore(root)
        known = _stores.get(root)
        if known is None or known.url != url:
            known = _stores[root] = S3Store(url, root)
        return known


def for_dir(data_dir: Path | str) -> Store:
    """The store serving `data_dir`: the attached object store, or the directory itself."""
    root = Path(data_dir).resolve()
    return _stores.get(root) or LocalStore(root)
