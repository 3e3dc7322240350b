"""What a Discord user does in these tests, and how the tests read the bot's answers."""

from __future__ import annotations

import asyncio
import io
import re
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from PIL import Image

from bot import sheets
from bot.service import Service
from tests.adapters.discord.fake_server import Channel, FakeDiscord, Interaction, User, custom_ids

JOB_ID = re.compile(r"`([0-9a-f]{12})`")


def job_ids(text: str) -> list[str]:
    return JOB_ID.findall(text)


def is_result(message: dict[str, Any], job_id: str) -> bool:
    """The job's message shows its outcome: result buttons (and images), or a failure line."""
    return f"info:{job_id}" in custom_ids(message) or "✖️ Cancelled" in message["content"]


async def remix(
    server: FakeDiscord,
    user: User,
    image: Path | dict,
    *,
    channel: Channel | None = None,
    prompt: str = "a watercolor painting",
    **options: Any,
) -> tuple[Interaction, str]:
    """``/remix`` and the job id from the private acknowledgement."""
    attachment = server.upload(image) if isinstance(image, Path) else image
    interaction = await server.slash("remix", user, channel, image=attachment, prompt=prompt, **options)
    text = await interaction.text()
    ids = job_ids(text)
    assert ids, f"the bot did not queue the job: {text}"
    return interaction, ids[0]


async def status_message(server: FakeDiscord, service: Service, job_id: str, timeout: float = 20.0) -> dict:
    """The job's status message (the one its result lands in), found where the history says it is."""

    async def located() -> dict | None:
        record = await service.job(job_id)
        if record is None or not record.status_message:
            return None
        return server.messages.get(int(record.status_message.split(":")[1]))

    return await eventually(located, timeout, f"the status message of job {job_id}")


async def result(server: FakeDiscord, service: Service, job_id: str, timeout: float = 30.0) -> dict:
    """The job's message once it shows the outcome."""
    message = await status_message(server, service, job_id, timeout)
    return await server.until(
        lambda: server.messages.get(int(message["id"])) if is_result(message, job_id) else None,
        timeout,
        f"the result of job {job_id}: {message['content']!r}",
    )


async def eventually(
    check: Callable[[], Any], timeout: float = 20.0, what: str = "a condition", every: float = 0.02
) -> Any:
    """Poll ``check`` (sync or async) until it returns something truthy, or fail after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if asyncio.iscoroutine(value):
            value = await value
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        await asyncio.sleep(every)


def sheet_size(*columns: list[tuple[int, int]]) -> tuple[int, int]:
    """The size of the core's labelled sheet (``bot.sheets``) of columns of pictures of these sizes;
    an empty column stands for a job with no picture (its note shows instead)."""
    return sheets.sheet(
        [
            sheets.Column(f"column {i}", tuple(Image.new("RGB", size) for size in sizes), "note")
            for i, sizes in enumerate(columns)
        ]
    ).size


def image_size(data: bytes) -> tuple[int, int]:
    with Image.open(io.BytesIO(data)) as image:
        return image.size
