"""The worker's metrics and JSON logs after a real train job on the tiny model, read as an operator would:
/metrics over HTTP, and the log lines a collector gets."""

from __future__ import annotations

import io
import json
import logging

from storage import db as storage_db
from storage import jobs, lifecycle, logs, metrics
from tests.metrics_scrape import in_process_port, scrape, until_scraped, value
from tests.trainer.conftest import add_subject, make_app_cfg
from trainer.worker import Worker

DURATION = "dreambot_job_duration_seconds_count"


async def test_a_train_job_moves_durations_step_times_and_queue_depth(tiny_model, photo_paths, tmp_path):
    """A failed and a succeeded job each count once by kind and outcome, every training step is timed, the
    queue gauge (read from the database) shows both, JSON log lines name the job and the worker, and the CPU
    worker reports no GPU memory."""
    cfg = make_app_cfg(tiny_model, tmp_path / "data")
    port = in_process_port()
    before = scrape(port)
    out = io.StringIO()
    handler = logs.configure("json", stream=out)
    try:
        async with storage_db.connect(cfg.storage.database) as db:
            subject = await add_subject(db, cfg, photo_paths)
            # An image of a subject that is not trained yet fails for good, before any model loads.
            bad = await jobs.enqueue(db, kind="generate", user_id=1, params={"subject_ids": [subject.id],
                                                                             "prompt": "x"}, cfg=cfg.storage.queue)
            job = (await lifecycle.queue_training(db, subject_id=subject.id, queue=cfg.storage.queue)).job
            worker = Worker(cfg.trainer, cfg.storage, worker_id="test-worker")
            async with metrics.watching(cfg.storage.database, every=0.05):
                await worker.run(until_job=job.id)
                after = await until_scraped(
                    port, lambda s: ("dreambot_queue_jobs", frozenset({("kind", "train"), ("state", "running")})) in s
                    and all(value(s, "dreambot_queue_jobs", kind=k, state=st) == 0
                            for k in ("train", "generate") for st in ("queued", "running")),
                    what="the queue gauge to read empty once both jobs ended")
            assert (await jobs.get(db, job.id)).state == "succeeded"
            assert (await jobs.get(db, bad.id)).state == "failed"
    finally:
        logging.getLogger().removeHandler(handler)

    def moved(name, **labels):
        return value(after, name, **labels) - value(before, name, **labels)

    assert moved(DURATION, kind="train", outcome="succeeded") == 1
    assert moved(DURATION, kind="generate", outcome="failed") == 1
    assert moved("dreambot_job_duration_seconds_sum", kind="train", outcome="succeeded") > 0
    assert moved("dreambot_train_step_seconds_count") == cfg.trainer.presets["quick"].steps
    assert not [key for key in after if key[0] == "dreambot_queue_jobs" and ("state", "succeeded") in key[1]]
    assert not [key for key in after if key[0] == "dreambot_gpu_memory_bytes"]  # absent on the CPU

    records = [json.loads(line) for line in out.getvalue().splitlines()]
    claimed = [r for r in records if r["message"].startswith(f"job {job.id} (train) claimed")]
    assert claimed and claimed[0]["job_id"] == job.id and claimed[0]["subject_id"] == subject.id
    assert claimed[0]["worker"] == "test-worker" and claimed[0]["level"] == "INFO"
    failed = [r for r in records if r.get("job_id") == bad.id and r["level"] == "ERROR"]
    assert failed and "not trained" in failed[0]["exception"]
