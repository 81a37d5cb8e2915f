"""The durable job queue: a table of jobs with leases, fencing tokens, retries and cancellation.

Life of a job: queued -> running (claimed under a lease) -> succeeded | failed | cancelled | dead.
A worker renews its lease by heartbeat; a lease that expires goes back to the queue (the reaper).
Every write a worker makes names its lease token, so a worker whose lease was taken over can
no longer touch the job (LeaseLost). Retryable errors come back after an exponential backoff
with full jitter until the kind's attempts run out (then `dead`); input errors fail at once.
"""

from __future__ import annotations

import json
import random
import secrets
from dataclasses import dataclass
from typing import Any

import aiosqlite

from storage.config import QueueConfig
from storage.db import fetch_all, fetch_atomic, fetch_grouped, fetch_one, now, transaction
from storage.errors import JobNotFound, LeaseLost, QueueFull, WrongJobState

KINDS = ("train", "generate")
STATES = ("queued", "running", "succeeded", "failed", "cancelled", "dead")
ACTIVE = ("queued", "running")
FINAL = ("succeeded", "failed", "cancelled", "dead")
# Generation is interactive: it goes before training.
DEFAULT_PRIORITY = {"generate": 10, "train": 0}


@dataclass(frozen=True)
class Job:
    id: int
    kind: str
    state: str
    priority: int
    user_id: int
    guild_id: int | None
    channel_id: int | None
    subject_id: int | None
    params: dict[str, Any]
    idempotency_key: str | None
    attempts: int
    max_attempts: int
    run_after: float
    lease_owner: str | None
    lease_token: str | None
    lease_expires_at: float | None
    cancel_requested: bool
    progress_step: int
    progress_total: int
    progress_message: str
    result: dict[str, Any] | None
    error: str | None
    created_at: float
    started_at: float | None
    finished_at: float | None
    updated_at: float

    @classmethod
    def from_row(cls, row: aiosqlite.Row) -> Job:
        d = dict(row)
        d["params"] = json.loads(d["params"])
        d["result"] = json.loads(d["result"]) if d["result"] else None
        d["cancel_requested"] = bool(d["cancel_requested"])
        return cls(**d)


@dataclass(frozen=True)
class Heartbeat:
    """What a worker learns when it renews its lease."""
    lease_expires_at: float
    cancel_requested: bool


def backoff_delay(attempt: int, cfg: QueueConfig, rng: random.Random | None = None) -> float:
    """Full-jitter exponential backoff: uniform in [0, min(max, base * 2**(attempt-1))]."""
    cap = min(cfg.backoff_max_seconds, cfg.backoff_base_seconds * 2 ** max(0, attempt - 1))
    return (rng or random).uniform(0, cap)


def max_attempts_for(kind: str, cfg: QueueConfig) -> int:
    return cfg.train_max_attempts if kind == "train" else cfg.generate_max_attempts


async def enqueue(db: aiosqlite.Connection, *, kind: str, user_id: int, params: dict[str, Any],
                  cfg: QueueConfig, guild_id: int | None = None, channel_id: int | None = None,
                  subject_id: int | None = None, idempotency_key: str | None = None,
                  priority: int | None = None, at: float | None = None) -> Job:
    """Queue a job and return it. A repeated idempotency key returns the first job and queues nothing.

    Raises QueueFull when the user already has `max_queued_per_user` jobs queued or running.
    """
    if kind not in KINDS:
        raise ValueError(f"unknown job kind {kind!r}")
    t = now() if at is None else at
    # One statement, so the limit check and the insert are atomic; group commit lets concurrent
    # requests share an fsync while each still returns only once its job is durable.
    query = """
        INSERT INTO jobs (kind, priority, user_id, guild_id, channel_id, subject_id, params,
                          idempotency_key, max_attempts, run_after, created_at, updated_at)
        SELECT ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?
        WHERE (SELECT count(*) FROM jobs WHERE user_id = ? AND state IN ('queued', 'running')) < ?
        ON CONFLICT (idempotency_key) DO NOTHING
        RETURNING *
    """
    rows = await fetch_grouped(db, query, (
        kind, DEFAULT_PRIORITY[kind] if priority is None else priority, user_id, guild_id, channel_id,
        subject_id, json.dumps(params), idempotency_key, max_attempts_for(kind, cfg), t, t, t,
        user_id, cfg.max_queued_per_user), wake_workers=True)
    row = rows[0] if rows else None
    if row is None:
        if idempotency_key is not None:
            row = await fetch_one(db, "SELECT * FROM jobs WHERE idempotency_key = ?", (idempotency_key,))
        if row is None:
            raise QueueFull(cfg.max_queued_per_user, cfg.max_queued_per_user)
    return Job.from_row(row)


