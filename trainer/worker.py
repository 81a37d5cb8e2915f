"""The GPU worker: claim a job, keep its lease alive, run it, record what it made, poll on.

One asyncio loop owns the database connection; training and generation run in a thread and
reach the database through it (`_call`), so heartbeats keep flowing while the GPU works. Every
storage call is serialised by one lock, because a storage write is a BEGIN IMMEDIATE transaction
and two interleaved on one connection would collide.

Failures are caught in one place (`_run_job`): the job is marked failed with a short reason
(input errors for good, anything else to be retried), the traceback goes to the log, GPU
memory is freed, and the worker polls on. SIGTERM asks a running training to checkpoint and
gives the job back to the queue, so the next worker resumes it.

Every state change goes through storage.lifecycle, and every write names the job's lease token.
A watcher reads the job every STOP_POLL_SECONDS: a cancel, revoke, ban or /forget stops training
between steps and generation between images. What the stopped job made is deleted: by
`lifecycle.job_stopped`, or here when the job's row is gone (a forgotten user). A database that
stays locked is waited out with a backoff, never fatal.

The image safety checker (trainer.safety) is loaded once, before the first job is claimed; a worker
that cannot load it refuses to run (CannotStart) unless trainer.safety_checker is "off"; so does one
with trainer.watermark on and no invisible-watermark package.
Every generated image and sample-grid tile passes it, and the job's guild policy
(storage.guilds.nsfw_mode) says what a flagged one becomes: under "block" it is never saved (a grid
tile turns grey), under "spoiler-in-age-restricted" it is saved and marked for the bot.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import os
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from storage import artifacts, blobs, files, guilds, jobs, lifecycle, logs, metrics, retention, subjects
from storage import db as storage_db
from storage.config import StorageConfig, TrainerSettings
from storage.errors import BlobStoreError, DreambotError, LeaseLost, StopRequested
from storage.provenance import Marks, sha256_file
from trainer.errors import CannotStart, InputError, OutOfMemory, TrainerError

log = logging.getLogger(__name__)

PROGRESS_EVENT_SECONDS = 15.0  # outbox progress events at most this often per job (the bot edits a message)
STOP_POLL_SECONDS = 2.0  # how often a running job's row is read for a cancel, revoke, ban or /forget
BUSY_BACKOFF_SECONDS = (0.5, 30.0)  # first and longest wait when the database stays locked
MAX_SUBJECTS_PER_PROMPT = 2
Listener = Callable[[str, dict], None]  # (event kind, payload): every event and progress report, for the CLI


def is_retryable(exc: BaseException) -> bool:
    """Input errors and storage's domain errors (deleted or revoked subject, ...) fail for good; an object store
    that could not be reached is retried."""
    if isinstance(exc, InputError | OutOfMemory):
        return False
    if isinstance(exc, TrainerError | BlobStoreError):
        return True
    return not isinstance(exc, DreambotError)


def short_reason(exc: BaseException) -> str:
    """What the job row and the user see: a domain error's own message, otherwise no internals."""
    if isinstance(exc, DreambotError) and not isinstance(exc, BlobStoreError):  # that one names the operator's store
        return str(exc)
    return f"internal error ({type(exc).__name__}); it has been logged and the job will be retried if it can be."


@dataclass
class _Flags:
    """Set by the heartbeat or a signal, read by the training thread between steps."""
    cancel: threading.Event = field(default_factory=threading.Event)
    shutdown: threading.Event = field(default_factory=threading.Event)
    lease_lost: threading.Event = field(default_factory=threading.Event)
    outcome: str = "succeeded"  # how the run ended, for dreambot_job_duration_seconds: set where it is decided
    cached: set[str] = field(default_factory=set)  # recorded paths the job read or wrote here; with an object
    # store they are dropped from this host's cache after the job (the store keeps them)

    def any(self) -> bool:
        return self.cancel.is_set() or self.shutdown.is_set() or self.lease_lost.is_set()


