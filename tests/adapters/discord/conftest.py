"""Fixtures: the fake Discord, and the bot (real service, real discord.py client) pointed at it."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import replace
from typing import Any

import discord
import pytest
import yarl

from adapters.cli import build_service, close_service
from adapters.discord.bot import RemixBot, build_client
from bot.service import Service
from bot.settings import Secret, Settings
from tests.adapters.discord.fake_server import FakeDiscord

TOKEN = "MTAxMDEwMTAxMA.fake-discord-token.c2VjcmV0LXRlc3QtdG9rZW4"


class Deployment:
    """One run of the bot as ``remixbot run`` wires it: the service, and the Discord client on it."""

    def __init__(self, server: FakeDiscord, settings: Settings, **options: Any):
        self.server = server
        self.settings = settings
        self.options = {"status_interval": 0.0, "guild_ready_timeout": 0.01, **options}
        self.service: Service | None = None
        self.client: RemixBot | None = None
        self._task: asyncio.Task | None = None

    async def start(self) -> Deployment:
        self.service = await build_service(self.settings)
        self.client = build_client(self.service, self.settings, **self.options)
        self._task = asyncio.create_task(self.client.start(self.settings.discord_token.reveal()))
        ready = asyncio.create_task(self.client.wait_until_ready())
        done, _ = await asyncio.wait({ready, self._task}, timeout=15, return_when=asyncio.FIRST_COMPLETED)
        if self._task in done:
            ready.cancel()
            self._task.result()  # raises what stopped the client
        assert ready in done, "the bot did not become ready"
        await self.server.connected()
        return self

    async def stop(self) -> None:
        if self.client is not None:
            await self.client.close()
        if self._task is not None:
            await asyncio.gather(self._task, return_exceptions=True)
        if self.service is not None:
            await close_service(self.service)
        self.client = self.service = self._task = None

    async def restart(self) -> Deployment:
        await self.stop()
        return await self.start()


@pytest.fixture
async def fake_discord(monkeypatch):
    server = FakeDiscord(token=TOKEN)
    await server.start()
    monkeypatch.setattr(discord.http.Route, "BASE", server.api_base)
    monkeypatch.setattr(discord.gateway.DiscordWebSocket, "DEFAULT_GATEWAY", yarl.URL(server.gateway_url))
    yield server
    await server.stop()


@pytest.fixture
def discord_settings(settings) -> Settings:
    return replace(settings, discord_token=Secret(TOKEN))


@pytest.fixture
async def deploy(fake_discord):
    """Start bots with given settings; all are stopped after the test."""
    started: list[Deployment] = []

    async def start(settings: Settings, **options: Any) -> Deployment:
        deployment = Deployment(fake_discord, settings, **options)
        started.append(deployment)
        return await deployment.start()

    yield start
    for deployment in started:
        await deployment.stop()


@pytest.fixture
async def remixbot(deploy, discord_settings) -> Deployment:
    """The bot in embedded mode with default settings."""
    return await deploy(discord_settings)


@pytest.fixture
def no_token_in_logs(caplog):
    """Fail the test if the bot token shows up in any log record."""
    caplog.set_level(logging.DEBUG)
    yield caplog
    leaked = [r.getMessage() for r in caplog.records if TOKEN in r.getMessage()]
    assert not leaked, f"the token leaked into the log: {leaked[:1]}"
