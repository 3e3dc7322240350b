"""The arq side: ``remixbot worker`` takes jobs from Redis and hands them to the engine's thread.

The arq function only hands work over and awaits it. Progress and completion go out on the
events channel; the result waits under ``result_key`` (with a TTL) until the bot stores it, so a
worker on another machine needs no shared disk. A cancel message or key stops a running job at
its next step.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import socket
import threading
from typing import Any

from arq.connections import RedisSettings
from arq.worker import Worker, func

from bot.jobs import Event, Job, Status
from bot.queue import (
    CANCEL_CHANNEL,
    EVENTS_CHANNEL,
    WORKER_PREFIX,
    cancel_key,
    decode_result,
    encode_event,
    encode_result,
    queue_name,
    result_key,
)
from engine import registry
from engine.runner import Engine

log = logging.getLogger(__name__)


async def run_job(ctx: dict[str, Any], data: dict[str, Any]) -> str:
    job = Job.from_data(data)
    redis = ctx["redis"]
    engine: Engine = ctx["engine"]
    stored = await redis.get(result_key(job.id))
    if stored is not None:  # finished before (a retry after the worker died): report, don't run again
        result = decode_result(stored)
        await redis.publish(EVENTS_CHANNEL, encode_event(Event(job.id, result.status)))
        return result.status.value
    cancel = ctx["cancels"][job.id] = threading.Event()
    if await redis.exists(cancel_key(job.id)):
        cancel.set()
    await redis.publish(EVENTS_CHANNEL, encode_event(Event(job.id, Status.running)))
    pending: set[asyncio.Task] = set()

    def on_progress(step: int, total: int) -> None:
        event = Event(job.id, Status.running, step=step, total=total)
        task = asyncio.ensure_future(redis.publish(EVENTS_CHANNEL, encode_event(event)))
        pending.add(task)
        task.add_done_callback(pending.discard)

    try:
        result = await engine.run(job, on_progress, cancel)
    finally:
        ctx["cancels"].pop(job.id, None)
    await asyncio.gather(*pending, return_exceptions=True)
    await redis.set(result_key(job.id), encode_result(result), ex=ctx["result_ttl"])
    await redis.publish(EVENTS_CHANNEL, encode_event(Event(job.id, result.status)))
    log.info("job %s %s in %.2fs (%s)", job.id, result.status.value, result.seconds, result.engine)
    return result.status.value


async def listen_for_cancels(ctx: dict[str, Any]) -> None:
    pubsub = ctx["redis"].pubsub()
    await pubsub.subscribe(CANCEL_CHANNEL)
    try:
        while True:
            message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=1.0)
            if message is not None:
                job_id = message["data"].decode() if isinstance(message["data"], bytes) else message["data"]
                if job_id in ctx["cancels"]:
                    ctx["cancels"][job_id].set()
    finally:
        await pubsub.aclose()


async def beat(ctx: dict[str, Any], groups: list[str], every: float = 10.0) -> None:
    """Tell the bots this worker is alive: its groups, device and which models it can run."""
    engine: Engine = ctx["engine"]
    worker_id = f"{socket.gethostname()}-{os.getpid()}"
    served = [entry for entry in engine.models if entry.queue_group in groups]
    availability = await asyncio.to_thread(lambda: {e.name: registry.check(e) for e in served})
    key = WORKER_PREFIX + worker_id
    try:
        while True:
            state = {"id": worker_id, "groups": groups, "availability": availability,
                     "resident": engine.resident(), "running": sorted(ctx["cancels"])}
            await ctx["redis"].set(key, json.dumps(state), ex=int(every * 3))
            await asyncio.sleep(every)
    finally:
        await ctx["redis"].delete(key)


def build_workers(engine: Engine, redis_url: str, groups: list[str], *, job_timeout: int, result_ttl: int,
                  poll_delay: float = 0.02) -> list[Worker]:
    """One arq Worker per model group, sharing one engine (and so one thread per group)."""
    ctx: dict[str, Any] = {"engine": engine, "cancels": {}, "result_ttl": result_ttl}
    return [
        Worker(
            functions=[func(run_job, name="run_job", timeout=job_timeout)],
            queue_name=queue_name(group),
            redis_settings=RedisSettings.from_dsn(redis_url),
            ctx=ctx,
            max_jobs=1,
            poll_delay=poll_delay,
            keep_result=3600,
            handle_signals=False,
        )
        for group in groups
    ]


async def serve(workers: list[Worker], groups: list[str]) -> None:
    """Run the workers, the cancel listener and the heartbeat until cancelled."""
    tasks = [asyncio.create_task(worker.async_run()) for worker in workers]
    ctx = workers[0].ctx
    while "redis" not in ctx:  # arq connects inside async_run and sets ctx["redis"]
        if any(task.done() for task in tasks):
            await asyncio.gather(*tasks)  # raises the connection error
        await asyncio.sleep(0.01)
    tasks.append(asyncio.create_task(listen_for_cancels(ctx)))
    tasks.append(asyncio.create_task(beat(ctx, groups)))
    try:
        await asyncio.gather(*tasks)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for worker in workers:
            await worker.close()
