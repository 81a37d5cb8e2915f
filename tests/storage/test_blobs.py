"""storage.blob_url = "s3://bucket/prefix": hosts with separate data directories share photos and outputs through the
object store, and every deletion (/forget, revoke, retention) leaves nothing of the user or subject in it."""

from __future__ import annotations

import asyncio
import socket
import time
from pathlib import Path

import pytest

from bot import exports
from storage import artifacts, blobs, files, jobs, lifecycle, retention, subjects
from storage.config import BotSettings, QueueConfig, RetentionConfig, StorageConfig
from storage.db import fetch_all
from storage.errors import BlobStoreError
from tests.helpers import consented, draft, finish_queued_training
from tests.s3_server import SECRET_KEY, s3_client, s3_keys

PREFIX = "fleet"
DAY = 86_400.0


@pytest.fixture
def host(tmp_path, s3_bucket):
    """host(name): the data directory of one machine of the fleet, empty, attached to the test bucket."""
    made: list[Path] = []

    def make(name: str) -> Path:
        data_dir = tmp_path / name / "data"
        blobs.attach(StorageConfig(data_dir=data_dir, blob_url=f"s3://{s3_bucket}/{PREFIX}"))
        made.append(data_dir)
        return data_dir

    yield make
    for data_dir in made:  # the data directory is its own store again
        blobs.attach(StorageConfig(data_dir=data_dir))


async def _trained(db, data_dir: Path, **kw):
    """A subject trained to the end by a simulated worker on `data_dir`, which publishes what it wrote."""
    subject = await finish_queued_training(db, data_dir, (await consented(db, data_dir, review=False, **kw)).job.id)
    for art in await artifacts.for_subject(db, subject.id):
        files.publish(data_dir, art.path)
    return subject


def _owned(bucket: str, paths) -> list[str]:
    """The keys of recorded paths (files or folders) that are in the bucket."""
    keys = s3_keys(bucket, PREFIX + "/")
    return [k for k in keys for p in paths if k == f"{PREFIX}/{p}" or k.startswith(f"{PREFIX}/{p}/")]


async def _user_paths(db, user_id: int) -> set[str]:
    """Every recorded path of a user: photos, artifacts, and their subjects' and jobs' folders."""
    found: set[str] = set()
    for art in await artifacts.for_user(db, user_id):
        found.add(art.path)
    for row in await fetch_all(db, "SELECT id FROM subjects WHERE owner_id = ?", (user_id,)):
        found |= {p.path for p in await subjects.photos(db, row["id"])} | {f"subjects/{row['id']}"}
    found |= {f"jobs/{r['id']}" for r in await fetch_all(db, "SELECT id FROM jobs WHERE user_id = ?", (user_id,))}
    return found


async def test_a_photo_taken_in_on_one_host_is_read_on_another(db, host, s3_bucket):
    """Photos the bot's host takes in go to the bucket and nowhere else (its disk keeps no copy that a /forget from
    another host could miss), and a worker host with an empty data dir reads them."""
    bot_host, worker_host = host("bot"), host("worker")
    subject = await draft(db, bot_host)
    stored = await subjects.photos(db, subject.id)
    assert s3_keys(s3_bucket) == sorted({f"{PREFIX}/{p.path}" for p in stored})
    assert not [p for p in bot_host.rglob("*") if p.is_file()]
    for photo in stored:
        assert not (worker_host / photo.path).exists()
        assert files.sha256_bytes(files.local(worker_host, photo.path).read_bytes()) == photo.sha256


async def test_an_adapter_trained_on_a_worker_host_is_exported_by_the_bot_host(db, host):
    """/export on the bot's host hands out the adapter a worker on another host trained, in both formats."""
    worker_host, bot_host = host("worker"), host("bot")
    subject = await _trained(db, worker_host)
    assert (await exports.export_file(db, subject, "kohya", bot_host))[0] == b"kohya"
    assert (await exports.export_file(db, subject, "diffusers", bot_host))[0] == b"weights"
    assert not [p for p in bot_host.rglob("*") if p.is_file()]  # sent on, not kept


