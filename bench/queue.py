"""Queue benchmark: enqueue rate, claim-to-complete rate and claim latency with 1, 2 and 4 workers.

Every enqueue, claim and completion is its own durable transaction (WAL, synchronous=FULL),
exactly as the bot and the worker run them. Workers are separate processes on one SQLite file.

    python -m bench.queue [--jobs 2000] [--producers 32] [--out bench/out/queue.json]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing as mp
import statistics
import tempfile
import time
from pathlib import Path

from storage import db as database
from storage import jobs
from storage.config import QueueConfig

CFG = QueueConfig(max_queued_per_user=10**9)


async def _fill(path: Path, n: int, producers: int) -> float:
    """Enqueue n jobs from `producers` concurrent callers on one connection; returns enqueues per second.

    One producer awaits each enqueue before the next (one durable commit each); many producers
    are what a busy bot looks like, and their enqueues share commits (group commit).
    """
    async with database.connect(path) as db:
        async def produce(k: int) -> None:
            for i in range(k, n, producers):
                await jobs.enqueue(db, kind="generate" if i % 2 else "train", user_id=i % 50, params={"i": i},
                                   cfg=CFG)
        start = time.perf_counter()
        await asyncio.gather(*(produce(k) for k in range(producers)))
        return n / (time.perf_counter() - start)


def _worker(path: str, worker_id: str, start_at: float, out: mp.Queue) -> None:
    async def run() -> tuple[list[float], int]:
        latencies, done = [], 0
        async with database.connect(path) as db:
            while time.time() < start_at:
                await asyncio.sleep(0.001)
            while True:
                t0 = time.perf_counter()
                job = await jobs.claim(db, worker_id=worker_id, lease_seconds=60)
                latencies.append(time.perf_counter() - t0)
                if job is None:
                    return latencies, done
                await jobs.complete(db, job_id=job.id, lease_token=job.lease_token, result={})
                done += 1
    out.put(asyncio.run(run()))


def _drain(path: Path, workers: int) -> dict:
    out: mp.Queue = mp.Queue()
    start_at = time.time() + 0.5  # let every process open its connection first
    procs = [mp.Process(target=_worker, args=(str(path), f"w{i}", start_at, out)) for i in range(workers)]
    for p in procs:
        p.start()
    results = [out.get() for _ in procs]
    finished = time.time()
    for p in procs:
        p.join()
    latencies = sorted(x for lat, _ in results for x in lat)
    done = sum(n for _, n in results)
    return {
        "workers": workers,
        "jobs": done,
        "completes_per_s": done / (finished - start_at),
        "claim_p50_ms": 1000 * statistics.median(latencies),
        "claim_p99_ms": 1000 * latencies[min(len(latencies) - 1, int(0.99 * len(latencies)))],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=2000)
    parser.add_argument("--producers", type=int, default=32, help="concurrent enqueuers for the loaded figure")
    parser.add_argument("--out", type=Path, default=Path("bench/out/queue.json"))
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for workers in (1, 2, 4):
            path = Path(tmp) / f"queue-{workers}.sqlite3"
            single = asyncio.run(_fill(path, args.jobs // 2, 1))
            loaded = asyncio.run(_fill(path, args.jobs - args.jobs // 2, args.producers))
            rows.append({"enqueues_per_s_1_producer": single, f"enqueues_per_s_{args.producers}_producers": loaded,
                         **_drain(path, workers)})
    print(f"{'workers':>7} {'jobs':>6} {'enqueue/s (1 producer)':>23} {f'enqueue/s ({args.producers})':>15} "
          f"{'complete/s':>11} {'claim p50 ms':>13} {'claim p99 ms':>13}")
    for r in rows:
        print(f"{r['workers']:>7} {r['jobs']:>6} {r['enqueues_per_s_1_producer']:>23.0f} "
              f"{r[f'enqueues_per_s_{args.producers}_producers']:>15.0f} {r['completes_per_s']:>11.0f} "
              f"{r['claim_p50_ms']:>13.2f} {r['claim_p99_ms']:>13.2f}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"benchmark": "queue", "rows": rows}, indent=2))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
