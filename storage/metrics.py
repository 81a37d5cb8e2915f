"""Prometheus metrics, declared once: the bot and the worker observe into them, `--metrics-port` serves them.

What a process measures itself (job durations, step times, GPU memory, outbox and Discord API failures)
is counted where it happens. What the whole fleet shares (jobs waiting by kind and state, the age of the
oldest undelivered outbox event) is read from the database by `watch`, a cheap GROUP BY every few
seconds, so every process reports the same numbers whichever worker claimed what.

Labels stay few and bounded: job kinds and states, outcomes, HTTP statuses and route templates
("/channels/{channel_id}/messages"), never ids, tokens or URLs.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from prometheus_client import Counter, Gauge, Histogram, start_http_server

from storage import jobs
from storage.db import connect, fetch_all, fetch_one, now
from storage.errors import DreambotError

log = logging.getLogger(__name__)

WATCH_SECONDS = 5.0  # how often queue depth and outbox age are read from the database

QUEUE_JOBS = Gauge("dreambot_queue_jobs", "Jobs queued or running, by kind and state (the same in every process of "
                   "a fleet: read from the shared database)", ["kind", "state"])
JOB_SECONDS = Histogram("dreambot_job_duration_seconds", "Wall time of one job run on this worker, claim to "
                        "finish, by kind and outcome (succeeded, failed, retried, cancelled, released, lost)",
                        ["kind", "outcome"],
                        buckets=(1, 5, 15, 30, 60, 120, 300, 600, 1200, 1800, 3600, 7200, float("inf")))
TRAIN_STEP_SECONDS = Histogram("dreambot_train_step_seconds", "Wall time of one training step on this worker "
                               "(averaged over each progress window, one observation per step)",
                               buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2, 4, 8, 16, float("inf")))
GPU_MEMORY_BYTES = Gauge("dreambot_gpu_memory_bytes", "CUDA memory this worker holds: 'allocated' now and "
                         "'peak' during its current or last job; absent on a worker that runs on the CPU", ["kind"])
OUTBOX_OLDEST_SECONDS = Gauge("dreambot_outbox_oldest_undelivered_seconds", "Age of the oldest outbox event "
                              "Discord has not taken yet (parked ones included); 0 when none waits")
OUTBOX_FAILURES = Counter("dreambot_outbox_delivery_failures", "Tries to deliver an outbox event that Discord "
                          "refused or that failed, by event kind", ["kind"])
DISCORD_API_ERRORS = Counter("dreambot_discord_api_errors", "Discord API requests that failed once discord.py "
                             "gave up its own retries (429s and some 5xx it waits out are not counted), by HTTP "
                             "status ('network' when no answer came) and route template", ["status", "route"])


def serve(port: int, host: str = "127.0.0.1") -> int:
    """Serve /metrics on host:port from a daemon thread (prometheus-client's own server); returns the port
    (the one the system chose when `port` is 0)."""
    try:
        server, _thread = start_http_server(port, addr=host)
    except OSError as exc:
        raise DreambotError(f"--metrics-port {port}: cannot listen on {host}:{port} ({exc.strerror or exc}). "
                            "Choose a free port, or leave --metrics-port out to serve no metrics.") from exc
    bound = server.server_address[1]
    log.info("Prometheus metrics on http://%s:%d/metrics", host, bound)
    return bound


async def refresh(db) -> None:
    """Read queue depth and outbox age from the database into their gauges. Only queued and running jobs are
    counted (the claim index's leading column serves it): a finished job's outcome is dreambot_job_duration_seconds'
    label, and counting the whole ever-growing table every few seconds in every process would not scale."""
    marks = ",".join("?" * len(jobs.ACTIVE))
    query = f"SELECT kind, state, count(*) AS n FROM jobs WHERE state IN ({marks}) GROUP BY kind, state"
    counts = {(row["kind"], row["state"]): row["n"] for row in await fetch_all(db, query, jobs.ACTIVE)}
    for kind in sorted({*jobs.KINDS, *(k for k, _ in counts)}):
        for state in jobs.ACTIVE:  # zeros too: a state that emptied must read 0, not its last value
            QUEUE_JOBS.labels(kind=kind, state=state).set(counts.get((kind, state), 0))
    row = await fetch_one(db, "SELECT min(created_at) AS oldest FROM outbox WHERE delivered_at IS NULL")
    oldest = row["oldest"] if row is not None else None
    OUTBOX_OLDEST_SECONDS.set(0.0 if oldest is None else max(0.0, now() - oldest))


async def watch(database, *, busy_timeout_ms: int = 5000, every: float = WATCH_SECONDS) -> None:
    """Refresh the database gauges every `every` seconds on a connection of their own, until cancelled.
    A failed read is logged and tried again; it never stops the process."""
    async with connect(database, busy_timeout_ms=busy_timeout_ms) as db:
        while True:
            try:
                await refresh(db)
            except Exception:
                log.exception("could not read queue depth and outbox age for the metrics; trying again")
            await asyncio.sleep(every)


@contextlib.asynccontextmanager
async def watching(database, *, busy_timeout_ms: int = 5000, every: float = WATCH_SECONDS):
    """`watch` as a background task for the length of the block."""
    task = asyncio.create_task(watch(database, busy_timeout_ms=busy_timeout_ms, every=every), name="metrics")
    try:
        yield task
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


def observe_steps(seconds_per_step: float, steps: int) -> None:
    """Training steps done since the last report, each `seconds_per_step` long."""
    for _ in range(max(0, steps)):
        TRAIN_STEP_SECONDS.observe(seconds_per_step)


def gpu_memory(*, allocated: int, peak: int) -> None:
    GPU_MEMORY_BYTES.labels(kind="allocated").set(allocated)
    GPU_MEMORY_BYTES.labels(kind="peak").set(peak)


def port_number(text: str) -> int:
    """argparse type for --metrics-port: 0 (any free port) to 65535."""
    if not text.isdigit() or not 0 <= int(text) <= 65535:
        raise ValueError(text)
    return int(text)


port_number.__name__ = "port number (0-65535)"  # what argparse calls a bad value


def add_flags(parser) -> None:
    """--metrics-port and --metrics-host, the same on every long-running command."""
    parser.add_argument("--metrics-port", type=port_number, metavar="PORT",
                        help="serve Prometheus metrics on this port at /metrics (default: none)")
    parser.add_argument("--metrics-host", default="127.0.0.1", metavar="HOST",
                        help="address the metrics server listens on (default: 127.0.0.1, this machine only; "
                             "0.0.0.0 for a scraper on another host or container)")
