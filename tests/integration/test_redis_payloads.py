"""Redis is not trusted, and it is not a landfill: the real service on ArqQueue, a real
`remixbot worker` process, a real Redis.

A pickle (or garbage) planted where the worker or the bot reads fails that one job with a message
the user sees — nothing is unpickled, the worker and the bot go on. Once the bot has stored a
result, the job leaves nothing in Redis; a result over the byte cap is never stored.
"""

from __future__ import annotations

import asyncio
import pickle
from dataclasses import replace

import pytest
import redis.asyncio

from adapters.cli import build_service, close_service
from bot.jobs import Event, Origin, Status
from bot.queue.arq_queue import UNREADABLE_RESULT
from bot.queue.wire import (
    RUN_JOB,
    WORKER_PREFIX,
    arq_job_key,
    encode_event,
    events_channel,
    redis_settings,
    result_key,
)
from engine.worker import UNREADABLE_JOB
from tests.bot.queue.test_wire import Booby
from tests.integration.harness import Events, start_worker, stop, wait_for_heartbeat

ALICE = Origin(platform="console", user_id="alice", chat_id="c1")


@pytest.fixture
def coffee(images_dir) -> bytes:
    return (images_dir / "coffee.png").read_bytes()


@pytest.fixture
async def client(redis_url):
    client = redis.asyncio.Redis.from_url(redis_url)
    yield client
    await client.aclose()


async def keys_of(client, job_id: str) -> list[bytes]:
    return sorted(await client.keys(f"*{job_id}*"))


async def test_a_planted_job_payload_fails_that_job_and_the_worker_goes_on(
    settings, redis_url, env, coffee, client, tmp_path
):
    trap = tmp_path / "unpickled"
    service = await build_service(replace(settings, redis_url=redis_url))  # no worker yet: jobs wait
    events = Events()
    service.listen("console", events)
    process = None
    try:
        planted = await service.submit(ALICE, "warm --seed 1", coffee)
        key = arq_job_key(planted.job.id)
        envelope = {"t": 1, "f": RUN_JOB, "a": [Booby(trap)], "k": {}, "et": 0}
        assert await client.set(key, pickle.dumps(envelope), xx=True, keepttl=True)

        process = start_worker(redis_url, env, "classic")
        wait_for_heartbeat(redis_url, process)
        refused = await events.done(planted.job.id, timeout=60)
        assert refused.status is Status.failed and refused.error == UNREADABLE_JOB
        assert not trap.exists(), "the worker unpickled the payload"

        served = await events.done((await service.submit(ALICE, "noir --seed 2", coffee)).job.id, timeout=60)
        assert served.status is Status.done and served.outputs
        assert process.poll() is None, "the worker is still up"
        assert await keys_of(client, served.id) == [], "a stored result leaves nothing in Redis"
        assert await keys_of(client, planted.job.id) == []
        assert not await client.keys("arq:*"), "arq kept nothing of its own"
    finally:
        await close_service(service)
        log = stop(process) if process is not None else ""
    assert f"refusing job {planted.job.id}: not msgpack" in log


async def test_a_planted_result_and_garbage_events_are_refused_by_the_bot(
    settings, redis_url, coffee, client, tmp_path
):
    trap = tmp_path / "unpickled"
    service = await build_service(replace(settings, redis_url=redis_url))  # no worker: we play it
    events = Events()
    service.listen("console", events)
    try:
        ticket = await service.submit(ALICE, "warm", coffee)
        job_id = ticket.job.id
        channel = events_channel(redis_settings(redis_url).database)
        for garbage in (pickle.dumps(Booby(trap)), b"\xff\x00", b'{"job_id": 5}', b"[]"):
            await client.publish(channel, garbage)
        await client.set(result_key(job_id), pickle.dumps({"job_id": job_id, "status": "done", "x": Booby(trap)}))
        await client.publish(channel, encode_event(Event(job_id, Status.done)))

        record = await events.done(job_id, timeout=30)
        assert record.status is Status.failed and record.error == UNREADABLE_RESULT
        assert not trap.exists(), "the bot unpickled something"
        assert await keys_of(client, job_id) == [], "the refused result was cleared too"

        await client.set(WORKER_PREFIX + "forged", pickle.dumps(Booby(trap)), ex=60)
        assert "no worker is serving" in (await service.availability())["classic"]  # and no crash
        assert not trap.exists()
        assert await service.user_settings(ALICE)  # the bot goes on
    finally:
        await close_service(service)


async def test_a_result_over_the_byte_cap_fails_its_job_and_is_never_stored(settings, redis_url, env, coffee, client):
    process = start_worker(redis_url, dict(env, REMIXBOT_MAX_RESULT_BYTES="4096"), "classic")
    service = await build_service(replace(settings, redis_url=redis_url))
    events = Events()
    service.listen("console", events)
    stored: list[bytes] = []
    try:
        wait_for_heartbeat(redis_url, process)
        ticket = await service.submit(ALICE, "warm --n 2", coffee)

        async def watch() -> None:  # every value the result key ever holds
            while True:
                value = await client.get(result_key(ticket.job.id))
                if value is not None:
                    stored.append(value)
                await asyncio.sleep(0.005)

        watcher = asyncio.create_task(watch())
        record = await events.done(ticket.job.id, timeout=60)
        watcher.cancel()
        assert record.status is Status.failed and not record.outputs
        assert "too large to send back" in record.error and "the limit is 4 KiB" in record.error
        assert all(len(value) < 4096 for value in stored), "only the failure was stored"
        assert process.poll() is None
    finally:
        await close_service(service)
        stop(process)
