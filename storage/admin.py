"""Operator commands over the database: `jobs list|show|cancel|retry`, `outbox list|retry`, `forget --user`,
`db migrate|copy|sweep`."""

from __future__ import annotations

import argparse
import asyncio
import json
import time

from storage import copy, jobs, lifecycle, migrate, outbox, retention
from storage import db as database
from storage.config import Config
from storage.copy import CopyRefused
from storage.postgres import redact


def add_commands(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("jobs", help="list, show, cancel or retry queued jobs")
    jsub = p.add_subparsers(dest="jobs_command", metavar="ACTION", required=True)
    q = jsub.add_parser("list", help="the newest jobs, one line each")
    q.add_argument("--state", choices=jobs.STATES)
    q.add_argument("--user", type=int)
    q.add_argument("--limit", type=int, default=30)
    q.set_defaults(func=_run(_jobs_list))
    for name, fn, text in (("show", _jobs_show, "everything about one job"),
                           ("cancel", _jobs_cancel, "cancel a queued job, or ask a running one to stop"),
                           ("retry", _jobs_retry, "queue a failed, dead or cancelled job again")):
        q = jsub.add_parser(name, help=text)
        q.add_argument("job_id", type=int)
        q.set_defaults(func=_run(fn))

    p = sub.add_parser("outbox", help="bot messages Discord keeps refusing: list the parked ones, retry now")
    osub = p.add_subparsers(dest="outbox_command", metavar="ACTION", required=True)
    q = osub.add_parser("list", help="parked messages, one line each (never their payload)")
    q.add_argument("--guild", type=int)
    q.add_argument("--limit", type=int, default=50)
    q.set_defaults(func=_run(_outbox_list))
    q = osub.add_parser("retry", help="make a waiting message due now and un-park it")
    which = q.add_mutually_exclusive_group(required=True)
    which.add_argument("event_id", type=int, nargs="?", help="the message's number from `outbox list`")
    which.add_argument("--all", action="store_true", help="every parked or backing-off message")
    q.set_defaults(func=_run(_outbox_retry))

    p = sub.add_parser("forget", help="delete everything of a user from disk and database")
    p.add_argument("--user", type=int, required=True, help="the user's Discord id")
    p.set_defaults(func=_run(_forget))

    p = sub.add_parser("db", help="database maintenance")
    dsub = p.add_subparsers(dest="db_command", metavar="ACTION", required=True)
    dsub.add_parser("migrate", help="apply pending migrations").set_defaults(func=_run(_migrate, migrations=False))
    c = dsub.add_parser("copy", help="copy this installation's SQLite database into an empty PostgreSQL database")
    c.add_argument("--to", required=True, metavar="URL", help="postgresql://user@host:port/dbname (empty)")
    c.set_defaults(func=_run(_copy))
    dsub.add_parser("sweep", help="delete generated images and failed subjects' photos past retention"
                    ).set_defaults(func=_run(_sweep))


def _run(fn, *, migrations: bool = True):
    """Wrap an async command: open the database from config, run, return the exit code."""
    def run(args: argparse.Namespace, cfg: Config) -> int:
        async def go() -> int:
            async with database.connect(cfg.storage.database, busy_timeout_ms=cfg.storage.busy_timeout_ms,
                                        run_migrations=migrations) as db:
                return await fn(db, args, cfg)
        return asyncio.run(go())
    return run


def _line(job: jobs.Job) -> str:
    when = time.strftime("%Y-%m-%d %H:%M", time.localtime(job.created_at))
    progress = f"{job.progress_step}/{job.progress_total}" if job.progress_total else "-"
    return (f"#{job.id:<6} {job.kind:<9} {job.state:<10} user {job.user_id:<20} {when}  "
            f"try {job.attempts}/{job.max_attempts}  {progress}  {(job.error or '')[:60]}")


async def _jobs_list(db, args, cfg) -> int:
    found = await jobs.list_jobs(db, state=args.state, user_id=args.user, limit=args.limit)
    for job in found:
        print(_line(job))
    if not found:
        print("no jobs")
    return 0


async def _jobs_show(db, args, cfg) -> int:
    job = await jobs.get(db, args.job_id)
    shown = {k: v for k, v in vars(job).items() if k != "lease_token"}  # the token fences writes; keep it private
    shown["queue_position"] = await jobs.queue_position(db, job.id)
    print(json.dumps(shown, indent=2, default=str))
    return 0


async def _jobs_cancel(db, args, cfg) -> int:
    job = await lifecycle.cancel_job(db, job_id=args.job_id, data_dir=cfg.storage.data_dir)
    print(f"job #{job.id}: " + ("cancelled" if job.state == "cancelled" else "asked to stop; the worker ends it "
                                                                          "at its next step"))
    return 0


async def _jobs_retry(db, args, cfg) -> int:
    job = await lifecycle.retry_job(db, job_id=args.job_id)
    print(f"job #{job.id} queued again (position {await jobs.queue_position(db, job.id)})")
    return 0


async def _outbox_list(db, args, cfg) -> int:
    parked = await outbox.list_parked(db, guild_id=args.guild, limit=args.limit)
    t = time.time()
    for e in parked:
        print(f"#{e.id:<6} {e.kind:<10} job {e.job_id or '-':<6} guild {e.guild_id or '-':<20} "
              f"tries {e.attempts:<4} age {_age(t - e.created_at):>6}  {(e.last_error or '')[:80]}")
    if not parked:
        print("no parked messages")
    return 0


def _age(seconds: float) -> str:
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{int(seconds // size)}{unit}"
    return f"{int(seconds)}s"


async def _outbox_retry(db, args, cfg) -> int:
    count = await outbox.retry(db, event_id=None if args.all else args.event_id)
    print(f"message #{args.event_id} is due now" if not args.all
          else f"{count} message{'s' if count != 1 else ''} due now")
    return 0


async def _forget(db, args, cfg) -> int:
    report = await lifecycle.forget_user(db, user_id=args.user, data_dir=cfg.storage.data_dir)
    print(f"deleted {report.summary()}; {report.files_removed} files removed from disk. "
          "A tombstone stays in the audit log.")
    return 0


async def _migrate(db, args, cfg) -> int:
    ran = await migrate.migrate(db)
    print("applied: " + ", ".join(ran) if ran else "the database is up to date")
    return 0


async def _copy(db, args, cfg) -> int:
    if database.is_url(cfg.storage.database):
        raise CopyRefused("db copy reads the SQLite installation, but storage.database_url already names a "
                          "PostgreSQL server: unset it to copy from the SQLite file.")
    if not database.is_url(args.to):
        raise CopyRefused(f"--to {redact(args.to)!r} is not a PostgreSQL URL: use postgresql://user@host:port/dbname.")
    async with database.connect(args.to) as target:
        report = await copy.copy(db, target)
    print(f"copied {report.summary()} to {redact(args.to)}. Set storage.database_url to it (and copy the files "
          "under data_dir to storage.blob_url when you use one) before starting the bot and workers.")
    return 0


async def _sweep(db, args, cfg) -> int:
    report = await retention.sweep(db, data_dir=cfg.storage.data_dir, cfg=cfg.storage.retention)
    drafts = await lifecycle.expire_drafts(db, data_dir=cfg.storage.data_dir)
    print(f"deleted {report.images} generated images, grids and checkpoints, {report.photos} photos past "
          f"retention, {drafts} unconfirmed drafts and {report.orphans} orphaned files"
          + (f"; {report.errors} could not be deleted (see the log)" if report.errors else ""))
    return 1 if report.errors else 0
