"""Redis mode: the real service on ArqQueue, a real `remixbot worker` process, real Redis."""

from dataclasses import replace

import pytest

from adapters.cli import build_service, close_service
from bot.jobs import Origin, Status
from tests.integration.harness import Events, start_worker, stop, wait_for_worker

ALICE = Origin(platform="console", user_id="alice", chat_id="c1")


@pytest.fixture
def worker(redis_url, env):
    process = start_worker(redis_url, env)
    wait_for_worker(redis_url, process)
    yield process
    stop(process)


@pytest.fixture
def coffee(images_dir) -> bytes:
    return (images_dir / "coffee.png").read_bytes()


async def run_one(settings, text: str, image: bytes):
    service = await build_service(settings)
    try:
        events = Events()
        service.listen("console", events)
        ticket = await service.submit(ALICE, text, image)
        record = await events.done(ticket.job.id)
        return record, events, [out.path.read_bytes() for out in record.outputs]
    finally:
        await close_service(service)


async def test_arq_and_embedded_give_byte_identical_outputs(settings, redis_url, worker, coffee, tmp_path):
    text = "watercolor warm --strength 0.65 --seed 1234 --n 2"
    queued, events, over_redis = await run_one(replace(settings, redis_url=redis_url), text, coffee)
    embedded, _, in_process = await run_one(replace(settings, data_dir=tmp_path / "embedded"), text, coffee)
    assert queued.status is embedded.status is Status.done
    assert len(over_redis) == 2 and over_redis == in_process
    progress = [e for e in events.of(queued.id) if e.status is Status.running and e.total]
    assert progress and progress[-1].step == progress[-1].total  # progress crossed Redis


async def test_worker_heartbeat_tells_the_bot_what_can_run(settings, redis_url, worker):
    service = await build_service(replace(settings, redis_url=redis_url))
    try:
        availability = await service.availability()
        assert availability["classic"] is None
        assert availability["fast"] and "needs" in availability["fast"]
    finally:
        await close_service(service)


async def test_a_job_for_a_group_no_worker_serves_waits_and_can_be_cancelled(settings, redis_url, env, coffee):
    process = start_worker(redis_url, env, "classic")
    wait_for_worker(redis_url, process)
    service = await build_service(replace(settings, redis_url=redis_url))
    try:
        events = Events()
        service.listen("console", events)
        waiting = await service.submit(ALICE, "a harbor --model fast", coffee)  # the gpu group: no worker
        assert waiting.position == 1
        availability = await service.availability()
        assert "no worker is serving" in availability["fast"]
        assert await service.cancel(ALICE, waiting.job.id) == [waiting.job.id]
        assert (await events.done(waiting.job.id)).status is Status.cancelled
        served = await service.submit(ALICE, "warm", coffee)
        assert (await events.done(served.job.id)).status is Status.done
    finally:
        await close_service(service)
        stop(process)


async def test_a_result_finished_while_the_bot_was_down_is_delivered_on_start(settings, redis_url, env, coffee):
    redis_settings = replace(settings, redis_url=redis_url)
    service = await build_service(redis_settings)  # no worker yet: the job waits in Redis
    ticket = await service.submit(ALICE, "noir --seed 3", coffee)
    await close_service(service)

    process = start_worker(redis_url, env)
    try:
        wait_for_worker(redis_url, process)
        import redis.asyncio as aioredis

        client = aioredis.Redis.from_url(redis_url)
        for _ in range(600):  # the worker finishes the job while no bot listens
            if await client.exists(f"remixbot:result:{ticket.job.id}"):
                break
            await __import__("asyncio").sleep(0.05)
        await client.aclose()

        service = await build_service(redis_settings)
        events = Events()
        service.listen("console", events)
        try:
            record = await events.done(ticket.job.id, timeout=30)
            assert record.status is Status.done and record.outputs
        finally:
            await close_service(service)
    finally:
        stop(process)