async def test_forget_leaves_nothing_of_the_user_in_the_bucket(db, host, s3_bucket):
    """/forget on a host that never held the user's files deletes every object of theirs; others' stay."""
    worker_host, bot_host = host("worker"), host("bot")
    await _trained(db, worker_host, owner_id=1)
    other = await draft(db, bot_host, owner_id=2, name="tom")
    mine = await _user_paths(db, 1)
    assert _owned(s3_bucket, mine)
    report = await lifecycle.forget_user(db, user_id=1, data_dir=bot_host)
    assert report.subjects == 1
    assert _owned(s3_bucket, mine) == []
    assert s3_keys(s3_bucket) == sorted(f"{PREFIX}/{p.path}" for p in await subjects.photos(db, other.id))


async def test_revoke_leaves_nothing_of_the_subject_in_the_bucket(db, host, s3_bucket):
    """A moderator's revoke deletes the subject's photos, adapter and folders from the bucket."""
    worker_host, bot_host = host("worker"), host("bot")
    subject = await _trained(db, worker_host)
    theirs = {p.path for p in await subjects.photos(db, subject.id)} | {a.path for a in
                                                                        await artifacts.for_subject(db, subject.id)}
    assert _owned(s3_bucket, theirs)
    await lifecycle.revoke(db, subject_id=subject.id, guild_id=subject.guild_id, moderator_id=99, reason="test",
                           data_dir=bot_host)
    assert _owned(s3_bucket, theirs | {f"subjects/{subject.id}"}) == []
    assert s3_keys(s3_bucket) == []


async def test_retention_deletes_expired_images_from_the_bucket(db, host, s3_bucket):
    """Images past generated_days go from the bucket too, swept on a host that never downloaded them."""
    worker_host, bot_host = host("worker"), host("bot")
    job = await jobs.enqueue(db, kind="generate", user_id=1, params={}, cfg=QueueConfig())
    rel = f"jobs/{job.id}/images/00-seed1.png"
    (worker_host / rel).parent.mkdir(parents=True)
    (worker_host / rel).write_bytes(b"png")
    files.publish(worker_host, rel)
    await artifacts.record(db, kind="image", path=rel, data_dir=worker_host, job_id=job.id, user_id=1)
    assert s3_keys(s3_bucket) == [f"{PREFIX}/{rel}"]
    report = await retention.sweep(db, data_dir=bot_host, cfg=RetentionConfig(generated_days=30),
                                   at=time.time() + 31 * DAY)
    assert report.images == 1 and report.errors == 0
    assert s3_keys(s3_bucket) == []


async def test_retention_collects_orphans_only_the_bucket_holds(db, host, s3_bucket):
    """A job folder whose row is gone and a photo blob nobody uses are collected from the bucket; a used photo
    and a live job's folder stay."""
    bot_host = host("bot")
    subject = await draft(db, bot_host)
    used = [f"{PREFIX}/{p.path}" for p in await subjects.photos(db, subject.id)]
    job = await jobs.enqueue(db, kind="generate", user_id=1, params={}, cfg=QueueConfig())
    client = s3_client()
    for key in (f"{PREFIX}/jobs/{job.id + 100}/grid.png", f"{PREFIX}/blobs/ab/ab12.jpg", f"{PREFIX}/jobs/{job.id}/x"):
        client.put_object(Bucket=s3_bucket, Key=key, Body=b"left behind")
    other_host = host("other")  # the sweep runs where none of it was ever downloaded
    report = await retention.sweep(db, data_dir=other_host, cfg=RetentionConfig(), at=time.time() + 2 * 3600)
    assert report.orphans == 2 and report.errors == 0
    assert s3_keys(s3_bucket) == sorted([*used, f"{PREFIX}/jobs/{job.id}/x"])


