"""A minimal worker process for the multi-process queue tests: claim, record the run, complete.

Usage: python queue_worker.py DB WORKER_ID MODE LEASE_SECONDS
MODE "drain" completes jobs until none is queued or running; "hold" claims one job, says
CLAIMED <id> on stdout and keeps heartbeating it forever (the test kills it).
"""

from __future__ import annotations

import asyncio
import sys

from storage import db as database
from storage import jobs


async def main(path: str, worker_id: str, mode: str, lease: float) -> None:
    async with database.connect(path) as db:
        await db.execute("CREATE TABLE IF NOT EXISTS test_runs (job_id BIGINT, worker TEXT, token TEXT)")
        while True:
            await jobs.reap_expired(db)
            job = await jobs.claim(db, worker_id=worker_id, lease_seconds=lease)
            if job is None:
                (active,) = await database.fetch_one(
                    db, "SELECT count(*) FROM jobs WHERE state IN ('queued', 'running')")
                if active == 0 or mode == "hold":
                    if mode == "drain":
                        return
                await asyncio.sleep(0.02)
                continue
            if mode == "hold":
                print(f"CLAIMED {job.id}", flush=True)
                while True:
                    await jobs.heartbeat(db, job_id=job.id, lease_token=job.lease_token, lease_seconds=lease)
                    await asyncio.sleep(lease / 4)
            await db.execute("INSERT INTO test_runs VALUES (?, ?, ?)", (job.id, worker_id, job.lease_token))
            await jobs.complete(db, job_id=job.id, lease_token=job.lease_token, result={"by": worker_id})


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2], sys.argv[3], float(sys.argv[4])))