class Worker:
    def __init__(self, trainer: TrainerSettings, storage: StorageConfig, *, worker_id: str | None = None,
                 kinds: tuple[str, ...] = jobs.KINDS, listener: Listener | None = None):
        self.settings = trainer
        self.storage = storage
        self.data_dir = Path(storage.data_dir)
        self.blobs = blobs.attach(storage)  # with storage.blob_url, data_dir is only this host's cache
        self.worker_id = worker_id or f"{socket.gethostname()}:{os.getpid()}"
        self.kinds = kinds
        self.listener = listener
        self.db = None
        self._lock = asyncio.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._shutdown = asyncio.Event()
        self._current: _Flags | None = None
        self._runtime = None
        self._pipe = None
        self._pipe_source: str | None = None
        self._images = None
        self._safety = None  # the loaded trainer.safety.SafetyChecker; None when the setting is "off"
        self._safety_loaded = False

    # --- the loop -------------------------------------------------------------------------------

    async def run(self, *, until_job: int | None = None, idle_exit: bool = False) -> None:
        """Poll for jobs until shutdown; with `until_job`, until that job has finished (any final state).

        CannotStart, before any job is claimed, when the safety checker or the watermark cannot be loaded."""
        self._loop = asyncio.get_running_loop()
        await self._check_start()
        async with storage_db.connect(self.storage.database, busy_timeout_ms=self.storage.busy_timeout_ms) as db:
            self.db = db
            if dropped := await retention.drop_stale_cache(db, data_dir=self.data_dir):
                log.info("dropped %d cached files of jobs that no longer run here (a killed worker's)", dropped)
            log.info("worker %s polling for %s jobs", self.worker_id, ", ".join(self.kinds))
            busy = BUSY_BACKOFF_SECONDS[0]
            while not self._shutdown.is_set():
                try:
                    if until_job is not None and await self._finished(until_job):
                        return
                    await self._call(lifecycle.reap, data_dir=self.data_dir)
                    job = await self._call(jobs.claim, worker_id=self.worker_id,
                                           lease_seconds=self.storage.queue.lease_seconds, kinds=self.kinds)
                except storage_db.OperationalError as exc:  # locked, or the server away: wait it out, never die
                    log.warning("database busy (%s); trying again in %.1f s", exc, busy)
                    await self._sleep(busy)
                    busy = min(busy * 2, BUSY_BACKOFF_SECONDS[1])
                    continue
                busy = BUSY_BACKOFF_SECONDS[0]
                if job is None:
                    if idle_exit:
                        return
                    await self._idle()
                    continue
                with logs.context(job_id=job.id, subject_id=job.subject_id, worker=self.worker_id):
                    await self._run_job(job)

    async def _check_start(self) -> None:
        """Once, before the first claim: the base model must be on this machine (CannotStart names `dreambot
        fetch-model`), and the image safety checker is loaded on the device and dtype jobs will use. "auto"
        looks at the configured base model; a job on another base model (`dreambot train --model`) is checked
        by the same checker."""
        from storage import model_families
        from trainer import models, safety

        if self._safety_loaded:
            return
        if reason := model_families.missing(self.settings.base_model):  # nothing could be trained or generated
            raise CannotStart(reason)
        try:
            await asyncio.to_thread(self.blobs.check)
        except BlobStoreError as exc:
            raise CannotStart(str(exc)) from exc
        self._runtime = self._runtime or models.pick_runtime(self.settings.device, self.settings.mixed_precision)
        self._safety = await asyncio.to_thread(safety.load, self.settings.safety_checker, self.settings.base_model,
                                               self._runtime)
        self._safety_loaded = True
        if self._safety is None:
            log.warning('trainer.safety_checker = "off": generated images and sample grids are not checked')
        if self.settings.watermark:  # fail now, not at the first image
            from trainer import watermark

            try:
                watermark.load()
            except ImportError as exc:
                raise CannotStart(str(exc)) from exc

    async def _finished(self, job_id: int) -> bool:
        """Whether the job has ended (in any final state, or deleted with a forgotten user)."""
        try:
            return (await self._call(jobs.get, job_id)).state in jobs.FINAL
        except DreambotError:
            return True

    def request_shutdown(self) -> None:
        """SIGTERM/SIGINT: stop claiming; a running training checkpoints and is released to the queue."""
        log.info("shutdown requested")
        self._shutdown.set()
        if self._current is not None:
            self._current.shutdown.set()

    async def _idle(self) -> None:
        """Nothing to claim: wait until a job is queued (PostgreSQL wakes every idle worker at once),
        shutdown is asked for, or poll_seconds pass (SQLite workers poll; a retry's backoff ends unannounced)."""
        waits = [asyncio.ensure_future(self._shutdown.wait()),
                 asyncio.ensure_future(storage_db.wait_for_jobs(self.db, self.settings.poll_seconds))]
        try:
            await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for w in waits:
                w.cancel()

    async def _sleep(self, seconds: float) -> None:
        try:
            await asyncio.wait_for(self._shutdown.wait(), timeout=seconds)
        except TimeoutError:
            pass

    async def _call(self, fn, *args, **kwargs):
        """Run one storage function on the shared connection, one at a time."""
        async with self._lock:
            return await fn(self.db, *args, **kwargs)

    def _call_from_thread(self, fn, *args, **kwargs):
        """The same, from the training or generation thread; waits for the answer."""
        try:
            on_loop = asyncio.get_running_loop() is self._loop
        except RuntimeError:
            on_loop = False
        if on_loop:
            raise RuntimeError("_call_from_thread called on the event loop's own thread: it would deadlock")
        return asyncio.run_coroutine_threadsafe(self._call(fn, *args, **kwargs), self._loop).result()


    def _tell(self, kind: str, payload: dict) -> None:
        if self.listener is not None:
            try:
                self.listener(kind, payload)
            except Exception:
                log.exception("listener failed on %s", kind)

    # --- one job: the single place failures are caught -----------------------------------------

    async def _run_job(self, job) -> None:
        flags = self._current = _Flags()
        if self._shutdown.is_set():
            flags.shutdown.set()
        claimed = time.perf_counter()  # the job's timings start here (a train result's "timings")
        watch = asyncio.create_task(self._watch(job, flags))
        started = time.monotonic()
        log.info("job %d (%s) claimed, attempt %d", job.id, job.kind, job.attempts)
        try:
            if job.kind == "train":
                await self._train(job, flags, started, claimed=claimed)
            elif job.kind == "generate":
                await self._generate(job, flags, started)
            else:
                raise InputError(f"this worker cannot run {job.kind!r} jobs")
        except StopRequested:  # a write was refused: the job was cancelled, revoked or its owner banned
            flags.cancel.set()
            await self._stopped(job, flags, started)
        except InterruptedError:  # images or class images told to stop between steps (flags say why)
            await self._stopped(job, flags, started)
        except LeaseLost:
            await self._lost(job)
        except Exception as exc:
            log.exception("job %d failed", job.id)
            await self._fail(job, exc, started)
        finally:
            watch.cancel()
            self._current = None
            await self._free_memory()
            await self._evict(flags.cached)
            metrics.JOB_SECONDS.labels(kind=job.kind, outcome=flags.outcome).observe(time.monotonic() - started)
            observe_gpu_memory(getattr(self._runtime, "device", "cpu"), reset_peak=True)

    def _outcome(self, outcome: str) -> None:
        if self._current is not None:
            self._current.outcome = outcome

    async def _evict(self, paths: set[str]) -> None:
        """With an object store, drop the job's photos, checkpoints and outputs from this host's scratch cache: a
        later /forget or revoke then leaves no copy here. Class images (shared, no one's photos) stay."""
        for rel in sorted(paths):
            try:
                await asyncio.to_thread(files.evict, self.data_dir, rel)
            except (OSError, ValueError):
                log.exception("could not drop %s from the local cache", rel)

    async def _fail(self, job, exc: BaseException, started: float) -> None:
        reason = short_reason(exc)
        try:
            after = await self._call(lifecycle.fail_job, job_id=job.id, lease_token=job.lease_token, error=reason,
                                     retryable=is_retryable(exc), queue=self.storage.queue,
                                     gpu_seconds=time.monotonic() - started)
        except LeaseLost:
            await self._lost(job)
            return
        self._outcome("failed" if after.state in ("failed", "dead") else "retried")
        self._tell("failed" if after.state in ("failed", "dead") else "retry",
                   {"job_id": job.id, "error": reason, "run_after": after.run_after})

    async def _stopped(self, job, flags: _Flags, started: float) -> None:
        """A run that stopped between steps or images: cancelled, shutting down, or its lease lost."""
        try:
            if flags.lease_lost.is_set():
                raise LeaseLost(job.id)
            if not flags.cancel.is_set():
                try:
                    await self._call(lifecycle.release_job, job_id=job.id, lease_token=job.lease_token)
                    self._outcome("released")
                    log.info("job %d released for another worker (shutdown)", job.id)
                    return
                except StopRequested:  # cancelled while it was stopping
                    pass
            await self._call(lifecycle.job_stopped, job_id=job.id, lease_token=job.lease_token,
                             data_dir=self.data_dir, gpu_seconds=time.monotonic() - started)
            self._outcome("cancelled")
            self._tell("cancelled", {"job_id": job.id})
            log.info("job %d cancelled; what it made is deleted", job.id)
        except LeaseLost:
            await self._lost(job)

    async def _lost(self, job) -> None:
        """The job is no longer ours. If its row is gone (its user was forgotten), delete what we made."""
        self._outcome("lost")
        try:
            gone = not await self._call(lifecycle.job_exists, job.id)
        except Exception:
            log.exception("job %d: could not check whether it still exists", job.id)
            return
        if gone:
            paths = await self._call(lifecycle.abandoned_paths, job)
            removed = await asyncio.to_thread(lifecycle.remove_files, self.data_dir, paths)
            log.info("job %d was deleted while it ran; removed %d of its outputs", job.id, removed)
        else:
            log.warning("job %d: lease lost, another worker owns it now; dropping it", job.id)

    async def _watch(self, job, flags: _Flags) -> None:
        """Read the job every STOP_POLL_SECONDS (a cancel, revoke, ban or /forget stops the work) and
        renew its lease every lease_seconds / 3."""
        lease = self.storage.queue.lease_seconds
        every = min(STOP_POLL_SECONDS, lease / 3)
        last_beat = time.monotonic()
        while True:
            await asyncio.sleep(every)
            try:
                reason = await self._call(lifecycle.stop_reason, job_id=job.id, lease_token=job.lease_token)
                if reason is None and time.monotonic() - last_beat >= lease / 3:
                    await self._call(jobs.heartbeat, job_id=job.id, lease_token=job.lease_token, lease_seconds=lease)
                    last_beat = time.monotonic()
            except LeaseLost:
                reason = "lost"
            except Exception:  # a busy database: try again next round, the lease has slack
                log.exception("job %d: lease check failed", job.id)
                continue
            if reason == "lost":
                log.warning("job %d: lease lost or job deleted during the run", job.id)
                flags.lease_lost.set()
                return
            if reason == "cancel" and not flags.cancel.is_set():
                log.info("job %d: cancellation requested", job.id)
                flags.cancel.set()

    async def _free_memory(self) -> None:
        from trainer.train import free_memory

        await asyncio.to_thread(free_memory)

    # --- the base model, shared by training and generation ---------------------------------------

    async def _base(self, source: str):
        """The loaded base pipeline for `source`, loading it (in a thread) on first use or change."""
        from trainer import models
        from trainer.generate import ImageGenerator

        if self._pipe is None or self._pipe_source != source:
            self._pipe = self._images = None
            await self._free_memory()
            self._runtime = self._runtime or models.pick_runtime(self.settings.device, self.settings.mixed_precision)
            log.info("loading base model %s on %s (%s)", source, self._runtime.device, self._runtime.dtype_name)
            self._pipe = await asyncio.to_thread(models.load_pipeline, source, self._runtime,
                                                 **models.load_options(self.settings))
            self._pipe_source = source
            self._images = ImageGenerator(self._pipe, cache_size=self.settings.adapter_cache)
        return self._pipe

    # --- training ---------------------------------------------------------------------------------

    async def _train(self, job, flags: _Flags, started: float, *, claimed: float) -> None:
        """Train the job's subject and record the adapter; `claimed` (time.perf_counter() at the claim) starts the
        result's timings."""
        from trainer import config as train_config
        from trainer import lora, models, safety, train

        subject = await self._call(lifecycle.begin_training, job_id=job.id, lease_token=job.lease_token)
        photos = await self._call(subjects.photos, subject.id)
        if not photos:
            raise InputError("This subject has no photos: add some, then train again.")
        # The loaded pipeline says its family (loading refuses unsupported models): no second read of its files.
        pipe = await self._base(job.params.get("model") or self.settings.base_model)
        cfg = train_config.resolve(self.settings, job.params, token=subject.token, class_noun=subject.class_noun,
                                   family=models.family_name(pipe))
        self._images.unload_all()  # training needs the plain base model
        cfg = self._memory_plan(job, cfg)
        # the weights' fingerprint: keys the shared class images, and lets a checkpoint resume on another host
        cfg = dataclasses.replace(cfg, base_weights=await asyncio.to_thread(
            models.fingerprint, cfg.base_model, dtype=pipe.unet.dtype, cache_path=models.weight_hash_cache(self.data_dir)))

        callbacks = _JobCallbacks(self, job, flags)
        check_tiles = safety.TileCheck(self._safety, await self._call(guilds.nsfw_mode, job.guild_id))
        # InterruptedError (told to stop while making class images) is handled in _run_job
        class_dir, class_seconds = None, 0.0
        if cfg.prior_preservation:
            class_dir, class_seconds = await self._class_images(job, cfg, pipe, callbacks)
        out_dir = self.data_dir / "jobs" / str(job.id)
        subject_dir = self.data_dir / "subjects" / str(subject.id)
        flags.cached |= {p.path for p in photos} | {f"jobs/{job.id}", f"subjects/{subject.id}/job-{job.id}-adapter",
                                                    f"subjects/{subject.id}/job-{job.id}-kohya.safetensors"}
        instance_paths = await asyncio.to_thread(lambda: [files.local(self.data_dir, p.path) for p in photos])
        for checkpoint in await self._call(artifacts.for_job, job.id, "checkpoint"):  # an earlier attempt's, maybe
            await asyncio.to_thread(files.local, self.data_dir, checkpoint.path)  # elsewhere: train.train resumes
        result = await asyncio.to_thread(
            train.train, pipe, self._runtime, cfg,
            instance_paths=instance_paths, class_dir=class_dir,
            out_dir=out_dir, export_dir=subject_dir / f"job-{job.id}-adapter",
            kohya_path=subject_dir / f"job-{job.id}-kohya.safetensors",
            metadata={"photo_sha256": [p.sha256 for p in photos], "subject_id": subject.id, "job_id": job.id,
                      # the operator's stated license applies to the model it was stated for
                      lora.OVERRIDE_KEY: self.settings.model_license if cfg.base_model == self.settings.base_model
                      else ""},
            callbacks=callbacks, check_tiles=check_tiles,
            marks=Marks(base_model=cfg.base_model, watermark=self.settings.watermark))
        if result.stopped:
            await self._stopped(job, flags, started)
            return

        rel = lambda p: p.relative_to(self.data_dir).as_posix()  # noqa: E731
        for written in (result.adapter_dir, result.kohya_path):
            await asyncio.to_thread(files.publish, self.data_dir, rel(written))
        meta = {"steps": result.step, "preset": cfg.preset, "rank": cfg.rank, "base_model": cfg.base_model}
        summary = {"steps": result.step, "seconds": round(result.seconds, 1), "resumed_from": result.resumed_from,
                   "config": result.config.to_json(),
                   "timings": _timings(claimed, result, class_seconds=class_seconds)}
        subject, _ = await self._call(lifecycle.finish_training, job_id=job.id, lease_token=job.lease_token,
                                      adapter_path=rel(result.adapter_dir), kohya_path=rel(result.kohya_path),
                                      meta=meta, result=summary, data_dir=self.data_dir,
                                      gpu_seconds=time.monotonic() - started)
        self._tell("train_done", {"job_id": job.id, "subject_id": subject.id})
        log.info("job %d: trained subject %d in %.0f s", job.id, subject.id, result.seconds)

    def _memory_plan(self, job, cfg):
        """cfg with the batch, checkpointing and optimizer trainer.memory chooses (as given when "off"), logged."""
        from trainer import memory

        if self.settings.memory == "off":
            return cfg
        free = memory.free_bytes(self._runtime.device)
        chosen = memory.plan(family=cfg.family, resolution=cfg.resolution, rank=cfg.rank,
                             train_text_encoder=cfg.train_text_encoder, free_bytes=free, requested_batch=cfg.batch_size)
        need = memory.estimate_bytes(family=cfg.family, resolution=cfg.resolution, rank=cfg.rank,
                                     train_text_encoder=cfg.train_text_encoder, plan=chosen)
        log.info("job %d: memory plan for %s at %d px: %s (estimated %.1f GiB; %s)", job.id, cfg.family,
                 cfg.resolution, chosen.describe(), need / memory.GIB,
                 "CPU" if free is None else f"{free / memory.GIB:.1f} GiB available")
        return dataclasses.replace(cfg, batch_size=chosen.batch_size,
                                   gradient_checkpointing=chosen.gradient_checkpointing, optimizer=chosen.optimizer)

    async def _class_images(self, job, cfg, pipe, callbacks: _JobCallbacks) -> tuple[Path, float]:
        """The shared class-image set for this model, prompt and recipe, reused if any job made it before; and the
        seconds spent making it (0.0 when reused)."""
        from trainer import data

        key = data.class_cache_key(model=cfg.base_weights, prompt=cfg.class_prompt,
                                   resolution=cfg.resolution, steps=cfg.sample_steps, guidance=cfg.guidance_scale,
                                   count=cfg.class_images, sampler=type(pipe.scheduler).__name__)
        cached = await self._call(artifacts.find_cached, key)
        here = None if cached is None else await asyncio.to_thread(files.local, self.data_dir, cached.path)
        if here is not None and here.is_dir():
            log.info("job %d: reusing class images %s", job.id, key)
            await asyncio.to_thread(callbacks.on_message, f"Reusing {cfg.class_images} cached class images.")
            return here, 0.0
        if cached is not None:  # recorded but deleted from disk: forget it and make it again
            await self._call(artifacts.delete, artifact_id=cached.id, data_dir=self.data_dir)
        folder = self.data_dir / "class_images" / key
        await asyncio.to_thread(callbacks.on_message,
                                f"Generating {cfg.class_images} class images of '{cfg.class_prompt}'.")

        def make() -> Path:
            done = self._generate_class_images(job, cfg, pipe, folder, should_stop=callbacks.should_stop)
            data.class_latents(pipe.vae, done, resolution=cfg.resolution, flip=cfg.flip)  # before it is hashed
            return done

        making = time.perf_counter()
        done = await asyncio.to_thread(make)  # InterruptedError when told to stop
        seconds = time.perf_counter() - making
        await asyncio.to_thread(files.publish, self.data_dir, f"class_images/{key}")
        try:
            await self._call(lifecycle.record_artifact, job_id=job.id, lease_token=job.lease_token,
                             kind="class_images", path=f"class_images/{key}", cache_key=key, data_dir=self.data_dir,
                             meta={"prompt": cfg.class_prompt, "count": cfg.class_images,
                                   "base_model": cfg.base_model})
        except DreambotError:
            raise
        except Exception as exc:  # another worker recorded the same set a moment ago
            if await self._call(artifacts.find_cached, key) is None:
                raise exc
        return done, seconds

    def _generate_class_images(self, job, cfg, pipe, folder: Path, *, should_stop) -> Path:
        """trainer.data.generate_class_images in the largest batch trainer.memory expects to fit, halved on CUDA
        out-of-memory (the images already written are kept: generation resumes from its .partial folder)."""
        import torch

        from trainer import data, memory
        from trainer.train import free_memory

        batch = memory.generation_batch(family=cfg.family, resolution=cfg.resolution,
                                        free_bytes=memory.free_bytes(self._runtime.device), count=cfg.class_images)
        while True:
            log.info("job %d: generating %d class images in batches of %d", job.id, cfg.class_images, batch)
            try:
                return data.generate_class_images(
                    pipe, folder, prompt=cfg.class_prompt, count=cfg.class_images, resolution=cfg.resolution,
                    steps=cfg.sample_steps, guidance=cfg.guidance_scale, batch_size=batch, should_stop=should_stop)
            except torch.cuda.OutOfMemoryError:
                pass
            # Outside the except block, so the traceback's frames (and their tensors) are already freed.
            free_memory()
            if batch == 1:
                raise OutOfMemory(f"Generating class images ran out of GPU memory even one at a time (resolution "
                                  f"{cfg.resolution}). Use a smaller resolution, or a GPU with more memory.")
            batch //= 2
            log.warning("job %d: out of GPU memory generating class images; halving the batch", job.id)

    # --- generation -------------------------------------------------------------------------------

    async def _generate(self, job, flags: _Flags, started: float) -> None:
        from trainer import config as train_config
        from trainer import lora, models, safety
        from trainer.generate import save_grid, save_png

        p = job.params
        ids = list(p.get("subject_ids") or [])
        if len(ids) > MAX_SUBJECTS_PER_PROMPT:
            raise InputError(f"At most {MAX_SUBJECTS_PER_PROMPT} subjects can appear in one prompt.")
        adapters, bases = [], set()
        for subject_id in ids:
            subject = await self._call(subjects.get, subject_id)
            if subject.state != "trained" or subject.adapter_artifact_id is None:
                raise InputError(f"Subject {subject.name!r} is {subject.state}, not trained: it cannot be used.")
            art = await self._call(artifacts.get, subject.adapter_artifact_id)
            if art is None:
                raise InputError(f"Subject {subject.name!r} has no adapter any more: train it again.")
            flags.cached.add(art.path)
            adapters.append((f"adapter_{art.id}", await asyncio.to_thread(files.local, self.data_dir, art.path)))
            bases.add(art.meta.get("base_model") or self.settings.base_model)
        if len(bases) > 1:
            raise InputError("These subjects were trained on different base models and cannot share a prompt.")
        base = bases.pop() if bases else self.settings.base_model
        pipe = await self._base(base)
        made = await asyncio.to_thread(
            self._images.generate, p["prompt"], adapters, n=int(p.get("n") or 4), seed=p.get("seed"),
            steps=int(p.get("steps") or self.settings.sample_steps),
            guidance=float(p["guidance"] if p.get("guidance") is not None else self.settings.guidance_scale),
            resolution=train_config.resolution_for(self.settings, models.family_name(pipe)), should_stop=flags.any)

        # The checker sees the final images; the guild's policy says whether a flagged one is saved at all.
        screened = safety.screen_images(await asyncio.to_thread(safety.check, self._safety, made.images),
                                        await self._call(guilds.nsfw_mode, job.guild_id))
        if screened.withheld:
            log.info("job %d: the safety checker withheld %d of %d images", job.id, screened.withheld,
                     len(made.images))
        images, seeds = [made.images[i] for i in screened.keep], [made.seeds[i] for i in screened.keep]
        out = self.data_dir / "jobs" / str(job.id)
        flags.cached.add(f"jobs/{job.id}")
        rel = lambda p: p.relative_to(self.data_dir).as_posix()  # noqa: E731
        paths = []
        # Each file says it is AI-made: base model, the adapters' hashes and (per image) the seed that remakes it.
        hashes = tuple([await asyncio.to_thread(sha256_file, folder / lora.WEIGHT_NAME) for _, folder in adapters])
        marks = Marks(base_model=base, lora_sha256=hashes, watermark=self.settings.watermark)
        for i, (image, seed) in enumerate(zip(images, seeds, strict=True)):
            paths.append(rel(await asyncio.to_thread(save_png, image, out / "images" / f"{i:02d}-seed{seed}.png",
                                                     marks=dataclasses.replace(marks, seed=seed))))
        grid_path = None
        if images:  # nothing is left to show when every image was withheld
            grid_path = rel(await asyncio.to_thread(save_grid, images, cols=min(len(images), 4),
                                                    path=out / "grid.png", marks=marks))
        for written in paths + ([grid_path] if grid_path else []):
            await asyncio.to_thread(files.publish, self.data_dir, written)
        await self._call(lifecycle.finish_generation, job_id=job.id, lease_token=job.lease_token, image_paths=paths,
                         grid_path=grid_path, seeds=seeds, prompt=made.prompt, data_dir=self.data_dir,
                         gpu_seconds=time.monotonic() - started, flagged=screened.flagged,
                         withheld=screened.withheld)
        self._tell("images", {"job_id": job.id, "seeds": seeds, "withheld": screened.withheld})