async def test_forget_from_the_command_line_reaches_the_bucket(host, s3_bucket, tmp_path):
    """`dreambot forget --user` with storage.blob_url in config.toml deletes the user's objects, from a machine whose
    data dir is empty."""
    from cli.main import main
    from storage import db as database

    async with database.connect(tmp_path / "fleet.sqlite3") as db:
        await _trained(db, host("worker"), owner_id=1)
    assert s3_keys(s3_bucket)
    config = tmp_path / "config.toml"
    config.write_text(f'[storage]\ndata_dir = "{tmp_path / "admin"}"\ndb_path = "{tmp_path / "fleet.sqlite3"}"\n'
                      f'blob_url = "s3://{s3_bucket}/{PREFIX}"\n')
    assert await asyncio.to_thread(main, ["--config", str(config), "forget", "--user", "1"]) == 0
    assert s3_keys(s3_bucket) == []
    blobs.attach(StorageConfig(data_dir=tmp_path / "admin"))


def test_a_folder_is_removed_without_its_namesakes(host, s3_bucket):
    """Removing jobs/1 deletes the objects under it and leaves jobs/10 and jobs/1.png alone."""
    data_dir = host("a")
    for rel in ("jobs/1/a.png", "jobs/1/sub/b.png", "jobs/10/c.png", "jobs/1.png"):
        (data_dir / rel).parent.mkdir(parents=True, exist_ok=True)
        (data_dir / rel).write_bytes(rel.encode())
        files.publish(data_dir, rel)
    assert files.remove(data_dir, "jobs/1")
    assert s3_keys(s3_bucket) == [f"{PREFIX}/jobs/1.png", f"{PREFIX}/jobs/10/c.png"]
    assert not (data_dir / "jobs/1").exists() and (data_dir / "jobs/10/c.png").exists()


def test_a_folder_is_downloaded_whole(host):
    """A recorded folder (a checkpoint) arrives on another host with every file, and nothing half-written."""
    a, b = host("a"), host("b")
    rel = "jobs/3/checkpoints/step-000004"
    for name, data in (("state.json", b"{}"), ("adapter/pytorch_lora_weights.safetensors", b"w" * 10_000)):
        (a / rel / name).parent.mkdir(parents=True, exist_ok=True)
        (a / rel / name).write_bytes(data)
    (a / rel / ".tmp-partial").write_bytes(b"never published")
    files.publish(a, rel)
    got = files.local(b, rel)
    assert sorted(p.relative_to(got).as_posix() for p in got.rglob("*") if p.is_file()) == [
        "adapter/pytorch_lora_weights.safetensors", "state.json"]
    assert (got / "adapter/pytorch_lora_weights.safetensors").read_bytes() == b"w" * 10_000


def test_an_interrupted_download_leaves_nothing_under_the_real_name(host, monkeypatch):
    """A download that fails midway leaves neither a partial file nor a temporary one; the next read succeeds."""
    from botocore.exceptions import EndpointConnectionError

    a, b = host("a"), host("b")
    (a / "blobs/aa").mkdir(parents=True)
    (a / "blobs/aa/aa1.jpg").write_bytes(b"x" * 5000)
    files.publish(a, "blobs/aa/aa1.jpg")
    store = blobs.for_dir(b)
    real = store.client.download_file

    def broken(bucket, key, filename, **kw):
        Path(filename).write_bytes(b"x" * 100)  # half the object, then the connection drops
        raise EndpointConnectionError(endpoint_url="http://store")

    monkeypatch.setattr(store.client, "download_file", broken)
    with pytest.raises(BlobStoreError):
        files.local(b, "blobs/aa/aa1.jpg")
    assert list((b / "blobs").rglob("*")) == [b / "blobs/aa"]
    monkeypatch.setattr(store.client, "download_file", real)
    assert files.local(b, "blobs/aa/aa1.jpg").read_bytes() == b"x" * 5000


