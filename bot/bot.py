"""The Bot: database and settings injected, cogs loaded from one tuple, persistent buttons, background loops."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Collection
from pathlib import Path

import aiosqlite
import discord
from discord.ext import commands

from bot import api_errors, endpoints, render, views
from bot.consent_view import ConsentView
from bot.delivery import Deliverer
from bot.error_handler import on_tree_error
from storage import deliveries, guilds, lifecycle, retention, subjects
from storage.config import BotSettings, StorageConfig
from storage.licenses import ModelLicense
from storage.model_families import UnsupportedModel

log = logging.getLogger(__name__)

INITIAL_EXTENSIONS = (
    "bot.cogs.train",
    "bot.cogs.imagine",
    "bot.cogs.subjects",
    "bot.cogs.privacy",
    "bot.cogs.moderation",
)
SWEEP_SECONDS = 60.0
MB = 1 << 20


class DreamBot(commands.Bot):
    def __init__(self, *, db: aiosqlite.Connection, settings: BotSettings, storage: StorageConfig,
                 sync_commands: bool = True, poll_seconds: float = 1.0, presets: Collection[str] | None = None,
                 safety_checker_off: bool = False, model_license: ModelLicense | None = None,
                 model_refusal: UnsupportedModel | None = None, **client_options) -> None:
        endpoints.use(settings.api_base, settings.gateway_url)
        # discord.py's DEBUG records carry whole gateway payloads and request URLs: interaction
        # tokens, webhook tokens and signed attachment URLs. They never reach our logs, even with -v.
        logging.getLogger("discord").setLevel(max(logging.INFO, logging.getLogger("discord").getEffectiveLevel()))
        api_errors.count()  # every failed Discord request shows in dreambot_discord_api_errors_total
        super().__init__(command_prefix=commands.when_mentioned, intents=discord.Intents.default(),
                         help_command=None, allowed_mentions=discord.AllowedMentions.none(), **client_options)
        self.db = db
        self.settings = settings
        self.storage = storage
        self.sync_commands = sync_commands
        self.presets = tuple(presets) if presets is not None else None  # [trainer] presets, checked at /train
        self.safety_checker_off = safety_checker_off  # [trainer] safety_checker = "off": /mod policy says so
        self.model_license = model_license  # the base model's, resolved once at start-up: /train and /subjects show it
        self.model_refusal = model_refusal  # an unsupported base model's UnsupportedModel: /train refuses with it
        self.deliverer = Deliverer(self, poll_seconds=poll_seconds)
        self._tasks: list[asyncio.Task] = []

    @property
    def data_dir(self) -> Path:
        return self.storage.data_dir

    async def setup_hook(self) -> None:
        for extension in INITIAL_EXTENSIONS:
            await self.load_extension(extension)
        self.tree.on_error = on_tree_error
        self.add_dynamic_items(*views.DYNAMIC_ITEMS)
        for subject in await subjects.drafts(self.db):  # Confirm/Cancel keep working after a restart
            self.add_view(ConsentView(subject.id, subject.owner_id))
        if self.sync_commands:
            await self.tree.sync()
        self._tasks = [asyncio.create_task(self.deliverer.run(), name="outbox-delivery"),
                       asyncio.create_task(self._sweep(), name="draft-sweeper")]

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await super().close()

    async def _sweep(self) -> None:
        """Expire unconfirmed drafts (deleting their photos), stale interaction tokens, and whatever has
        outlived [storage.retention]. Each part runs on its own: one failing never stops the others."""
        parts = (("drafts", lambda: lifecycle.expire_drafts(self.db, data_dir=self.storage.data_dir)),
                 ("interaction tokens", lambda: deliveries.forget_expired_tokens(self.db)),
                 ("retention", lambda: retention.sweep(self.db, data_dir=self.storage.data_dir,
                                                       cfg=self.storage.retention)))
        while True:
            for name, run in parts:
                try:
                    await run()
                except Exception:
                    log.exception("sweep of %s failed; the others go on, and it is tried again", name)
            await asyncio.sleep(SWEEP_SECONDS)

    def limits(self, command: str) -> lifecycle.Limits:
        """What one request may use: the command's cooldown, the photo storage cap, the known presets."""
        return lifecycle.Limits(cooldown_seconds=getattr(self.settings, f"{command}_cooldown_seconds"),
                                user_quota_bytes=self.storage.photos.user_quota_mb * MB,
                                presets=self.presets, review_default=self.settings.review_required)

    async def review_required(self, guild_id: int | None) -> bool:
        if guild_id is None:
            return self.settings.review_required
        policy = await guilds.policy(self.db, guild_id, default_review=self.settings.review_required)
        return policy.review_required

    async def audit(self, action: str, *, actor_id: int | None, fields: dict[str, str] | None = None) -> None:
        """Post an event to the audit channel as an embed (never with photos); failures are only logged."""
        channel_id = self.settings.audit_channel_id
        if not channel_id:
            return
        try:
            channel = self.get_channel(channel_id) or await self.fetch_channel(channel_id)
            await channel.send(embed=render.audit_embed(action, actor_id=actor_id, fields=fields),
                               allowed_mentions=discord.AllowedMentions.none())
        except discord.HTTPException:
            log.exception("could not post %s to the audit channel %s", action, channel_id)


class ShardedDreamBot(DreamBot, commands.AutoShardedBot):
    """DreamBot over several gateway connections (bot.shards): discord.py routes each guild's events to shard
    (guild_id >> 22) % shard_count; everything else is the same bot."""


def bot_class(shards: str) -> type[DreamBot]:
    """bot.shards: empty, one connection; "auto" or a number, AutoShardedBot."""
    return ShardedDreamBot if shards.strip() else DreamBot


def shard_options(shards: str) -> dict[str, int]:
    """A number sets shard_count; "auto" asks Discord (GET /gateway/bot) for its recommendation."""
    text = shards.strip().lower()
    return {"shard_count": int(text)} if text.isdigit() else {}
