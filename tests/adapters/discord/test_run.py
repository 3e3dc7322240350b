"""`remixbot run` starts the Discord adapter when DISCORD_TOKEN is set; a bad token is one clear log line."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import replace

from adapters import cli
from adapters.discord.bot import run_discord
from bot.settings import Secret
from tests.adapters.discord.conftest import TOKEN
from tests.adapters.discord.steps import remix


async def test_remixbot_run_serves_discord_until_stopped(discord_settings, fake_discord, images_dir, caplog):
    caplog.set_level(logging.DEBUG)
    server = fake_discord
    running = asyncio.create_task(cli.run(discord_settings))
    try:
        await server.connected(timeout=20)
        assert server.identifies[-1]["token"] == TOKEN
        assert server.heartbeats >= 1, "the gateway heartbeat is acknowledged"
        _, job_id = await remix(server, server.user("ana"), images_dir / "coffee.png")
        message = await server.message(lambda m: f"info:{job_id}" in str(m["components"]), what="the result")
        assert message["attachments"]
    finally:
        running.cancel()
    assert await running == 0
    await server.until(lambda: not server._ready_sessions(), what="the gateway session closed")
    assert not [r for r in caplog.records if TOKEN in r.getMessage()]


async def test_a_refused_token_is_logged_without_the_token(settings, fake_discord, caplog):
    wrong = "NOT.the-right.token"
    service = await cli.build_service(replace(settings, discord_token=Secret(wrong)))
    try:
        await asyncio.wait_for(run_discord(service), 20)
    finally:
        await cli.close_service(service)
    messages = [r.getMessage() for r in caplog.records]
    assert any("Discord refused the token" in m for m in messages)
    assert not any(wrong in m for m in messages)