async def claim(db: aiosqlite.Connection, *, worker_id: str, lease_seconds: float,
                kinds: tuple[str, ...] = KINDS, at: float | None = None) -> Job | None:
    """Atomically take the most urgent runnable job under a fresh lease, or None when there is none."""
    t = now() if at is None else at
    token = secrets.token_hex(16)
    marks = ",".join("?" * len(kinds))
    query = f"""
        UPDATE jobs
        SET state = 'running', lease_owner = ?, lease_token = ?, lease_expires_at = ?,
            attempts = attempts + 1, started_at = coalesce(started_at, ?), updated_at = ?
        WHERE id = (SELECT id FROM jobs
                    WHERE state = 'queued' AND run_after <= ? AND kind IN ({marks})
                    ORDER BY priority DESC, run_after, id LIMIT 1 /* FOR UPDATE SKIP LOCKED */)
        RETURNING *
    """
    rows = await fetch_atomic(db, query, (worker_id, token, t + lease_seconds, t, t, t, *kinds))
    return Job.from_row(rows[0]) if rows else None


async def _fenced(db: aiosqlite.Connection, job_id: int, token: str, query: str, params: tuple) -> aiosqlite.Row:
    """Run an UPDATE ... WHERE id = ? AND lease_token = ? AND state = 'running' RETURNING *, atomic by itself
    (or within the caller's transaction); LeaseLost if no row matched."""
    rows = await fetch_atomic(db, query, (*params, job_id, token))
    if not rows:
        raise LeaseLost(job_id)
    return rows[0]


_FENCE = "WHERE id = ? AND lease_token = ? AND state = 'running' RETURNING *"


async def heartbeat(db: aiosqlite.Connection, *, job_id: int, lease_token: str, lease_seconds: float,
                    at: float | None = None) -> Heartbeat:
    """Extend the lease; tells the worker whether cancellation was asked for."""
    t = now() if at is None else at
    row = await _fenced(db, job_id, lease_token,
                        f"UPDATE jobs SET lease_expires_at = ?, updated_at = ? {_FENCE}",
                        (t + lease_seconds, t))
    return Heartbeat(lease_expires_at=row["lease_expires_at"], cancel_requested=bool(row["cancel_requested"]))


async def set_progress(db: aiosqlite.Connection, *, job_id: int, lease_token: str, step: int, total: int,
                       message: str = "", at: float | None = None) -> None:
    t = now() if at is None else at
    await _fenced(db, job_id, lease_token,
                  f"UPDATE jobs SET progress_step = ?, progress_total = ?, progress_message = ?, "
                  f"updated_at = ? {_FENCE}", (step, total, message, t))


async def complete(db: aiosqlite.Connection, *, job_id: int, lease_token: str, result: dict[str, Any],
                   at: float | None = None) -> Job:
    t = now() if at is None else at
    row = await _fenced(db, job_id, lease_token,
                        "UPDATE jobs SET state = 'succeeded', result = ?, finished_at = ?, updated_at = ?, "
                        f"lease_token = NULL, lease_expires_at = NULL {_FENCE}", (json.dumps(result), t, t))
    return Job.from_row(row)


async def fail(db: aiosqlite.Connection, *, job_id: int, lease_token: str, error: str, retryable: bool,
               cfg: QueueConfig, at: float | None = None, rng: random.Random | None = None) -> Job:
    """Record a failure: back to the queue after a backoff, `failed` (input error) or `dead` (out of tries)."""
    t = now() if at is None else at
    async with transaction(db):
        row = await fetch_one(db, "SELECT attempts, max_attempts FROM jobs WHERE id = ?", (job_id,))
        if row is None:
            raise LeaseLost(job_id)
        if not retryable:
            state, run_after = "failed", t
        elif row["attempts"] >= row["max_attempts"]:
            state, run_after = "dead", t
        else:
            state, run_after = "queued", t + backoff_delay(row["attempts"], cfg, rng)
        finished = None if state == "queued" else t
        row = await _fenced(db, job_id, lease_token,
                            "UPDATE jobs SET state = ?, error = ?, run_after = ?, finished_at = ?, updated_at = ?, "
                            f"lease_owner = NULL, lease_token = NULL, lease_expires_at = NULL {_FENCE}",
                            (state, error[:2000], run_after, finished, t))
    return Job.from_row(row)


async def release(db: aiosqlite.Connection, *, job_id: int, lease_token: str, at: float | None = None) -> Job:
    """Give the job back to the queue without spending an attempt (worker shutting down)."""
    t = now() if at is None else at
    row = await _fenced(db, job_id, lease_token,
                        "UPDATE jobs SET state = 'queued', attempts = max(0, attempts - 1), run_after = ?, "
                        "updated_at = ?, lease_owner = NULL, lease_token = NULL, lease_expires_at = NULL "
                        f"{_FENCE}", (t, t))
    return Job.from_row(row)


async def acknowledge_cancel(db: aiosqlite.Connection, *, job_id: int, lease_token: str,
                             at: float | None = None) -> Job:
    """The worker stopped a running job because cancellation was asked for."""
    t = now() if at is None else at
    row = await _fenced(db, job_id, lease_token,
                        "UPDATE jobs SET state = 'cancelled', finished_at = ?, updated_at = ?, "
                        f"lease_token = NULL, lease_expires_at = NULL {_FENCE}", (t, t))
    return Job.from_row(row)


