"""The embedded service (real SQLite, real engine in-process) on the test's own data dir, and a photo."""

from __future__ import annotations

import pytest

from adapters.cli import build_service, close_service


@pytest.fixture
async def service(settings):
    service = await build_service(settings)
    yield service
    await close_service(service)


@pytest.fixture
def coffee(images_dir) -> bytes:
    return (images_dir / "coffee.png").read_bytes()
