"""Queue benchmark: enqueue rate, claim-to-complete rate and claim latency, SQLite beside PostgreSQL.

Every enqueue, claim and completion is its own durable transaction, exactly as the bot and the
worker run them: SQLite in WAL with synchronous=FULL; PostgreSQL as the server is configured (give
it fsync on). Workers are separate processes, each with its own connection. With `--database`,
each row runs on SQLite and then on PostgreSQL, alternating, `--repeats` times, and the table gives
min / median / max of each figure; each run gets a fresh SQLite file or a fresh PostgreSQL database
(created and dropped on the server `--database` names, so its role needs CREATEDB).

    python -m bench.queue [--database postgresql://...] [--workers 1,4,16] [--jobs 2000] [--producers 32]
                          [--repeats 3] [--out bench/out/queue.json]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import multiprocessing as mp
import statistics
import tempfile
import time
import uuid
from pathlib import Path

from storage import db as database
from storage import jobs
from storage.config import QueueConfig
from storage.postgres import redact

CFG = QueueConfig(max_queued_per_user=10**9)
FIGURES = ("enqueues_per_s_1", "enqueues_per_s_n", "completes_per_s", "claim_p50_ms", "claim_p99_ms")
TARGETS = {"enqueues_per_s_n": (">=", 2000.0), "claim_p99_ms": ("<", 20.0)}  # the fleet's, on PostgreSQL


async def _fill(location, n: int, producers: int) -> float:
    """Enqueue n jobs from `producers` concurrent callers on one connection; returns enqueues per second.

    One producer awaits each enqueue before the next (one durable commit each); many producers
    are what a busy bot looks like, and their enqueues share commits (group commit).
    """
    async with database.connect(location) as db:
        async def produce(k: int) -> None:
            for i in range(k, n, producers):
                await jobs.enqueue(db, kind="generate" if i % 2 else "train", user_id=i % 50, params={"i": i},
                                   cfg=CFG)
        start = time.perf_counter()
        await asyncio.gather(*(produce(k) for k in range(producers)))
        return n / (time.perf_counter() - start)


def _worker(location, worker_id: str, ready: mp.Queue, go, out: mp.Queue) -> None:
    async def run() -> tuple[list[float], int]:
        latencies, done = [], 0
        async with database.connect(location, run_migrations=False) as db:
            # as a worker that has run for a while: connected, the server's caches of the jobs table warm
            await database.fetch_all(db, "SELECT count(*) FROM jobs WHERE state = 'queued'")
            ready.put(worker_id)
            await asyncio.to_thread(go.wait)
            while True:
                t0 = time.perf_counter()
                job = await jobs.claim(db, worker_id=worker_id, lease_seconds=60)
                latencies.append(time.perf_counter() - t0)
                if job is None:
                    return latencies, done
                await jobs.complete(db, job_id=job.id, lease_token=job.lease_token, result={})
                done += 1
    out.put(asyncio.run(run()))


def _drain(location, workers: int) -> dict:
    """`workers` processes claim and complete until the queue is empty; the clock starts once every one of them
    has started, imported and connected (process start-up is not claim latency)."""
    out: mp.Queue = mp.Queue()
    ready: mp.Queue = mp.Queue()
    go = mp.Event()
    procs = [mp.Process(target=_worker, args=(location, f"w{i}", ready, go, out)) for i in range(workers)]
    for p in procs:
        p.start()
    for _ in procs:
        ready.get()
    start_at = time.time()
    go.set()
    results = [out.get() for _ in procs]
    finished = time.time()
    for p in procs:
        p.join()
    latencies = sorted(x for lat, _ in results for x in lat)
    done = sum(n for _, n in results)
    return {"jobs": done, "completes_per_s": done / (finished - start_at),
            "claim_p50_ms": 1000 * statistics.median(latencies),
            "claim_p99_ms": 1000 * latencies[min(len(latencies) - 1, int(0.99 * len(latencies)))]}


@contextlib.contextmanager
def _fresh(backend: str, url: str | None, tmp: Path):
    """A fresh, empty database for one run: a new SQLite file, or a new database on the PostgreSQL server."""
    if backend == "sqlite":
        yield tmp / f"{uuid.uuid4().hex}.sqlite3"
        return
    import psycopg
    name = f"dreambot_bench_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(url, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    try:
        yield url.rsplit("/", 1)[0] + "/" + name
    finally:
        with psycopg.connect(url, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def run_once(location, jobs_n: int, producers: int, workers: int) -> dict:
    asyncio.run(_fill(location, 0, 1))  # create the schema outside the timed part
    single = asyncio.run(_fill(location, jobs_n // 2, 1))
    loaded = asyncio.run(_fill(location, jobs_n - jobs_n // 2, producers))
    return {"enqueues_per_s_1": single, "enqueues_per_s_n": loaded, **_drain(location, workers)}


def summarize(runs: list[dict]) -> dict:
    return {f: {"min": min(r[f] for r in runs), "median": statistics.median(r[f] for r in runs),
                "max": max(r[f] for r in runs)} for f in FIGURES}


def _met(figure: str, value: float) -> str:
    if figure not in TARGETS:
        return ""
    op, target = TARGETS[figure]
    return " ok" if (value >= target if op == ">=" else value < target) else " MISSED"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--database", help="postgresql://... : also run every row on this server (side by side)")
    parser.add_argument("--workers", default="1,4,16", help="comma-separated worker process counts")
    parser.add_argument("--jobs", type=int, default=2000)
    parser.add_argument("--producers", type=int, default=32, help="concurrent enqueuers for the loaded figure")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", type=Path, default=Path("bench/out/queue.json"))
    args = parser.parse_args()
    if args.database and not database.is_url(args.database):
        parser.error(f"--database {redact(args.database)!r} is not a postgresql:// URL")
    backends = ["sqlite"] + (["postgresql"] if args.database else [])
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for workers in (int(w) for w in args.workers.split(",")):
            runs: dict[str, list[dict]] = {b: [] for b in backends}
            for _ in range(args.repeats):
                for backend in backends:  # alternating, so drift on the machine hits both alike
                    with _fresh(backend, args.database, Path(tmp)) as location:
                        runs[backend].append(run_once(location, args.jobs, args.producers, workers))
            for backend in backends:
                rows.append({"backend": backend, "workers": workers, "runs": runs[backend],
                             **summarize(runs[backend])})
    print(f"{args.jobs} jobs per run, {args.repeats} runs per row, min / median / max; "
          f"targets (PostgreSQL, 16 workers): enqueue/s ({args.producers} producers) >= 2000, claim p99 < 20 ms")
    header = ["backend", "workers", "enqueue/s (1)", f"enqueue/s ({args.producers})", "complete/s",
              "claim p50 ms", "claim p99 ms"]
    print(" | ".join(header))
    for r in rows:
        cells = [r["backend"], str(r["workers"])]
        for f in FIGURES:
            s = r[f]
            digits = 2 if f.endswith("_ms") else 0
            cells.append(f"{s['min']:.{digits}f} / {s['median']:.{digits}f} / {s['max']:.{digits}f}"
                         + (_met(f, s["median"]) if r["backend"] == "postgresql" and r["workers"] == 16 else ""))
        print(" | ".join(cells))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"benchmark": "queue", "jobs": args.jobs, "producers": args.producers,
                                    "database": redact(args.database) if args.database else None,
                                    "rows": rows}, indent=2))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
