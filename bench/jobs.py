"""Whole training jobs on one warm worker, queued the way `dreambot train` queues them.

One trainer.worker.Worker serves every job of a bench run: it loads the base pipeline once and keeps it, as a
long-running worker does, and each job is queued through storage.lifecycle (a subject with its photos and the
operator's consent, then its train job) and run with `worker.run(until_job=...)`. A job's time is read back
from its row: claim to finish, and the worker's own timings when it recorded them.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

from storage import artifacts, intake, jobs, lifecycle
from storage import db as storage_db
from storage.config import Config

LOCAL_USER = 1  # the operator, as at the command line


@dataclass(frozen=True)
class JobTimes:
    job_id: int
    seconds: float  # claim to finish, from the job row
    timings: dict | None  # the worker's own split (claim_to_first_step, class_images, training, grids, total)

    @property
    def warm_start(self) -> float | None:
        """Seconds from the claim to the first optimizer step, when the worker recorded it."""
        return None if self.timings is None else self.timings.get("claim_to_first_step")


class WarmWorker:
    """A worker kept warm between jobs, on the data dir and database `cfg.storage` names."""

    def __init__(self, cfg: Config, photos: list[Path]):
        from trainer.worker import Worker

        self.cfg = cfg
        self.data_dir = Path(cfg.storage.data_dir)
        self.worker = Worker(cfg.trainer, cfg.storage, worker_id="bench")
        found = intake.inspect([intake.Upload(label=p.name, filename=p.name, content_type=None, data=p.read_bytes())
                                for p in photos], cfg.storage.photos, check_count=False)
        if found.refused:
            raise found.refusal()
        self.photos = found.accepted
        self._jobs = 0

    def _connect(self):
        st = self.cfg.storage
        return storage_db.connect(st.database, busy_timeout_ms=st.busy_timeout_ms)

    async def train(self, *, class_noun: str, steps: int | None = None) -> JobTimes:
        """Queue a new subject of `class_noun` (the default preset, `steps` if given) and run its job to the end."""
        self._jobs += 1
        params = {"preset": self.cfg.trainer.default_preset, "steps": steps, "model": None}
        async with self._connect() as db:
            _, job = await lifecycle.local_training(
                db, owner_id=LOCAL_USER, name=f"bench{self._jobs}", class_noun=class_noun, photos=self.photos,
                params=params, idempotency_key=f"bench-{self._jobs}-{time.time()}", consent_given=True,
                queue=self.cfg.storage.queue, data_dir=self.data_dir)
        await self.worker.run(until_job=job.id)
        async with self._connect() as db:
            job = await jobs.get(db, job.id)
        if job.state != "succeeded":
            raise RuntimeError(f"bench job {job.id} ended {job.state}: {job.error}; see the log above")
        return JobTimes(job.id, job.finished_at - job.started_at, (job.result or {}).get("timings"))

    def class_dir(self) -> Path:
        """The cached class-image folder (the worker keeps each set under class_images/<its cache key>)."""
        sets = sorted((self.data_dir / "class_images").glob("*/"))
        if len(sets) != 1:
            raise RuntimeError(f"expected one cached class-image set, found {len(sets)}")
        return sets[0]

    async def forget_class_images(self) -> int:
        """Delete every cached class-image set through storage, so the next job makes its own; how many."""
        deleted = 0
        async with self._connect() as db:
            for folder in (self.data_dir / "class_images").glob("*/"):
                cached = await artifacts.find_cached(db, folder.name)
                if cached is not None:
                    deleted += await artifacts.delete(db, artifact_id=cached.id, data_dir=self.data_dir)
        return deleted

    async def pipeline(self):
        """(pipe, runtime): the worker's own loaded base pipeline, which its jobs train and generate on."""
        pipe = await self.worker._base(self.cfg.trainer.base_model)
        return pipe, self.worker._runtime
