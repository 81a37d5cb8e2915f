"""Domain errors. Each message is written for the person who caused it and says what to do next.

The bot turns any DreambotError into an ephemeral reply; the CLI prints it without a traceback.
"""

from __future__ import annotations


class DreambotError(Exception):
    """Base class: `str(error)` is safe to show to a user."""


class QueueFull(DreambotError):
    def __init__(self, active: int, limit: int):
        super().__init__(f"You already have {active} jobs queued or running (the limit is {limit}). "
                         "Wait for one to finish or cancel one with /cancel, then try again.")
        self.active, self.limit = active, limit


class JobNotFound(DreambotError):
    def __init__(self, job_id: int):
        super().__init__(f"There is no job #{job_id} of yours. /status lists your jobs.")
        self.job_id = job_id


class WrongJobState(DreambotError):
    def __init__(self, job_id: int, state: str, wanted: str):
        super().__init__(f"Job #{job_id} is {state}, so it cannot be {wanted}.")
        self.job_id, self.state = job_id, state


class LeaseLost(DreambotError):
    """A worker wrote to a job it no longer holds (its lease expired and another took it)."""

    def __init__(self, job_id: int):
        super().__init__(f"job #{job_id}: this worker's lease was lost; another attempt owns the job now.")
        self.job_id = job_id


class PhotoRejected(DreambotError):
    """A photo cannot be used; the message says why and what to send instead."""


class SubjectError(DreambotError):
    """A subject cannot be created, found or used as asked."""


class ConsentError(DreambotError):
    """Consent is missing, revoked or does not cover what was asked."""


class Banned(DreambotError):
    def __init__(self, reason: str = ""):
        why = f" (reason: {reason})" if reason else ""
        super().__init__(f"A moderator of this server has barred you from dreambot here{why}. "
                         "Ask the server's moderators if you think this is a mistake.")


class QuotaReached(DreambotError):
    """A guild's quota (subjects per user, images per day) is used up; the message says when or how to go on."""


class PromptRefused(DreambotError):
    """A prompt uses a term the server blocks or a person's likeness may not be asked for, or names no usable
    subject."""


class CooldownActive(DreambotError):
    def __init__(self, command: str, retry_after: float):
        super().__init__(f"You used /{command} a moment ago. Try again in {max(1, round(retry_after))} seconds.")
        self.retry_after = retry_after


class StopRequested(DreambotError):
    """A worker tried to record work for a job that was cancelled (by its owner, a revoke, a ban)."""

    def __init__(self, job_id: int):
        super().__init__(f"job #{job_id} was cancelled; its work is being discarded.")
        self.job_id = job_id


class BlobStoreError(DreambotError):
    """The object store (storage.blob_url) cannot be reached or refused a request; the message names the bucket
    and endpoint (never a credential) and what to check."""


class DatabaseUnreachable(DreambotError):
    """The PostgreSQL server that storage.database_url names did not answer; the message names it without its
    password and says what to check. A worker waits and tries again; a command stops with the message."""
