"""The queue across real worker processes: no job runs twice, and a killed worker's job completes once."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
from pathlib import Path

from storage import db as database
from storage import jobs

WORKER = Path(__file__).with_name("queue_worker.py")
ROOT = Path(__file__).resolve().parents[2]


def _start(db_path, worker_id: str, mode: str, lease: float) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, str(WORKER), str(db_path), worker_id, mode, str(lease)],
                            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


async def test_concurrent_workers_never_run_a_job_twice(db_location, db, queue_cfg):
    """Four processes draining 200 jobs run each exactly once."""
    db_path = db_location
    for i in range(200):
        await jobs.enqueue(db, kind="generate" if i % 3 else "train", user_id=i, params={"i": i}, cfg=queue_cfg)
    procs = [_start(db_path, f"w{n}", "drain", 30) for n in range(4)]
    for p in procs:
        out, err = await asyncio.to_thread(p.communicate, timeout=120)
        assert p.returncode == 0, err
    runs = await database.fetch_all(db, "SELECT job_id, worker FROM test_runs")
    assert sorted(r["job_id"] for r in runs) == list(range(1, 201))
    assert len({r["worker"] for r in runs}) > 1  # the work really was shared
    states = await database.fetch_all(db, "SELECT state, count(*) AS n FROM jobs GROUP BY state")
    assert [(r["state"], r["n"]) for r in states] == [("succeeded", 200)]


async def test_sigkilled_worker_job_is_reclaimed_and_completes_once(db_location, db, queue_cfg):
    """A worker killed with SIGKILL mid-job loses its lease; another completes the job exactly once."""
    db_path = db_location
    job = await jobs.enqueue(db, kind="train", user_id=1, params={}, cfg=queue_cfg)
    holder = _start(db_path, "doomed", "hold", 1.0)
    line = await asyncio.to_thread(holder.stdout.readline)
    assert line.strip() == f"CLAIMED {job.id}"
    holder.send_signal(signal.SIGKILL)
    await asyncio.to_thread(holder.wait)
    assert (await jobs.get(db, job.id)).state == "running"  # nobody knows yet
    rescuer = _start(db_path, "rescuer", "drain", 1.0)
    out, err = await asyncio.to_thread(rescuer.communicate, timeout=60)
    assert rescuer.returncode == 0, err
    done = await jobs.get(db, job.id)
    assert (done.state, done.attempts, done.result) == ("succeeded", 2, {"by": "rescuer"})
    runs = await database.fetch_all(db, "SELECT worker FROM test_runs WHERE job_id = ?", (job.id,))
    assert [r["worker"] for r in runs] == ["rescuer"]
