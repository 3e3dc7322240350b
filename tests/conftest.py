"""Shared test fixtures: the photo fixtures, a clean Redis database, settings on a temp data dir.

Only the network edges are faked (platform servers, model hubs); everything of ours is real.
"""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path

import pytest

from tests.fixtures import BAD_IMAGES, IMAGES

# Never reach a model hub from a test.
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ["HF_HUB_DISABLE_TELEMETRY"] = "1"

ROOT = Path(__file__).resolve().parents[1]

REDIS_URL = os.environ.get("REMIXBOT_TEST_REDIS_URL", "redis://127.0.0.1:6379/15")


@pytest.fixture
def images_dir() -> Path:
    return IMAGES


@pytest.fixture
def bad_images_dir() -> Path:
    return BAD_IMAGES


@pytest.fixture
def redis_url():
    """A Redis database of its own (db 15), empty before and after the test."""
    import redis

    client = redis.Redis.from_url(REDIS_URL)
    client.flushdb()
    yield REDIS_URL
    client.flushdb()
    client.close()


@pytest.fixture
def settings(tmp_path):
    from bot.settings import load_settings

    base = load_settings({})
    return replace(base, data_dir=tmp_path / "data", log_level="INFO")


@pytest.fixture
def env(tmp_path) -> dict[str, str]:
    """Environment for a `remixbot` subprocess: its own data dir, no tokens, no Redis."""
    clean = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("REMIXBOT_", "TELEGRAM_", "DISCORD_")) and k != "REDIS_URL"
    }
    clean["REMIXBOT_DATA_DIR"] = str(tmp_path / "data")
    clean["PYTHONUNBUFFERED"] = "1"
    return clean
