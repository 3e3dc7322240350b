"""A Redis restart mid-job, with AOF persistence (as docker-compose.yml runs it) and without: a real
redis-server of the test's own is killed under the real service (ArqQueue) and a real `remixbot
worker` process, then started again on the same port.

Every job ends delivered, or failed with a message; nothing is left counting against the user's cap;
the worker and the bot reconnect by themselves; a submission while Redis is down gets a friendly
refusal and is not counted; new jobs work as soon as Redis is back.

The ``slow`` noop model takes a known time (engine/kinds/noop.py), so a job can be caught mid-way;
a short lease makes the bot's wait after a reconnect short (it waits one lease renewal, lease/3).
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import replace

import pytest
import redis.asyncio
from PIL import Image

from adapters.cli import build_service, close_service
from bot import images
from bot.jobs import Origin, Status
from bot.queue.arq_queue import FULL, UNREACHABLE
from bot.service import Refusal
from tests.integration.harness import Events, RedisServer, noop_models, start_worker, stop, wait_for_heartbeat

ALICE = Origin(platform="console", user_id="alice", chat_id="c1")
BOB = Origin(platform="console", user_id="bob", chat_id="c2")
TINY = images.encode_png(Image.new("RGB", (64, 64), (40, 90, 160)))
LEASE = 3  # seconds; the bot waits lease/3 + 1 s after a reconnect before it re-queues lost jobs
CAP = 3  # Alice fills her cap: a job stranded as queued/running would lock her out


@pytest.mark.parametrize("aof", [True, False], ids=["aof", "no-persistence"])
async def test_every_job_ends_and_new_jobs_work_after_redis_restarts_mid_job(aof, tmp_path, settings, env, capsys):
    server = RedisServer(tmp_path / "redis", aof=aof)
    server.start()
    url = server.url()
    models_path = noop_models(tmp_path, slow={"seconds": 3.0, "steps": 30}, quick={"seconds": 0.1, "steps": 2})
    worker_env = dict(
        env,
        REMIXBOT_MODELS=str(models_path),
        REMIXBOT_DEVICE="cpu",
        REMIXBOT_BATCH_SIZE="1",
        REMIXBOT_JOB_LEASE=str(LEASE),
    )
    limits = replace(settings.limits, max_queued_per_user=CAP, rate_per_minute=1000)
    bot_settings = replace(
        settings, redis_url=url, models_path=models_path, device="cpu", batch_size=1, job_lease=LEASE, limits=limits
    )
    process = start_worker(url, worker_env, "classic")
    service = None
    try:
        wait_for_heartbeat(url, process)
        service = await build_service(bot_settings)
        events = Events()
        service.listen("console", events)
        jobs = [(await service.submit(ALICE, "--model slow", TINY)).job.id for _ in range(CAP)]
        await events.until(lambda: any(e.status is Status.running and e.step >= 3 for e in events.of(jobs[0])))

        server.kill()  # mid-job: one running, two waiting
        with pytest.raises(Refusal) as refused:
            await service.submit(BOB, "--model quick", TINY)
        assert str(refused.value) == UNREACHABLE
        bob = await service.history.user(BOB)
        assert await service.history.count_jobs(bob.id, Status.queued, Status.running) == 0
        await asyncio.sleep(1.0)  # Redis stays down a while

        server.start()
        back = time.monotonic()
        fresh = await service.submit(BOB, "--model quick", TINY)  # at once, no waiting for the recovery
        records = [await events.done(job_id, timeout=120) for job_id in jobs]
        recovered_in = time.monotonic() - back
        for record in records:
            delivered = record.status is Status.done and len(record.outputs) == 1
            assert delivered or (record.status is Status.failed and record.error), (record.status, record.error)
        assert (await events.done(fresh.job.id, timeout=60)).status is Status.done
        assert await service.history.unfinished() == []

        again = await service.submit(ALICE, "--model quick", TINY)  # her cap is free again
        assert (await events.done(again.job.id, timeout=60)).status is Status.done
        assert len([e for job_id in jobs for e in events.of(job_id) if e.status.finished]) == CAP  # each once
        assert process.poll() is None, "the worker rode out the restart"

        client = redis.asyncio.Redis.from_url(url)
        try:
            for job_id in [*jobs, fresh.job.id, again.job.id]:
                assert await client.keys(f"*{job_id}*") == [], "a delivered job leaves nothing in Redis"
        finally:
            await client.aclose()
        with capsys.disabled():
            mode = "AOF" if aof else "no persistence"
            print(f"\n[{mode}] {CAP} jobs (1 running, 2 waiting) all ended {recovered_in:.1f} s after Redis came back")
    finally:
        if service is not None:
            await close_service(service)
        log = stop(process)
        server.stop()
    assert "lost Redis" in log and "Redis is back" in log


async def test_a_full_redis_refuses_new_jobs_with_a_message_and_loses_none(tmp_path, settings):
    """maxmemory with noeviction (docker-compose.yml): when Redis is full, a new job is refused (and not
    counted); the jobs already queued stay; once there is room again, jobs are taken."""
    server = RedisServer(
        tmp_path / "redis", aof=False, extra=("--maxmemory", "64mb", "--maxmemory-policy", "noeviction")
    )
    server.start()
    service = await build_service(replace(settings, redis_url=server.url()))
    client = redis.asyncio.Redis.from_url(server.url())
    try:
        queued = await service.submit(ALICE, "warm", TINY)
        await client.config_set("maxmemory", "1mb")  # now below what it holds: full
        with pytest.raises(redis.exceptions.OutOfMemoryError):
            await client.set("one more", b"x")
        with pytest.raises(Refusal) as refused:
            await service.submit(BOB, "warm", TINY)
        assert str(refused.value) == FULL
        bob = await service.history.user(BOB)
        assert await service.history.count_jobs(bob.id, Status.queued, Status.running) == 0
        assert await service.queue.position(queued.job.id) == 1, "the queued job is still there"

        await client.config_set("maxmemory", "64mb")  # room again
        taken = await service.submit(BOB, "warm", TINY)
        order = {await service.queue.position(job_id) for job_id in (queued.job.id, taken.job.id)}
        assert order == {1, 2}, "both wait in the queue, in fair order"
    finally:
        await client.aclose()
        await close_service(service)
        server.stop()
