"""Generation requests: /imagine, Re-roll and Vary, with the same checks and quota."""


from __future__ import annotations

import logging
from typing import Any

import aiosqlite

from storage import audit, consent, guilds, jobs, likeness, prompts, subjects
from storage.config import LikenessConfig, QueueConfig
from storage.db import fetch_one, transaction
from storage.errors import (
    PromptRefused,
    SubjectError,
)
from storage.lifecycle.limits import _check_images_per_day, _take_cooldown, ensure_not_banned
from storage.lifecycle.states import NO_LIMITS, VARY_GUIDANCE, ImageRequest, Limits, QueuedImages
from storage.subjects import Subject

log = logging.getLogger(__name__)

async def queue_images(db: aiosqlite.Connection, request: ImageRequest, *, queue: QueueConfig,
                       limits: Limits = NO_LIMITS, idempotency_key: str | None = None,
                       likeness_rules: LikenessConfig | None = None) -> QueuedImages:
    """An /imagine: the named subjects must be the user's own, trained and consented; the blocklist sees
    the user's words and the final prompt, and so do the likeness rules when a subject is a person; ban,
    cooldown and the daily image quota are checked in the transaction that queues the job."""
    owned = _one_per_name(await subjects.list_for_owner(db, request.user_id, guild_id=request.guild_id))
    chosen = None
    if request.subject_name:
        key = " ".join(request.subject_name.split()).lower()
        chosen = next((s for s in owned if s.name == key), None)
        if chosen is None:
            raise SubjectError(f"You have no subject called {request.subject_name!r} here. "
                               "/subjects lists yours; /train makes a new one.")
    expanded = prompts.expand(request.prompt, owned, chosen)
    params = {"prompt": expanded.text, "request": request.prompt, "subject_ids": [s.id for s in expanded.subjects],
              "n": request.count, "seed": request.seed, "steps": request.steps, "guidance": request.guidance}
    return await _queue_generation(db, user_id=request.user_id, guild_id=request.guild_id,
                                   channel_id=request.channel_id, params=params, queue=queue, limits=limits,
                                   idempotency_key=idempotency_key, rules=likeness_rules or LikenessConfig())


def _one_per_name(owned: list[Subject]) -> list[Subject]:
    """The subject each name means: the live one (at most one per name), else the newest that ended, so a
    revoked one is refused with its reason rather than as unknown."""
    by_name: dict[str, Subject] = {}
    for subject in sorted(owned, key=lambda s: (s.state in subjects.LIVE, s.id)):
        by_name[subject.name] = subject
    return list(by_name.values())


async def repeat_images(db: aiosqlite.Connection, *, job_id: int, user_id: int, action: str, channel_id: int | None,
                        queue: QueueConfig, limits: Limits = NO_LIMITS, idempotency_key: str | None = None,
                        likeness_rules: LikenessConfig | None = None) -> QueuedImages:
    """Re-roll (new seeds) or vary (first seed, looser guidance) an earlier generation of the user's;
    the same checks and quota as a new /imagine."""
    job = await jobs.get(db, job_id)
    if job.user_id != user_id or job.kind != "generate":
        raise SubjectError("Only the person who asked for these images can re-roll or vary them. "
                           "Use /imagine with your own subject.")
    seeds = (job.result or {}).get("seeds") or [job.params.get("seed")]
    params = dict(job.params)
    if action == "vary":
        params.update(seed=seeds[0], guidance=VARY_GUIDANCE)
    else:
        params.update(seed=None, guidance=job.params.get("guidance"))
    return await _queue_generation(db, user_id=user_id, guild_id=job.guild_id, channel_id=channel_id or job.channel_id,
                                   params=params, queue=queue, limits=limits, idempotency_key=idempotency_key,
                                   rules=likeness_rules or LikenessConfig())


async def _queue_generation(db: aiosqlite.Connection, *, user_id: int, guild_id: int | None, channel_id: int | None,
                            params: dict[str, Any], queue: QueueConfig, limits: Limits,
                            idempotency_key: str | None, rules: LikenessConfig) -> QueuedImages:
    if idempotency_key is not None:
        known = await fetch_one(db, "SELECT * FROM jobs WHERE idempotency_key = ?", (idempotency_key,))
        if known is not None:  # the same interaction delivered twice: the first answer stands
            job = jobs.Job.from_row(known)
            return QueuedImages(job=job, prompt=job.params["prompt"], position=await jobs.queue_position(db, job.id))
    # Before the transaction that queues, so the refusal can be recorded though nothing is queued. A
    # subject's class noun never changes, so reading the subjects outside that transaction is safe.
    people = [await subjects.get(db, sid) for sid in params.get("subject_ids", [])]
    refusal = likeness.check_prompt((params.get("request") or "", params["prompt"]), people, rules)
    if refusal is not None:
        subject_id = next(s.id for s in people if s.name == refusal.subject)
        await record_refusal(db, refusal, user_id=user_id, guild_id=guild_id, subject_id=subject_id, step="imagine")
        raise PromptRefused(refusal.message)
    async with transaction(db):
        await ensure_not_banned(db, user_id=user_id, guild_id=guild_id)
        used = [await subjects.get(db, sid) for sid in params.get("subject_ids", [])]
        for subject in used:
            if subject.owner_id != user_id:
                raise SubjectError("You can only use your own subjects.")
            prompts.require_usable(subject)
            await consent.require(db, subject.id)
        if guild_id is not None:
            terms = await guilds.blocklist(db, guild_id)
            for subject in used:
                prompts.check_subject_words(name=subject.name, class_noun=subject.class_noun, terms=terms)
            prompts.check_blocklist(params.get("request") or "", terms)
            prompts.check_blocklist(params["prompt"], terms)  # what the worker will receive
            policy = await guilds.policy(db, guild_id, default_review=limits.review_default)
            await _check_images_per_day(db, user_id=user_id, guild_id=guild_id, count=int(params.get("n") or 1),
                                        policy=policy)
        if limits.cooldown_seconds:
            await _take_cooldown(db, user_id=user_id, action="imagine", seconds=limits.cooldown_seconds)
        job = await jobs.enqueue(db, kind="generate", user_id=user_id, params=params, cfg=queue, guild_id=guild_id,
                                 channel_id=channel_id, subject_id=used[0].id if used else None,
                                 idempotency_key=idempotency_key)
        position = await jobs.queue_position(db, job.id)
    return QueuedImages(job=job, prompt=params["prompt"], position=position)


async def record_refusal(db: aiosqlite.Connection, refusal: likeness.Refusal, *, user_id: int, guild_id: int | None,
                         subject_id: int | None, step: str) -> None:
    """A likeness refusal in the audit log, for moderators: committed on its own, since the request it
    refuses writes nothing (called inside another transaction, it would roll back with that one). The
    prompt itself is not kept; /forget deletes the entry with the user's other rows."""
    async with transaction(db):
        await audit.append(db, action="likeness.refused", actor_id=user_id, guild_id=guild_id,
                           target_user_id=user_id, subject_id=subject_id,
                           detail={"rule": refusal.rule, "term": refusal.term, "where": refusal.where, "step": step})
