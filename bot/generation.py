"""Turning an /imagine request into a generate job, without Discord.

Checks, in order: the named subjects are the invoker's own, trained and covered by an active
consent; the prompt passes the guild's blocklist; the daily image quota has room. Generation
jobs carry a higher priority than training (storage.jobs.DEFAULT_PRIORITY).
"""

from __future__ import annotations

from dataclasses import dataclass

import aiosqlite

from bot import prompts
from storage import consent, guilds, jobs, subjects
from storage.config import QueueConfig
from storage.db import now
from storage.errors import QuotaReached, SubjectError

DAY = 24 * 3600
VARY_GUIDANCE = 5.0  # "Vary": the same seed under looser guidance gives variations on one composition


@dataclass(frozen=True)
class Request:
    user_id: int
    guild_id: int | None
    channel_id: int | None
    prompt: str  # as the user wrote it
    subject_name: str | None = None
    count: int = 1
    seed: int | None = None
    guidance: float | None = None


@dataclass(frozen=True)
class Queued:
    job: jobs.Job
    prompt: str  # as the worker receives it
    position: int | None


async def queue_images(db: aiosqlite.Connection, request: Request, *, queue: QueueConfig,
                       default_review: bool, idempotency_key: str | None = None) -> Queued:
    owned = await subjects.list_for_owner(db, request.user_id, guild_id=request.guild_id)
    chosen = None
    if request.subject_name:
        key = " ".join(request.subject_name.split()).lower()
        chosen = next((s for s in owned if s.name == key), None)
        if chosen is None:
            raise SubjectError(f"You have no subject called {request.subject_name!r} here. "
                               "/subjects lists yours; /train makes a new one.")
    expanded = prompts.expand(request.prompt, owned, chosen)
    for subject in expanded.subjects:
        prompts.require_usable(subject)
        await consent.require(db, subject.id)
    if request.guild_id is not None:
        prompts.check_blocklist(request.prompt, await guilds.blocklist(db, request.guild_id))
        policy = await guilds.policy(db, request.guild_id, default_review=default_review)
        if policy.max_images_per_day is not None:
            used = await guilds.images_requested_since(db, user_id=request.user_id, guild_id=request.guild_id,
                                                       since=now() - DAY)
            if used + request.count > policy.max_images_per_day:
                left = max(0, policy.max_images_per_day - used)
                raise QuotaReached(f"This server allows {policy.max_images_per_day} images a day per person and "
                                   f"you have {left} left. Ask for fewer, or try again tomorrow.")
    # "request" keeps the user's own words for the reply; the worker reads only "prompt".
    params = {"prompt": expanded.text, "request": request.prompt, "subject_ids": [s.id for s in expanded.subjects],
              "n": request.count, "seed": request.seed, "steps": None, "guidance": request.guidance}
    job = await jobs.enqueue(db, kind="generate", user_id=request.user_id, params=params, cfg=queue,
                             guild_id=request.guild_id, channel_id=request.channel_id,
                             subject_id=expanded.subjects[0].id, idempotency_key=idempotency_key)
    return Queued(job=job, prompt=expanded.text, position=await jobs.queue_position(db, job.id))


async def repeat(db: aiosqlite.Connection, *, job_id: int, user_id: int, action: str, channel_id: int | None,
                 queue: QueueConfig, default_review: bool, idempotency_key: str | None = None) -> Queued:
    """Re-roll (new seeds) or vary (first seed, looser guidance) an earlier generation of the user's."""
    job = await jobs.get(db, job_id)
    if job.user_id != user_id or job.kind != "generate":
        raise SubjectError("Only the person who asked for these images can re-roll or vary them. "
                           "Use /imagine with your own subject.")
    for subject_id in job.params.get("subject_ids", []):
        prompts.require_usable(await subjects.get(db, subject_id))
        await consent.require(db, subject_id)
    seeds = (job.result or {}).get("seeds") or [job.params.get("seed")]
    params = dict(job.params)
    if action == "vary":
        params.update(seed=seeds[0], guidance=VARY_GUIDANCE)
    else:
        params.update(seed=None, guidance=job.params.get("guidance"))
    if job.guild_id is not None:
        prompts.check_blocklist(params["prompt"], await guilds.blocklist(db, job.guild_id))
    new = await jobs.enqueue(db, kind="generate", user_id=user_id, params=params, cfg=queue, guild_id=job.guild_id,
                             channel_id=channel_id or job.channel_id, subject_id=job.subject_id,
                             idempotency_key=idempotency_key)
    return Queued(job=new, prompt=params["prompt"], position=await jobs.queue_position(db, new.id))