async def retry(db: aiosqlite.Connection, *, job_id: int, at: float | None = None) -> Job:
    """Queue a failed, dead or cancelled job again with a fresh set of attempts."""
    t = now() if at is None else at
    query = """
        UPDATE jobs SET state = 'queued', attempts = 0, run_after = ?, cancel_requested = 0,
                        finished_at = NULL, updated_at = ?
        WHERE id = ? AND state IN ('failed', 'dead', 'cancelled')
        RETURNING *
    """
    async with transaction(db):
        row = await fetch_one(db, query, (t, t, job_id))
        if row is None:
            current = await fetch_one(db, "SELECT state FROM jobs WHERE id = ?", (job_id,))
            if current is None:
                raise JobNotFound(job_id)
            raise WrongJobState(job_id, current["state"], "retried")
    return Job.from_row(row)


async def reap_expired(db: aiosqlite.Connection, *, at: float | None = None) -> list[Job]:
    """Return running jobs whose lease has expired to the queue (or to `dead` when out of attempts)."""
    t = now() if at is None else at
    query = """
        UPDATE jobs
        SET state = CASE WHEN cancel_requested = 1 THEN 'cancelled'
                         WHEN attempts >= max_attempts THEN 'dead' ELSE 'queued' END,
            error = CASE WHEN attempts >= max_attempts AND cancel_requested = 0
                         THEN 'worker stopped responding (lease expired) on the last attempt' ELSE error END,
            finished_at = CASE WHEN cancel_requested = 1 OR attempts >= max_attempts THEN ? ELSE NULL END,
            run_after = ?, lease_owner = NULL, lease_token = NULL, lease_expires_at = NULL, updated_at = ?
        WHERE state = 'running' AND lease_expires_at < ?
        RETURNING *
    """
    async with transaction(db):
        rows = await fetch_all(db, query, (t, t, t, t))
    return [Job.from_row(r) for r in rows]


async def get(db: aiosqlite.Connection, job_id: int) -> Job:
    row = await fetch_one(db, "SELECT * FROM jobs WHERE id = ?", (job_id,))
    if row is None:
        raise JobNotFound(job_id)
    return Job.from_row(row)


async def list_jobs(db: aiosqlite.Connection, *, user_id: int | None = None, state: str | None = None,
                    guild_id: int | None = None, limit: int = 50) -> list[Job]:
    query = """
        SELECT * FROM jobs
        WHERE (? IS NULL OR user_id = ?) AND (? IS NULL OR state = ?) AND (? IS NULL OR guild_id = ?)
        ORDER BY id DESC LIMIT ?
    """
    rows = await fetch_all(db, query, (user_id, user_id, state, state, guild_id, guild_id, limit))
    return [Job.from_row(r) for r in rows]


@dataclass(frozen=True)
class JobStatus:
    """A job as /status shows it: where it waits in the queue, and the name of the subject it trains."""
    job: Job
    position: int | None
    subject_name: str


async def statuses(db: aiosqlite.Connection, *, user_id: int, limit: int = 20) -> list[JobStatus]:
    """A user's latest jobs with their queue places, in one query (one round trip, however many jobs):
    the same order as `queue_position`, counted across every worker of the fleet."""
    query = """
        SELECT j.*, coalesce(s.name, '') AS subject_name,
               CASE WHEN j.state = 'queued' THEN (
                   SELECT count(*) + 1 FROM jobs AS other
                   WHERE other.state = 'queued'
                     AND (other.priority > j.priority
                          OR (other.priority = j.priority AND (other.run_after < j.run_after
                              OR (other.run_after = j.run_after AND other.id < j.id))))) END AS queue_position
        FROM jobs AS j LEFT JOIN subjects AS s ON s.id = j.subject_id
        WHERE j.user_id = ? ORDER BY j.id DESC LIMIT ?
    """
    out = []
    for row in await fetch_all(db, query, (user_id, limit)):
        d = dict(row)
        position, name = d.pop("queue_position"), d.pop("subject_name")
        out.append(JobStatus(Job.from_row(d), position, name))
    return out


async def queue_position(db: aiosqlite.Connection, job_id: int) -> int | None:
    """1 for the next job to run, None unless the job is queued. Backoff delays are ignored."""
    query = """
        SELECT count(*) + 1 FROM jobs AS other, jobs AS me
        WHERE me.id = ? AND me.state = 'queued' AND other.state = 'queued'
          AND (other.priority > me.priority
               OR (other.priority = me.priority AND (other.run_after < me.run_after
                   OR (other.run_after = me.run_after AND other.id < me.id))))
    """
    job = await get(db, job_id)
    if job.state != "queued":
        return None
    (position,) = await fetch_one(db, query, (job_id,))
    return position
