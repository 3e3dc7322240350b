"""A worker's side of the Redis wire, played by a test: it publishes a job's events (live previews
included) and delivers its result exactly as ``engine.worker`` does (``bot.queue.wire``'s codecs,
keys and channel), so the bot under test hears them through its real ``ArqQueue``. The test
decides the pace, which a real engine on a CPU could not keep."""

from __future__ import annotations

import io
import json
import time

import redis.asyncio
from PIL import Image

from bot.jobs import Event, Output, Result, Status
from bot.queue.wire import (
    RATES_KEY,
    WORKER_PREFIX,
    encode_event,
    encode_result,
    events_channel,
    redis_settings,
    result_key,
)

JPEG_MAGIC = b"\xff\xd8"


def jpeg(shade: int, size: tuple[int, int] = (128, 96)) -> bytes:
    """A small JPEG, as the engine makes of the current latents (≤ 256 px)."""
    out = io.BytesIO()
    Image.new("RGB", size, (shade % 256, 90, 160)).save(out, format="JPEG", quality=70)
    return out.getvalue()


def png(size: tuple[int, int] = (160, 120)) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", size, (30, 200, 90)).save(out, format="PNG")
    return out.getvalue()


class PlayedWorker:
    def __init__(self, redis_url: str):
        self._redis = redis.asyncio.Redis.from_url(redis_url)
        self._channel = events_channel(redis_settings(redis_url).database)

    async def close(self) -> None:
        await self._redis.aclose()

    async def beat(self, group: str, models: list[str], seconds_per_job: float) -> None:
        """Announce itself (a heartbeat serving ``group``) with a measured rate for each model, so the
        bot's queue can tell waiting users an ETA."""
        beat = {"id": "played", "groups": [group], "availability": dict.fromkeys(models), "at": time.time()}
        await self._redis.set(WORKER_PREFIX + "played", json.dumps(beat), ex=120)
        for model in models:
            await self._redis.hset(RATES_KEY, model, repr(seconds_per_job))

    async def publish(self, event: Event) -> None:
        await self._redis.publish(self._channel, encode_event(event))

    async def finish(self, job_id: str, picture: bytes, size: tuple[int, int] = (160, 120)) -> None:
        """The job done with one picture: the result stored under its key, then the event."""
        output = Output(0, 7, picture, width=size[0], height=size[1])
        await self.deliver(Result(job_id, Status.done, outputs=(output,), engine="played", seconds=1.0))

    async def deliver(self, result: Result) -> None:
        """The job's end: its result stored under its key, then the event that says so."""
        await self._redis.set(result_key(result.job_id), encode_result(result), ex=600)
        await self.publish(Event(result.job_id, result.status))