def test_a_missing_path_stays_missing(host):
    """A path the store does not hold comes back missing, as a deleted local file would."""
    data_dir = host("a")
    assert not files.local(data_dir, "jobs/5/grid.png").exists()


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_an_unreachable_endpoint_names_the_store_and_what_to_check(s3_env, monkeypatch, tmp_path):
    """Nothing listens at AWS_ENDPOINT_URL: the message names the bucket and endpoint, never the secret key."""
    endpoint = f"http://127.0.0.1:{_closed_port()}"
    monkeypatch.setenv("AWS_ENDPOINT_URL", endpoint)
    monkeypatch.setattr(blobs, "ATTEMPTS", 1)
    store = blobs.attach(StorageConfig(data_dir=tmp_path, blob_url="s3://photos/dreambot"))
    with pytest.raises(BlobStoreError) as err:
        store.check()
    message = str(err.value)
    assert "s3://photos/dreambot" in message and endpoint in message and "AWS_ENDPOINT_URL" in message
    assert SECRET_KEY not in message
    blobs.attach(StorageConfig(data_dir=tmp_path))


def test_a_missing_bucket_says_so(s3_env, tmp_path):
    """A bucket that does not exist is named, with what to do."""
    store = blobs.attach(StorageConfig(data_dir=tmp_path, blob_url="s3://no-such-bucket/x"))
    with pytest.raises(BlobStoreError, match="bucket 'no-such-bucket' does not exist: create it"):
        store.check()
    blobs.attach(StorageConfig(data_dir=tmp_path))


async def test_the_bot_refuses_to_start_without_its_store(s3_env, tmp_path):
    """`dreambot bot` with a blob_url whose bucket is missing stops at once with the store's message."""
    from bot.cli import run_bot

    storage = StorageConfig(data_dir=tmp_path / "data", blob_url="s3://no-such-bucket/x")
    with pytest.raises(BlobStoreError, match="no-such-bucket"):
        await run_bot(BotSettings(), storage, "token")
    blobs.attach(StorageConfig(data_dir=tmp_path / "data"))


@pytest.mark.parametrize("url", ["http://bucket/x", "s3:///prefix"])
def test_a_url_that_is_not_s3_is_refused(url, tmp_path):
    """A blob_url that names no s3:// bucket is refused with the form to use."""
    with pytest.raises(BlobStoreError, match="use s3://bucket/prefix"):
        blobs.attach(StorageConfig(data_dir=tmp_path, blob_url=url))


def test_without_a_blob_url_nothing_leaves_the_data_dir(tmp_path):
    """The default: files stay under data_dir and no object store is asked anything."""
    data_dir = tmp_path / "data"
    store = blobs.attach(StorageConfig(data_dir=data_dir))
    assert not store.remote
    _, rel = files.put_blob(data_dir, b"photo", ".jpg")
    assert files.local(data_dir, rel) == (data_dir / rel).resolve()
    assert files.remove(data_dir, rel) and not (data_dir / rel).exists()


async def test_a_restarted_worker_drops_what_a_killed_one_left_in_its_cache(db, host):
    """A worker killed mid-job leaves that job's photos and files on its disk; at its next start it drops every
    cached photo, job folder and adapter that no running job uses (a /forget elsewhere could not reach them), and
    keeps a running job's (another worker may share the data dir)."""
    worker = host("worker")
    ended = await _trained(db, worker, owner_id=1)
    running = (await consented(db, worker, owner_id=2, review=False, name="tom")).job
    claimed = await jobs.claim(db, worker_id="w2", lease_seconds=60, kinds=("train",))
    assert claimed.id == running.id
    left = [p.path for s in (ended, running) for p in await subjects.photos(db, s.id if s is ended else s.subject_id)]
    left += [f"jobs/{running.id}/checkpoints/step-000002/state.json", f"jobs/{running.id - 1}/grid.png",
             f"subjects/{ended.id}/job-1-adapter/w.safetensors", f"subjects/{running.subject_id}/x.safetensors"]
    for rel in left:
        if not files.local(worker, rel).exists():
            (worker / rel).parent.mkdir(parents=True, exist_ok=True)
            (worker / rel).write_bytes(b"x")
    await retention.drop_stale_cache(db, data_dir=worker)
    kept = sorted(p.relative_to(worker).as_posix() for p in worker.rglob("*") if p.is_file())
    running_photos = [p.path for p in await subjects.photos(db, running.subject_id)]
    assert kept == sorted([*running_photos, f"jobs/{running.id}/checkpoints/step-000002/state.json",
                           f"subjects/{running.subject_id}/x.safetensors"])
