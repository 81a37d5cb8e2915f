"""The worker's side, done through storage as the trainer would: claim, write artifacts, post events."""

from __future__ import annotations

import io
from pathlib import Path

from PIL import Image

from storage import artifacts, consent, jobs, outbox, subjects
from storage.config import QueueConfig


def png(size: int = 64, colour=(200, 80, 40), noisy: bool = False) -> bytes:
    image = Image.new("RGB", (size, size), colour)
    if noisy:
        import numpy as np

        image = Image.fromarray(np.random.default_rng(0).integers(0, 256, (size, size, 3), dtype=np.uint8))
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    return buf.getvalue()


async def record_file(db, data_dir: Path, rel: str, data: bytes, **kw) -> artifacts.Artifact:
    path = data_dir / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return await artifacts.record(db, path=rel, data_dir=data_dir, **kw)


async def ready_subject(db, data_dir: Path, *, owner_id: int, guild_id: int, name: str = "rex",
                        class_noun: str = "dog") -> subjects.Subject:
    """A trained subject with consent and an adapter, as if /train had run to the end."""
    subject = await subjects.create(db, owner_id=owner_id, guild_id=guild_id, name=name, class_noun=class_noun)
    await consent.grant(db, subject_id=subject.id, user_id=owner_id, guild_id=guild_id,
                        text=consent.text_for(name=subject.name, class_noun=subject.class_noun))
    adapter = await record_file(db, data_dir, f"subjects/{subject.id}/adapter/pytorch_lora_weights.safetensors",
                                b"weights", kind="adapter", subject_id=subject.id, user_id=owner_id)
    await subjects.set_adapter(db, subject_id=subject.id, artifact_id=adapter.id)
    return await subjects.set_state(db, subject_id=subject.id, state="ready")


async def finish_generate(db, data_dir: Path, queue: QueueConfig, *, image: bytes | None = None) -> jobs.Job:
    """Claim the next job (a generate one), record its images and post the `images` event."""
    job = await jobs.claim(db, worker_id="sim", lease_seconds=60)
    assert job is not None and job.kind == "generate"
    n = job.params.get("n", 1)
    ids = [(await record_file(db, data_dir, f"jobs/{job.id}/image-{i}.png", image or png(), kind="image",
                              job_id=job.id, user_id=job.user_id)).id for i in range(n)]
    seeds = [1000 + i for i in range(n)]
    await outbox.post(db, kind="images", job_id=job.id, user_id=job.user_id, guild_id=job.guild_id,
                      channel_id=job.channel_id, payload={"job_id": job.id, "prompt": job.params["prompt"],
                                                          "image_artifact_ids": ids, "grid_artifact_id": None,
                                                          "seeds": seeds})
    return await jobs.complete(db, job_id=job.id, lease_token=job.lease_token, result={"seeds": seeds})


async def post(db, job: jobs.Job, kind: str, payload: dict) -> int:
    return await outbox.post(db, kind=kind, job_id=job.id, user_id=job.user_id, guild_id=job.guild_id,
                             channel_id=job.channel_id, payload={"job_id": job.id, **payload})
