"""The one owner of a subject's and a job's life: every state change and all of its side effects.

A subject is a `draft` until its owner consents, then `consented` (held for review, or waiting
for room in the queue), `queued`, `training`, and ends `trained`, `failed` or `cancelled`; a
moderator's revoke (or rejection) makes it `revoked`, and `/forget` makes it `forgotten`: its rows
are deleted at once, and only the audit tombstone stays. `SUBJECT_TRANSITIONS` is the whole table.

Each public function here is one transition. It changes the state, the jobs it stops, the rows of
what it deletes, the outbox events and the audit entries in one transaction, then deletes the files
after the commit (a crash in between leaves an orphan file, which the sweep removes, never a row
pointing at nothing). Nothing else writes a subject's state: `states._move` is the only UPDATE.

The modules: `states` (the table, `_move`, shared helpers), `limits` (each checked in the
transaction it limits), `drafts` (photos to consent to the queue, and `dreambot train`), `stopping`
(cancel, revoke, ban, forget), `choices` (the owner's version), `images` (/imagine, Re-roll, Vary)
and `worker` (the worker's fenced writes and the endings of a job).

Every write a worker makes for a job names the job's lease token (`_fence`): once the job is
cancelled, revoked, forgotten or taken over, the worker's writes are refused (StopRequested,
LeaseLost) and it discards what it made.
"""

from storage.lifecycle.choices import choose_adapter, discard_trained, tell_owner
from storage.lifecycle.drafts import (
    confirm,
    create_draft,
    discard_draft,
    expire_drafts,
    local_training,
    queue_training,
    review,
)
from storage.lifecycle.images import queue_images, repeat_images
from storage.lifecycle.limits import check_preset, cooldown_left, ensure_not_banned
from storage.lifecycle.states import (
    DAY,
    DRAFT_TTL_SECONDS,
    GONE,
    MB,
    SUBJECT_TRANSITIONS,
    VARY_GUIDANCE,
    ForgetReport,
    ImageRequest,
    Limits,
    Queued,
    QueuedImages,
    remove_files,
)
from storage.lifecycle.stopping import (
    abandoned_paths,
    ban,
    cancel_job,
    forget_user,
    job_paths,
    revoke,
)
from storage.lifecycle.worker import (
    begin_training,
    fail_job,
    finish_generation,
    finish_training,
    job_exists,
    job_stopped,
    post_event,
    reap,
    record_artifact,
    release_job,
    retry_job,
    stop_reason,
)

__all__ = [
    "abandoned_paths",
    "DAY",
    "DRAFT_TTL_SECONDS",
    "ForgetReport",
    "GONE",
    "ImageRequest",
    "Limits",
    "MB",
    "Queued",
    "QueuedImages",
    "SUBJECT_TRANSITIONS",
    "VARY_GUIDANCE",
    "ban",
    "begin_training",
    "cancel_job",
    "check_preset",
    "choose_adapter",
    "confirm",
    "cooldown_left",
    "create_draft",
    "discard_draft",
    "discard_trained",
    "ensure_not_banned",
    "expire_drafts",
    "fail_job",
    "finish_generation",
    "finish_training",
    "forget_user",
    "job_exists",
    "job_paths",
    "job_stopped",
    "local_training",
    "post_event",
    "queue_images",
    "queue_training",
    "reap",
    "record_artifact",
    "release_job",
    "remove_files",
    "repeat_images",
    "retry_job",
    "review",
    "revoke",
    "stop_reason",
    "tell_owner",
]