def _timings(claimed: float, result, *, class_seconds: float) -> dict[str, float | None]:
    """Where a train job's time went, in seconds from its claim: to the first optimizer step (class images and
    data preparation included; None when a resumed run had no step left), making class images (0.0 when
    reused), training (grids excluded), drawing sample grids, and in all."""
    now = time.perf_counter()
    first = None if result.first_step_at is None else round(result.first_step_at - claimed, 3)
    return {"claim_to_first_step": first, "class_images": round(class_seconds, 3),
            "training": round(result.seconds - result.grid_seconds, 3), "grids": round(result.grid_seconds, 3),
            "total": round(now - claimed, 3)}


def observe_gpu_memory(device: str, *, reset_peak: bool = False) -> None:
    """dreambot_gpu_memory_bytes on a CUDA worker (then, with reset_peak, the peak starts again for the next
    job); on the CPU nothing is set, so the series stays absent."""
    if device != "cuda":
        return
    import torch

    if torch.cuda.is_available():
        metrics.gpu_memory(allocated=torch.cuda.memory_allocated(), peak=torch.cuda.max_memory_allocated())
        if reset_peak:
            torch.cuda.reset_peak_memory_stats()


class _JobCallbacks:
    """train.Callbacks for one job: progress, checkpoints and grids go to storage via the worker's loop."""

    def __init__(self, worker: Worker, job, flags: _Flags):
        self.worker, self.job, self.flags = worker, job, flags
        self._last_event = 0.0

    def should_stop(self) -> bool:
        return self.flags.any()

    def on_message(self, text: str) -> None:
        self._progress(0, 0, text, None, None, force=True)

    def on_progress(self, progress) -> None:
        metrics.observe_steps(progress.seconds_per_step, progress.window_steps)
        observe_gpu_memory(getattr(self.worker._runtime, "device", "cpu"))
        self._progress(progress.step, progress.total, progress.message or "",  # the bar already says the step
                       progress.eta_seconds, progress.loss, force=progress.step == progress.total)

    def _progress(self, step, total, message, eta, loss, *, force: bool) -> None:
        w, job = self.worker, self.job
        payload = {"job_id": job.id, "step": step, "total": total, "message": message,
                   "eta_seconds": None if eta is None else round(eta, 1),
                   "loss": None if loss is None else round(loss, 5)}
        now = time.monotonic()
        post = force or now - self._last_event >= PROGRESS_EVENT_SECONDS
        if post:
            self._last_event = now
        if post or total:
            w._call_from_thread(lifecycle.post_event, job_id=job.id, lease_token=job.lease_token,
                                kind="progress" if post else "", payload=payload,
                                progress=(step, total, message) if total else None)
        w._tell("progress", payload)

    def on_checkpoint(self, checkpoint) -> None:
        """Record the checkpoint (forgetting the ones the trainer pruned, an earlier attempt's included) and
        its grid. A refused write (the job was stopped) deletes what was just written and stops the run."""
        w, job = self.worker, self.job
        rel = lambda p: p.relative_to(w.data_dir).as_posix()  # noqa: E731
        # Uploaded before it is recorded, so a worker on another host can resume from any recorded checkpoint.
        for written in (checkpoint.path, checkpoint.grid):
            if written is not None:
                files.publish(w.data_dir, rel(written))
        try:
            w._call_from_thread(lifecycle.record_artifact, job_id=job.id, lease_token=job.lease_token,
                                kind="checkpoint", path=rel(checkpoint.path), data_dir=w.data_dir,
                                meta={"step": checkpoint.step}, replaces=[rel(p) for p in checkpoint.removed])
            lifecycle.remove_files(w.data_dir, [rel(p) for p in checkpoint.removed])  # the store's copies too
            if checkpoint.grid is None:
                return
            grid = w._call_from_thread(lifecycle.record_artifact, job_id=job.id, lease_token=job.lease_token,
                                       kind="grid", path=rel(checkpoint.grid), data_dir=w.data_dir,
                                       meta={"step": checkpoint.step, "nsfw": checkpoint.grid_nsfw,
                                             "withheld": checkpoint.grid_withheld,
                                             "flagged": checkpoint.grid_flagged})
        except DreambotError:
            lifecycle.remove_files(w.data_dir, [rel(checkpoint.path)] + ([rel(checkpoint.grid)] if checkpoint.grid
                                                                           else []))
            raise
        payload = {"job_id": job.id, "step": checkpoint.step, "artifact_id": grid.id, "final": checkpoint.final,
                   "nsfw": checkpoint.grid_nsfw, "withheld": checkpoint.grid_withheld}
        w._call_from_thread(lifecycle.post_event, job_id=job.id, lease_token=job.lease_token, kind="grid",
                            payload=payload)
        w._tell("grid", payload | {"path": str(checkpoint.grid)})
