"""Fixtures: the fake Bot API server, settings pointing PTB at it, and the running bot (embedded)."""

from __future__ import annotations

from dataclasses import replace

import pytest

from bot.settings import Secret
from tests.adapters.telegram.fake_server import FakeTelegram
from tests.adapters.telegram.harness import TOKEN, Harness, models_file


@pytest.fixture
async def fake():
    server = FakeTelegram(TOKEN)
    await server.start()
    yield server
    await server.close()


@pytest.fixture
def tg_settings(settings, fake, tmp_path):
    """Settings for a bot whose Bot API server is the fake one, with the test model registry."""
    return replace(
        settings,
        models_path=models_file(tmp_path),
        telegram_token=Secret(TOKEN),
        telegram_base_url=fake.base_url,
        telegram_base_file_url=fake.base_file_url,
    )


@pytest.fixture
async def bot(fake, tg_settings):
    """The bot process, embedded mode (engine in-process), polling the fake server."""
    harness = Harness(fake, tg_settings)
    await harness.start()
    yield harness
    await harness.stop()


@pytest.fixture
def alice(fake):
    return fake.person(1001, "Alice")


@pytest.fixture
def bob(fake):
    return fake.person(1002, "Bob")
