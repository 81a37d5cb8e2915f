"""Erasure: `forget_user` deletes everything of a user from the database and the disk.

Only a tombstone stays: one `user.forgotten` entry in the audit log with the counts of what
went. The tombstone is written first, in the same transaction, because the schema's
append-only triggers allow deleting a user's consents and audit entries only after it.
Files go after the commit, so a crash can leave an orphan file but never a row pointing
at nothing; `forget_user` run again finishes the job.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import aiosqlite

from storage import audit, files
from storage.db import fetch_all, transaction

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ForgetReport:
    subjects: int
    photos: int
    consents: int
    jobs: int
    artifacts: int
    files_removed: int

    def summary(self) -> str:
        return (f"{self.subjects} subjects, {self.photos} photos, {self.artifacts} trained files and images, "
                f"{self.jobs} jobs and {self.consents} consent records")


async def forget_user(db: aiosqlite.Connection, *, user_id: int, data_dir: Path,
                      actor_id: int | None = None) -> ForgetReport:
    """Delete the user's subjects, photos, consents, jobs, artifacts, usage, outbox and audit entries."""
    subject_ids = "SELECT id FROM subjects WHERE owner_id = :u"
    async with transaction(db):
        subject_rows = await fetch_all(db, subject_ids, {"u": user_id})
        photo_rows = await fetch_all(db, f"SELECT path FROM photos WHERE subject_id IN ({subject_ids})", {"u": user_id})
        artifact_rows = await fetch_all(
            db, f"SELECT path FROM artifacts WHERE user_id = :u OR subject_id IN ({subject_ids})", {"u": user_id})
        job_rows = await fetch_all(db, "SELECT id FROM jobs WHERE user_id = :u", {"u": user_id})
        consent_rows = await fetch_all(db, "SELECT id FROM consents WHERE user_id = :u", {"u": user_id})
        report = ForgetReport(subjects=len(subject_rows), photos=len(photo_rows), consents=len(consent_rows),
                              jobs=len(job_rows), artifacts=len(artifact_rows), files_removed=0)
        await audit.append(db, action="user.forgotten", actor_id=actor_id, target_user_id=user_id,
                           detail={k: v for k, v in vars(report).items() if k != "files_removed"})
        # Running jobs lose their row: the worker's next fenced write raises LeaseLost and it stops.
        for query in (
            f"DELETE FROM artifacts WHERE user_id = :u OR subject_id IN ({subject_ids})",
            "DELETE FROM outbox WHERE user_id = :u OR job_id IN (SELECT id FROM jobs WHERE user_id = :u)",
            "DELETE FROM jobs WHERE user_id = :u",
            "DELETE FROM consents WHERE user_id = :u",
            "DELETE FROM subjects WHERE owner_id = :u",  # photos go with them (ON DELETE CASCADE)
            "DELETE FROM usage WHERE user_id = :u",
            "DELETE FROM audit_log WHERE target_user_id = :u AND action != 'user.forgotten'",
        ):
            await db.execute(query, {"u": user_id})
    removed = 0
    still_used = {r["path"] for r in await fetch_all(db, "SELECT path FROM photos")}
    paths = {r["path"] for r in photo_rows if r["path"] not in still_used}  # blobs are shared by content
    paths |= {r["path"] for r in artifact_rows}
    paths |= {f"jobs/{r['id']}" for r in job_rows} | {f"subjects/{r['id']}" for r in subject_rows}
    for rel in sorted(paths):
        try:
            removed += files.remove(data_dir, rel)
        except OSError:
            log.exception("could not delete a file of a forgotten user; run forget again to retry")
    log.info("forgot a user: %s", report.summary())
    return ForgetReport(**{**vars(report), "files_removed": removed})
