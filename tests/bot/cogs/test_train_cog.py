"""The /train cog's callback called directly with spec'd fakes."""

from __future__ import annotations

from types import SimpleNamespace
from unittest.mock import AsyncMock, MagicMock

import discord
import pytest

from bot.cli import model_refusal
from bot.cogs.train import Train
from storage import subjects
from storage.model_families import UnsupportedModel
from tests.bot import fakes

ATTACHMENT = discord.Attachment(data={"id": "1", "filename": "rex.png", "size": 10, "url": "https://x/rex.png",
                                      "proxy_url": "https://x/rex.png"}, state=fakes._STATE)


def photo() -> MagicMock:
    """An attachment whose download would fail the test."""
    fake = MagicMock(spec_set=ATTACHMENT)
    fake.read = AsyncMock(side_effect=AssertionError("a photo was downloaded"))
    return fake


async def test_train_refuses_an_unsupported_base_model_before_any_photo(db, cfg):
    """With an unsupported base model /train refuses, naming what is supported, and keeps no photo."""
    bot = SimpleNamespace(db=db, storage=cfg.storage, presets=None, model_refusal=UnsupportedModel("Flux"))
    with pytest.raises(UnsupportedModel, match=r"SDXL base; Flux is not supported\. Set trainer.base_model"):
        await Train.train.callback(Train(bot), fakes.interaction(user_id=1), "rex", "dog", photo(), photo(), photo())
    assert await subjects.list_for_owner(db, 1) == []


def test_the_bot_finds_an_unsupported_model_at_start_up(tmp_path):
    """`dreambot run` reads the base model's family once; an SD3 folder becomes /train's refusal."""
    (tmp_path / "model_index.json").write_text('{"_class_name": "StableDiffusion3Pipeline"}')
    assert "Stable Diffusion 3" in str(model_refusal(str(tmp_path)))


def test_a_model_not_on_the_bots_machine_is_left_to_the_worker(tmp_path, monkeypatch):
    """A base model the bot's machine cannot read (a worker elsewhere has it) refuses nothing."""
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path))
    assert model_refusal("someone/elsewhere") is None
