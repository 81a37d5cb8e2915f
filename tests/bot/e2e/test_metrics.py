"""--metrics-port on the bot's side: refused outbox events, Discord API errors, queue depth and outbox age,
read over HTTP as Prometheus would after the real bot met a refusing emulator."""

from __future__ import annotations

import dataclasses
import re

from storage import jobs, metrics
from storage.config import OutboxConfig
from tests.bot.e2e import worker_sim
from tests.bot.e2e.conftest import running_bot
from tests.metrics_scrape import in_process_port, scrape, until_scraped, value

SENDS = "POST /channels/{channel_id}/messages"


def quick_outbox(config):
    settings = OutboxConfig(base_seconds=0.01, max_seconds=0.05, park_after=3)
    return dataclasses.replace(config, storage=dataclasses.replace(config.storage, outbox=settings))


async def test_a_refused_outbox_event_moves_the_failure_counters_and_the_outbox_age(emu, world, config):
    """Discord answering 503 to the result's send: outbox failures and Discord API errors (503, the send
    route) count up, the event's age shows, and the queue gauge reads the job from the database."""
    port = in_process_port()
    before = scrape(port)
    emu.faults.fail("POST", "/channels/{channel_id}/messages", status=503, code=0, message="Service Unavailable",
                    times=10_000)
    async with running_bot(quick_outbox(config), emu.token) as bot:
        async with metrics.watching(config.storage.database, every=0.05):
            job = await jobs.enqueue(bot.db, kind="train", user_id=world.alice.id, params={}, cfg=bot.storage.queue,
                                     guild_id=world.guild.id, channel_id=world.channel.id)
            await worker_sim.post(bot.db, job, "failed", {"error": "out of memory"})
            await emu.wait_for(lambda: len(emu.faults.fired) >= 3, timeout=10, what="three refused sends")
            after = await until_scraped(port, lambda s: value(s, "dreambot_outbox_oldest_undelivered_seconds") > 0,
                                          what="the undelivered event's age")
    failures = "dreambot_outbox_delivery_failures_total"
    assert value(after, failures, kind="failed") - value(before, failures, kind="failed") >= 3
    errors = "dreambot_discord_api_errors_total"
    assert value(after, errors, status="503", route=SENDS) - value(before, errors, status="503", route=SENDS) >= 3
    assert value(after, "dreambot_queue_jobs", kind="train", state="queued") == 1
    assert value(after, "dreambot_queue_jobs", kind="generate", state="queued") == 0


async def test_a_delivered_outbox_reads_age_zero(emu, world, config):
    """Once Discord takes the event, the oldest-undelivered age falls back to 0."""
    port = in_process_port()
    async with running_bot(quick_outbox(config), emu.token) as bot:
        async with metrics.watching(config.storage.database, every=0.05):
            job = await jobs.enqueue(bot.db, kind="train", user_id=world.alice.id, params={}, cfg=bot.storage.queue,
                                     guild_id=world.guild.id, channel_id=world.channel.id)
            await worker_sim.post(bot.db, job, "failed", {"error": "out of memory"})
            await emu.wait_for_message(world.channel, lambda m: "out of memory" in m.content, timeout=10)
            await until_scraped(port, lambda s: value(s, "dreambot_outbox_oldest_undelivered_seconds") == 0
                                  and value(s, "dreambot_queue_jobs", kind="train", state="queued") == 1,
                                  what="an empty outbox")


async def test_a_refused_interaction_response_counts_under_its_route_template(emu, world, dreambot):
    """A 400 on a command's interaction response (the webhook client) is counted by status and route template,
    with no interaction id or token in the label."""
    port = in_process_port()
    route = "POST /interactions/{webhook_id}/{webhook_token}/callback"
    before = value(scrape(port), "dreambot_discord_api_errors_total", status="400", route=route)
    emu.faults.fail("POST", "/interactions/*/*/callback", status=400, code=50035, message="Invalid Form Body")
    await emu.invoke_slash(world.guild.id, world.channel.id, world.alice, "subjects")
    after = await until_scraped(port, lambda s: value(s, "dreambot_discord_api_errors_total", status="400",
                                                      route=route) > before, what="the refused response")
    routes = [dict(key[1])["route"] for key in after if key[0] == "dreambot_discord_api_errors_total"]
    assert routes and not [r for r in routes if re.search(r"/\d{5,}|aW50", r)]  # no ids, no tokens
