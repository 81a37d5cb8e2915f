"""Shared test helpers (fixtures live in conftest.py files)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import discord


@asynccontextmanager
async def running(
    client: discord.Client, token: str, *, timeout: float = 5.0
) -> AsyncIterator[discord.Client]:
    """Log in, connect in a task, wait for on_ready; close cleanly afterwards."""
    task = ready = None
    try:
        await client.login(token)
        task = asyncio.create_task(client.connect(reconnect=False))
        ready = asyncio.create_task(client.wait_until_ready())
        done, _ = await asyncio.wait({task, ready}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
        if task in done:
            raise RuntimeError("the client stopped before it was ready") from task.exception()
        if ready not in done:
            raise TimeoutError(f"the client was not ready within {timeout}s")
        yield client
    finally:
        await client.close()
        pending = [t for t in (task, ready) if t is not None]
        for t in pending:
            t.cancel()
        await asyncio.gather(*pending, return_exceptions=True)


# --- subjects through storage.lifecycle, as the bot and the worker make them ------------------------

@dataclass(frozen=True)
class StoredPhoto:
    """What storage.lifecycle keeps of a cleaned photo (the fields of storage.photos.CleanPhoto it reads)."""
    data: bytes
    suffix: str = ".jpg"
    width: int = 512
    height: int = 512
    findings: tuple[str, ...] = ()


def photos(n: int = 3, *, seed: int = 0, size: int = 1000) -> list[StoredPhoto]:
    """n distinct stand-in photos of `size` bytes (their bytes are never decoded by storage)."""
    return [StoredPhoto(data=bytes([seed % 256, i]) * (size // 2)) for i in range(n)]


async def draft(db, data_dir: Path, *, owner_id: int = 1, guild_id: int | None = 9, name: str = "rex",
                class_noun: str = "dog", n_photos: int = 3, limits=None, channel_id: int | None = 5):
    from storage import lifecycle

    return await lifecycle.create_draft(db, owner_id=owner_id, guild_id=guild_id, channel_id=channel_id, name=name,
                                        class_noun=class_noun, preset=None, photos=photos(n_photos, seed=owner_id),
                                        data_dir=data_dir, limits=limits or lifecycle.Limits())


async def consented(db, data_dir: Path, *, queue=None, review: bool = True, **kw):
    """A subject whose owner consented: held (`review`) or queued; returns lifecycle.Queued."""
    from storage import lifecycle
    from storage.config import QueueConfig

    subject = await draft(db, data_dir, **kw)
    return await lifecycle.confirm(db, subject_id=subject.id, user_id=subject.owner_id, queue=queue or QueueConfig(),
                                   review_required=review)


async def trained(db, data_dir: Path, *, queue=None, **kw):
    """A subject trained to the end by a simulated worker: its adapter recorded and in use."""
    queued = await consented(db, data_dir, queue=queue, review=False, **kw)
    return await finish_queued_training(db, data_dir, queued.job.id)


async def finish_queued_training(db, data_dir: Path, job_id: int):
    """Claim the queued training `job_id` as a simulated worker and finish it; returns the trained subject."""
    from storage import jobs, lifecycle

    job = await jobs.claim(db, worker_id="sim", lease_seconds=60, kinds=("train",))
    assert job is not None and job.id == job_id
    await lifecycle.begin_training(db, job_id=job.id, lease_token=job.lease_token)
    adapter = f"subjects/{job.subject_id}/job-{job.id}-adapter"
    kohya = f"subjects/{job.subject_id}/job-{job.id}-kohya.safetensors"
    (data_dir / adapter).mkdir(parents=True, exist_ok=True)
    (data_dir / adapter / "pytorch_lora_weights.safetensors").write_bytes(b"weights")
    (data_dir / kohya).write_bytes(b"kohya")
    subject, _ = await lifecycle.finish_training(db, job_id=job.id, lease_token=job.lease_token, adapter_path=adapter,
                                                 kohya_path=kohya, meta={"steps": 1}, result={"steps": 1},
                                                 data_dir=data_dir, gpu_seconds=1.0)
    return subject


def random_adapter(pipe, folder: Path, seed: int, *, text_encoder: bool = False) -> Path:
    """A LoRA adapter with seeded random weights (strong enough to change images), saved in diffusers format."""
    import torch

    from trainer import lora

    params = lora.add_train_adapters(pipe, rank=4, alpha=4.0, text_encoder=text_encoder)
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in params:
            p.copy_(torch.randn(p.shape, generator=g) * 0.2)
    lora.save_adapter(pipe, folder, metadata={"token": "sks", "class_noun": "dog"})
    lora.remove_train_adapters(pipe)
    return folder
