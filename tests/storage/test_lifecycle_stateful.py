"""Users, a moderator and a worker act in any order; after every step the promises made to users hold.

Hypothesis interleaves /train, Confirm, /cancel, revoke, ban, /forget, /imagine, Re-roll, a worker's
step (it writes its files, then records them), a worker killed and its lease reaped, and the sweep.
The worker is simulated through storage as trainer/worker.py drives it, so each rule is one thing
that can happen between two others in production.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import tempfile
import time
import uuid
from pathlib import Path

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from storage import consent, guilds, jobs, lifecycle, retention
from storage import db as database
from storage.config import QueueConfig, RetentionConfig
from storage.db import fetch_all, fetch_one
from storage.errors import DreambotError, LeaseLost, StopRequested
from tests.helpers import photos
from tests.pg_server import shared_server

GUILD, MOD = 9, 999
USERS = (1, 2, 3)
MAX_SUBJECTS, IMAGES_PER_DAY = 2, 6
QUEUE = QueueConfig(lease_seconds=60, max_queued_per_user=2, backoff_base_seconds=0.0, backoff_max_seconds=0.0)
user_ids = st.sampled_from(USERS)
picks = st.integers(min_value=0, max_value=50)


class Lifecycle(RuleBasedStateMachine):
    def location(self):
        """The database of one example: a fresh SQLite file."""
        return self.tmp / "db.sqlite3"

    @initialize()
    def open(self) -> None:
        self.tmp = Path(tempfile.mkdtemp(prefix="lifecycle-"))
        self.data = self.tmp / "data"
        self.loop = asyncio.new_event_loop()
        self._cm = database.connect(self.location())
        self.db = self.run(self._cm.__aenter__())
        self.run(guilds.set_policy(self.db, guild_id=GUILD, by=MOD, max_subjects_per_user=MAX_SUBJECTS,
                                   max_images_per_day=IMAGES_PER_DAY))
        self.job = None  # what the simulated worker holds: (job, phase)
        self.skew = 0.0  # seconds the worker's clock is ahead: a killed worker's lease has expired
        self.forgotten: set[int] = set()
        self.forgotten_paths: set[str] = set()

    def teardown(self) -> None:
        if getattr(self, "db", None) is None:
            return
        try:
            # Drained, every job ends in a final state: the worker runs until the queue is empty.
            for _ in range(60):
                if not self.run(fetch_all(self.db, "SELECT id FROM jobs WHERE state IN ('queued', 'running')")):
                    break
                self.worker_step()
            stuck = self.run(fetch_all(self.db, "SELECT id, state FROM jobs WHERE state IN ('queued', 'running')"))
            assert not stuck, f"jobs never ended: {[dict(r) for r in stuck]}"
        finally:
            self.run(self._cm.__aexit__(None, None, None))
            self.loop.close()
            shutil.rmtree(self.tmp, ignore_errors=True)
            self.drop()

    def drop(self) -> None:
        pass

    def run(self, coro):
        return self.loop.run_until_complete(coro)

    def attempt(self, coro):
        """Run a user's or moderator's action; a refusal (a DreambotError) is a normal outcome."""
        try:
            return self.run(coro)
        except DreambotError:
            return None

    def rows(self, query: str, params=()) -> list:
        return self.run(fetch_all(self.db, query, params))

    def pick(self, query: str, index: int, params=()):
        found = self.rows(query, params)
        return found[index % len(found)] if found else None

    # --- users and moderators --------------------------------------------------------------------------

    @rule(user=user_ids, name=st.sampled_from(("rex", "fido", "tom")))
    def train(self, user: int, name: str) -> None:
        made = self.attempt(lifecycle.create_draft(self.db, owner_id=user, guild_id=GUILD, channel_id=5, name=name,
                                            class_noun="dog", preset=None, photos=photos(3, seed=user),
                                            data_dir=self.data, limits=lifecycle.Limits(user_quota_bytes=10**6)))
        if made is not None:
            self.forgotten.discard(user)  # a forgotten user may come back; their new photos are theirs

    def has(self, query: str) -> bool:
        """For preconditions: Hypothesis draws only rules that can do something, so it reaches deep states."""
        return getattr(self, "db", None) is not None and bool(self.rows(query))

    @precondition(lambda self: self.has("SELECT 1 FROM subjects WHERE state = 'draft'"))
    @rule(i=picks)
    def confirm(self, i: int) -> None:
        row = self.pick("SELECT id, owner_id FROM subjects WHERE state = 'draft' ORDER BY id", i)
        if row is not None:
            self.attempt(lifecycle.confirm(self.db, subject_id=row["id"], user_id=row["owner_id"], queue=QUEUE,
                                           review_required=False))

    @precondition(lambda self: self.has("SELECT 1 FROM jobs WHERE state IN ('queued', 'running')"))
    @rule(i=picks)
    def cancel(self, i: int) -> None:
        row = self.pick("SELECT id, user_id FROM jobs WHERE state IN ('queued', 'running') ORDER BY id", i)
        if row is not None:
            self.attempt(lifecycle.cancel_job(self.db, job_id=row["id"], user_id=row["user_id"], data_dir=self.data))

    @precondition(lambda self: self.has("SELECT 1 FROM subjects WHERE state NOT IN ('draft', 'revoked')"))
    @rule(i=picks)
    def revoke(self, i: int) -> None:
        row = self.pick("SELECT id FROM subjects WHERE state NOT IN ('draft', 'revoked') ORDER BY id", i)
        if row is not None:
            self.attempt(lifecycle.revoke(self.db, subject_id=row["id"], guild_id=GUILD, moderator_id=MOD,
                                          reason="test", data_dir=self.data))

    @rule(user=user_ids)
    def ban(self, user: int) -> None:
        self.run(lifecycle.ban(self.db, guild_id=GUILD, user_id=user, by=MOD, reason="test", data_dir=self.data))
        self.forgotten.discard(user)  # a ban is a new fact about them, recorded after the forgetting

    @rule(user=user_ids)
    def forget(self, user: int) -> None:
        subjects = self.rows("SELECT id FROM subjects WHERE owner_id = ?", (user,))
        job_rows = self.rows("SELECT * FROM jobs WHERE user_id = ?", (user,))
        self.run(lifecycle.forget_user(self.db, user_id=user, data_dir=self.data, actor_id=user))
        self.forgotten.add(user)
        self.forgotten_paths |= {f"subjects/{r['id']}" for r in subjects}
        for row in job_rows:
            self.forgotten_paths |= set(lifecycle.job_paths(jobs.Job.from_row(row)))

    @precondition(lambda self: self.has("SELECT 1 FROM subjects WHERE state = 'trained'"))
    @rule(user=user_ids, count=st.integers(min_value=1, max_value=3))
    def imagine(self, user: int, count: int) -> None:
        row = self.pick("SELECT name FROM subjects WHERE owner_id = ? AND state = 'trained'", 0, (user,))
        if row is not None:
            request = lifecycle.ImageRequest(user_id=user, guild_id=GUILD, channel_id=5, prompt=f"{row['name']} in space",
                                             count=count)
            self.attempt(lifecycle.queue_images(self.db, request, queue=QUEUE))

    @precondition(lambda self: self.has("SELECT 1 FROM jobs WHERE kind = 'generate'"))
    @rule(i=picks, action=st.sampled_from(("reroll", "vary")))
    def reroll(self, i: int, action: str) -> None:
        row = self.pick("SELECT id, user_id FROM jobs WHERE kind = 'generate' ORDER BY id", i)
        if row is not None:
            self.attempt(lifecycle.repeat_images(self.db, job_id=row["id"], user_id=row["user_id"], action=action,
                                                 channel_id=5, queue=QUEUE))

    # --- the worker ------------------------------------------------------------------------------------

    @rule()
    def worker_step(self) -> None:
        """One step of the worker: claim, or write the next file and record it, or finish."""
        at = time.time() + self.skew
        self.run(lifecycle.reap(self.db, data_dir=self.data, at=at))
        if self.job is None:
            job = self.run(jobs.claim(self.db, worker_id="w", lease_seconds=QUEUE.lease_seconds, at=at))
            if job is not None:
                self.job = (job, 0)
            return
        job, phase = self.job
        try:
            self.job = (job, phase + 1)
            self.run(self._advance(job, phase))
        except StopRequested:
            self.job = None
            try:
                self.run(lifecycle.job_stopped(self.db, job_id=job.id, lease_token=job.lease_token,
                                               data_dir=self.data))
            except LeaseLost:
                self._lost(job)
        except LeaseLost:
            self.job = None
            self._lost(job)
        except DreambotError as exc:  # a domain refusal fails the job for good, as the worker does
            self.job = None
            try:
                self.run(lifecycle.fail_job(self.db, job_id=job.id, lease_token=job.lease_token, error=str(exc),
                                            retryable=False, queue=QUEUE))
            except LeaseLost:
                self._lost(job)

    def _lost(self, job: jobs.Job) -> None:
        if not self.run(lifecycle.job_exists(self.db, job.id)):  # as trainer/worker.py does
            lifecycle.remove_files(self.data, self.run(lifecycle.abandoned_paths(self.db, job)))

    async def _advance(self, job: jobs.Job, phase: int) -> None:
        token = job.lease_token
        if job.kind == "train":
            if phase == 0:
                await lifecycle.begin_training(self.db, job_id=job.id, lease_token=token)
            elif phase == 1:  # a checkpoint and its grid: written first, then recorded (fenced)
                ckpt, grid = f"jobs/{job.id}/checkpoints/step-1", f"jobs/{job.id}/grids/step-1.png"
                _write(self.data / ckpt / "adapter" / "w.safetensors")
                _write(self.data / grid)
                await lifecycle.record_artifact(self.db, job_id=job.id, lease_token=token, kind="checkpoint",
                                                path=ckpt, data_dir=self.data, meta={"step": 1})
                art = await lifecycle.record_artifact(self.db, job_id=job.id, lease_token=token, kind="grid",
                                                      path=grid, data_dir=self.data, meta={"step": 1})
                await lifecycle.post_event(self.db, job_id=job.id, lease_token=token, kind="grid",
                                           payload={"job_id": job.id, "step": 1, "artifact_id": art.id})
            else:
                adapter = f"subjects/{job.subject_id}/job-{job.id}-adapter"
                kohya = f"subjects/{job.subject_id}/job-{job.id}-kohya.safetensors"
                _write(self.data / adapter / "pytorch_lora_weights.safetensors")
                _write(self.data / kohya)
                self.job = None
                await lifecycle.finish_training(self.db, job_id=job.id, lease_token=token, adapter_path=adapter,
                                                kohya_path=kohya, meta={}, result={"steps": 2}, data_dir=self.data,
                                                gpu_seconds=1.0)
        else:
            n = int(job.params.get("n") or 1)
            paths = [f"jobs/{job.id}/images/{i}.png" for i in range(n)]
            for p in [*paths, f"jobs/{job.id}/grid.png"]:
                _write(self.data / p)
            self.job = None
            await lifecycle.finish_generation(self.db, job_id=job.id, lease_token=token, image_paths=paths,
                                              grid_path=f"jobs/{job.id}/grid.png", seeds=list(range(n)), prompt="p",
                                              data_dir=self.data, gpu_seconds=1.0)

    @precondition(lambda self: self.job is not None)
    @rule()
    def worker_killed_and_restarted(self) -> None:
        """The worker dies mid-job; a new one reaps its lease once it expires."""
        self.job = None
        self.skew += QUEUE.lease_seconds + 1
        self.run(lifecycle.reap(self.db, data_dir=self.data, at=time.time() + self.skew))

    @rule()
    def sweep(self) -> None:
        """The sweep never raises: drafts past their time, retention and orphans, whatever state things are in."""
        self.run(lifecycle.expire_drafts(self.db, data_dir=self.data, max_age=0))
        report = self.run(retention.sweep(self.db, data_dir=self.data, cfg=RetentionConfig(generated_days=0,
                                                                                             failed_job_photos_days=0)))
        assert report.errors == 0

    # --- the promises ----------------------------------------------------------------------------------

    @invariant()
    def nothing_trains_without_consent(self) -> None:
        if getattr(self, "db", None) is None:
            return
        for row in self.rows("SELECT id FROM subjects WHERE state IN ('queued', 'training', 'trained')"):
            assert self.run(consent.active(self.db, row["id"])) is not None, f"subject {row['id']} has no consent"
        query = """SELECT j.id FROM jobs AS j JOIN subjects AS s ON s.id = j.subject_id
                   WHERE j.kind = 'train' AND j.state = 'running' AND j.cancel_requested = 0
                     AND NOT EXISTS (SELECT 1 FROM consents AS c WHERE c.subject_id = s.id AND c.revoked_at IS NULL)"""
        assert not self.rows(query)

    @invariant()
    def forgotten_users_leave_nothing(self) -> None:
        if getattr(self, "db", None) is None:
            return
        for user in self.forgotten:
            for table, column in (("subjects", "owner_id"), ("jobs", "user_id"), ("consents", "user_id"),
                                  ("usage", "user_id"), ("artifacts", "user_id"), ("outbox", "user_id"),
                                  ("rate_limits", "user_id")):
                assert not self.rows(f"SELECT 1 FROM {table} WHERE {column} = ?", (user,)), (table, user)
            left = self.rows("SELECT action FROM audit_log WHERE target_user_id = ?", (user,))
            assert all(r["action"] == "user.forgotten" for r in left)
            blobs = {f"blobs/{p}" for p in _blob_names(user)}
            assert not any((self.data / p).exists() for p in blobs), f"photos of forgotten user {user} remain"
        assert not [p for p in self.forgotten_paths if (self.data / p).exists()], "a forgotten user's files remain"

    @invariant()
    def no_limit_is_exceeded(self) -> None:
        if getattr(self, "db", None) is None:
            return
        for user in USERS:
            (live,) = self.run(fetch_one(self.db, "SELECT count(*) FROM subjects WHERE owner_id = ? AND state IN "
                                                  "('draft', 'consented', 'queued', 'training', 'trained')", (user,)))
            assert live <= MAX_SUBJECTS
            (active,) = self.run(fetch_one(self.db, "SELECT count(*) FROM jobs WHERE user_id = ? AND state IN "
                                                    "('queued', 'running')", (user,)))
            assert active <= QUEUE.max_queued_per_user
            used = self.run(guilds.images_requested_since(self.db, user_id=user, guild_id=GUILD, since=0))
            assert used <= IMAGES_PER_DAY

    @invariant()
    def nothing_is_delivered_after_a_cancel_or_revoke(self) -> None:
        if getattr(self, "db", None) is None:
            return
        query = """SELECT o.id, o.kind FROM outbox AS o JOIN jobs AS j ON j.id = o.job_id
                   LEFT JOIN subjects AS s ON s.id = j.subject_id
                   WHERE o.delivered_at IS NULL AND o.kind IN ('images', 'grid', 'train_done', 'progress')
                     AND (j.state = 'cancelled' OR j.cancel_requested = 1 OR s.state = 'revoked')"""
        assert not self.rows(query)


def _write(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"x")


def _blob_names(user: int) -> list[str]:
    from storage.files import sha256_bytes

    return [f"{h[:2]}/{h}.jpg" for h in (sha256_bytes(p.data) for p in photos(3, seed=user))]


# LIFECYCLE_EXAMPLES=2000 explores further (about 10 minutes); CI runs 100 (about 25 s).
Lifecycle.TestCase.settings = settings(max_examples=int(os.environ.get("LIFECYCLE_EXAMPLES", "100")),
                                       stateful_step_count=50, deadline=None,
                                       suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
TestLifecycle = Lifecycle.TestCase


class LifecyclePostgres(Lifecycle):
    """The same machine on PostgreSQL: a fresh database on the session's server per example."""

    def location(self):
        self.dbname = f"lifecycle_{uuid.uuid4().hex[:12]}"
        return shared_server().create_database(self.dbname)

    def drop(self) -> None:
        shared_server().drop_database(self.dbname)


# Each example creates and migrates a database on a real server: fewer of them (about 40 s).
LifecyclePostgres.TestCase.settings = settings(
    max_examples=int(os.environ.get("LIFECYCLE_PG_EXAMPLES", "30")), stateful_step_count=50, deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
TestLifecyclePostgres = LifecyclePostgres.TestCase
