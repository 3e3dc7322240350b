"""The arq side: ``remixbot worker`` takes jobs from Redis and hands them to the engine's thread.

The arq function only hands work over and awaits it. Progress and completion go out on the
events channel; the result waits under ``result_key`` (with a TTL) until the bot stores it, so a
worker on another machine needs no shared disk. A cancel message or key stops a running job at
its next step.

Any number of workers, on any machines, may serve a group: arq lets one of them claim a job (its
in-progress key). arq looks at a queue every poll delay; a worker also looks at once when a bot says
a job was queued in its group and when one of its own jobs ends, so a job rarely waits for a poll.
The claim is a lease: a short TTL that the worker renews while the job runs, so when a worker dies
(killed, machine gone) its job runs again on another worker within ``lease`` seconds; a stored
result is never produced twice (a re-run of a job that finished only re-announces it). A job that
kills its worker ``MAX_TRIES`` times fails with a message instead of taking down every worker.

Each model may set its own ``timeout`` (seconds, in models.toml) over ``REMIXBOT_JOB_TIMEOUT``;
a job past it is cancelled at its next step and fails with a message saying so. The heartbeat
(``beat``) tells bots the worker's groups, device, memory and which models it can run.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import resource
import socket
import sys
import threading
import time
from collections.abc import Coroutine
from typing import Any

from arq.connections import ArqRedis, RedisSettings
from arq.typing import StartupShutdown
from arq.worker import Worker, func

from bot import metrics
from bot.jobs import Event, Job, Result, Status
from bot.logs import bind_job, job_context
from bot.models import Models
from bot.queue import (
    IN_PROGRESS_PREFIX,
    WORKER_PREFIX,
    ProgressGate,
    cancel_channel,
    cancel_key,
    decode_result,
    encode_event,
    encode_result,
    events_channel,
    observe,
    queue_name,
    queued_channel,
    record_rate,
    resident,
    result_key,
)
from engine import registry
from engine.runner import Engine

log = logging.getLogger(__name__)

MAX_TRIES = 3  # a job that was running when its worker died this many times is failed, not re-run
STOP_GRACE = 30.0  # seconds a job past its timeout gets to reach its next step and stop


def timeout_for(models: Models, model: str, default: float) -> float:
    """A job's time limit: its model's ``timeout`` from models.toml, else the worker's default."""
    entry = models.entries.get(model)
    value = entry.options.get("timeout") if entry is not None else None
    return float(value) if value else float(default)


async def run_job(ctx: dict[str, Any], data: dict[str, Any]) -> str:
    job = Job.from_data(data)
    with job_context(job.id):
        return await _run_job(ctx, job)


async def tag_job_logs(ctx: dict[str, Any]) -> None:
    """arq's on_job_start: its own lines about the job ("→ id:run_job", "← …") carry the job id too."""
    bind_job(ctx["job_id"])


class HideFairShareDelay(logging.Filter):
    """arq notes "delayed=…" when a job starts long after its score; fair-share scores (bot.fairness)
    lie far in the past by design, so that note would only mislead."""

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args
        if isinstance(args, tuple) and args and isinstance(args[-1], str) and " delayed=" in args[-1]:
            record.args = (*args[:-1], args[-1].split(" delayed=")[0])
        return True


HIDE_FAIR_SHARE_DELAY = HideFairShareDelay()


async def _run_job(ctx: dict[str, Any], job: Job) -> str:
    redis = ctx["redis"]
    engine: Engine = ctx["engine"]
    async with redis.pipeline(transaction=False) as pipe:  # one round trip
        pipe.get(result_key(job.id))
        pipe.exists(cancel_key(job.id))
        stored, cancelled = await pipe.execute()
    if stored is not None:  # finished before (a retry after the worker died): report, don't run again
        result = decode_result(stored)
        await redis.publish(ctx["events_channel"], encode_event(Event(job.id, result.status)))
        return result.status.value
    if ctx.get("job_try", 1) > MAX_TRIES:
        log.error("job %s was running when its worker died %d times; failing it", job.id, MAX_TRIES)
        error = "This job stopped the worker more than once, so it was dropped. Try a smaller --size or --n."
        return await _deliver(ctx, job, Result(job.id, Status.failed, error=error))
    cancel = ctx["cancels"][job.id] = threading.Event()
    if cancelled:
        cancel.set()
    lease = asyncio.create_task(_hold_lease(redis, job.id, ctx["lease"]))
    started = time.time()
    metrics.job_started(job.group, started - job.created_at)
    await redis.publish(ctx["events_channel"], encode_event(Event(job.id, Status.running)))
    pending: set[asyncio.Task[Any]] = set()
    gate = ProgressGate()

    def on_progress(step: int, total: int) -> None:
        if not gate.passes(step, total):
            return
        event = Event(job.id, Status.running, step=step, total=total)
        task = asyncio.ensure_future(redis.publish(ctx["events_channel"], encode_event(event)))
        pending.add(task)
        task.add_done_callback(pending.discard)

    loaded = resident(engine)
    limit = timeout_for(engine.models, job.request.model, ctx["job_timeout"])
    running = asyncio.ensure_future(engine.run(job, on_progress, cancel))
    try:
        result = await asyncio.wait_for(asyncio.shield(running), limit)
    except TimeoutError:
        cancel.set()  # the engine stops at its next step
        log.warning("job %s ran past its %gs limit; stopping it", job.id, limit)
        try:
            await asyncio.wait_for(asyncio.shield(running), STOP_GRACE)
        except TimeoutError:
            log.error("job %s did not stop within %gs of its limit", job.id, STOP_GRACE)
        error = f"This took longer than the {limit:g} s limit for {job.request.model} and was stopped."
        result = Result(job.id, Status.failed, error=error, seconds=round(time.time() - started, 3))
    except asyncio.CancelledError:  # the worker is shutting down: stop the engine; arq re-queues the job
        cancel.set()
        raise
    finally:
        ctx["cancels"].pop(job.id, None)
        lease.cancel()
    await asyncio.gather(*pending, return_exceptions=True)  # progress goes out before the result
    observe(job, result, time.time() - started, loaded, engine)
    log.info("job %s %s in %.2fs (%s)", job.id, result.status.value, result.seconds, result.engine)
    status = await _deliver(ctx, job, result)
    if result.status is Status.done:  # after delivery: the user doesn't wait for the bookkeeping
        await record_rate(redis, job.request.model, result.seconds)
    return status


async def _deliver(ctx: dict[str, Any], job: Job, result: Result) -> str:
    """Store the result for the bot and tell it (one round trip)."""
    async with ctx["redis"].pipeline(transaction=False) as pipe:
        pipe.set(result_key(job.id), encode_result(result), ex=ctx["result_ttl"])
        pipe.publish(ctx["events_channel"], encode_event(Event(job.id, result.status)))
        await pipe.execute()
    return result.status.value


async def _hold_lease(redis: ArqRedis, job_id: str, lease: float) -> None:
    """Renew arq's claim on a running job, so it lapses ``lease`` seconds after this worker dies."""
    while True:
        await asyncio.sleep(lease / 3)
        try:
            await redis.pexpire(IN_PROGRESS_PREFIX + job_id, int(lease * 1000))
        except Exception:  # a blip in Redis: try again at the next beat
            log.warning("renewing the claim on job %s failed", job_id, exc_info=True)


async def listen(ctx: dict[str, Any], workers: list[Worker]) -> None:
    """Cancel requests (stop a running job at its next step) and news of queued jobs (take them now)."""
    by_queue = {worker.queue_name: worker for worker in workers}
    pubsub = ctx["redis"].pubsub()
    await pubsub.subscribe(ctx["cancel_channel"], ctx["queued_channel"])
    try:
        while True:
            message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=1.0)
            if message is None:
                continue
            channel, data = (
                part.decode() if isinstance(part, bytes) else part for part in (message["channel"], message["data"])
            )
            if channel == ctx["cancel_channel"] and data in ctx["cancels"]:
                ctx["cancels"][data].set()
            elif channel == ctx["queued_channel"] and queue_name(data) in by_queue:
                _soon(take_waiting_jobs(by_queue[queue_name(data)]))
    finally:
        await pubsub.aclose()


async def take_waiting_jobs(worker: Worker) -> None:
    """Start waiting jobs now, if the worker has room, rather than at its next poll.

    arq only looks at its queue every ``poll_delay``; this is the same look (arq's ``start_jobs``
    claims each job atomically, so it never starts a job twice), made when a job is queued or ends.
    """
    if worker.pool is None or not worker.allow_pick_jobs or worker.job_counter >= worker.max_jobs:
        return
    now = int(time.time() * 1000)
    job_ids = await worker.pool.zrangebyscore(
        worker.queue_name, min=float("-inf"), max=now, start=0, num=worker.queue_read_limit
    )
    await worker.start_jobs(job_ids)


def _taking_next_when_done(worker: Worker) -> StartupShutdown:
    async def after_job_end(ctx: dict[Any, Any]) -> None:
        await take_next_when_done(worker, ctx)

    return after_job_end


async def take_next_when_done(worker: Worker, ctx: dict[str, Any]) -> None:
    """arq's after_job_end: once this job has given back its slot, start the next waiting one."""
    task = asyncio.current_task()
    if task is not None:  # arq frees the slot in a callback of this task: look after it has
        task.add_done_callback(lambda _: _soon(take_waiting_jobs(worker)))


_background: set[asyncio.Task[None]] = set()


def _soon(work: Coroutine[Any, Any, None]) -> None:
    """Run ``work`` in the background, keeping it referenced and its failures logged."""
    task = asyncio.ensure_future(work)
    _background.add(task)

    def done(finished: asyncio.Task[None]) -> None:
        _background.discard(finished)
        if not finished.cancelled() and finished.exception() is not None:
            log.warning("taking waiting jobs failed", exc_info=finished.exception())

    task.add_done_callback(done)


def gpu_memory() -> dict[str, Any] | None:
    """The current CUDA device's memory, when the engine has already loaded torch and used CUDA."""
    torch = sys.modules.get("torch")  # never import torch just to look
    if torch is None:
        return None
    try:
        if not (torch.cuda.is_available() and torch.cuda.is_initialized()):
            return None
        index = torch.cuda.current_device()
        free, total = torch.cuda.mem_get_info(index)
        return {
            "device": f"cuda:{index}",
            "name": torch.cuda.get_device_name(index),
            "allocated": torch.cuda.memory_allocated(index),
            "reserved": torch.cuda.memory_reserved(index),
            "free": free,
            "total": total,
        }
    except Exception:  # noqa: BLE001 - a report, never a reason to stop
        log.debug("reading GPU memory failed", exc_info=True)
        return None


def rss_bytes() -> int:
    """This process's resident memory (the peak where /proc is missing)."""
    try:
        with open("/proc/self/statm") as statm:
            return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except OSError:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return peak if sys.platform == "darwin" else peak * 1024


async def beat(ctx: dict[str, Any], groups: list[str], every: float = 10.0) -> None:
    """Tell the bots this worker is alive: its groups, device, memory and which models it can run."""
    engine: Engine = ctx["engine"]
    worker_id = f"{socket.gethostname()}-{os.getpid()}"
    served = [entry for entry in engine.models if entry.queue_group in groups]
    availability = await asyncio.to_thread(lambda: {e.name: registry.check(e) for e in served})
    key = WORKER_PREFIX + worker_id
    try:
        while True:
            gpu = gpu_memory()
            if gpu is not None:
                amounts = {kind: gpu[kind] for kind in ("allocated", "reserved", "free", "total")}
                metrics.gpu_memory(gpu["device"], amounts)
            state = {
                "id": worker_id,
                "host": socket.gethostname(),
                "pid": os.getpid(),
                "groups": groups,
                "device": ctx.get("device") or "auto",
                "gpu": gpu,
                "rss_bytes": rss_bytes(),
                "availability": availability,
                "resident": sorted(resident(engine)),
                "running": sorted(ctx["cancels"]),
                "at": time.time(),
            }
            await ctx["redis"].set(key, json.dumps(state), ex=int(every * 3))
            await asyncio.sleep(every)
    finally:
        await ctx["redis"].delete(key)


def build_workers(
    engine: Engine,
    redis_url: str,
    groups: list[str],
    *,
    job_timeout: int,
    result_ttl: int,
    poll_delay: float = 0.02,
    lease: float = 30.0,
    device: str = "",
) -> list[Worker]:
    """One arq Worker per model group, sharing one engine (and so one thread per group)."""
    database = RedisSettings.from_dsn(redis_url).database
    ctx: dict[str, Any] = {
        "engine": engine,
        "cancels": {},
        "result_ttl": result_ttl,
        "job_timeout": job_timeout,
        "lease": lease,
        "device": device,
        "events_channel": events_channel(database),
        "cancel_channel": cancel_channel(database),
        "queued_channel": queued_channel(database),
    }
    longest = max(
        [timeout_for(engine.models, name, job_timeout) for name in engine.models.names()] + [float(job_timeout)]
    )
    logging.getLogger("arq.worker").addFilter(HIDE_FAIR_SHARE_DELAY)  # once, however many calls
    workers = []
    for group in groups:
        worker = Worker(
            # arq's own limit is a backstop: run_job enforces each model's timeout and reports it
            functions=[func(run_job, name="run_job", timeout=longest + 2 * STOP_GRACE, max_tries=MAX_TRIES + 1)],
            queue_name=queue_name(group),
            redis_settings=RedisSettings.from_dsn(redis_url),
            ctx=ctx,
            on_job_start=tag_job_logs,
            max_jobs=engine.concurrency(group),  # several jobs reach the engine's batcher
            poll_delay=poll_delay,
            keep_result=3600,
            handle_signals=False,
        )
        worker.in_progress_timeout_s = lease  # arq claims for the job's whole timeout; we renew a short lease
        worker.after_job_end = _taking_next_when_done(worker)
        workers.append(worker)
    return workers


async def serve(workers: list[Worker], groups: list[str]) -> None:
    """Run the workers, their listener and the heartbeat until cancelled."""
    tasks = [asyncio.create_task(worker.async_run()) for worker in workers]
    ctx = workers[0].ctx
    while "redis" not in ctx:  # arq connects inside async_run and sets ctx["redis"]
        if any(task.done() for task in tasks):
            await asyncio.gather(*tasks)  # raises the connection error
        await asyncio.sleep(0.01)
    tasks.append(asyncio.create_task(listen(ctx, workers)))
    tasks.append(asyncio.create_task(beat(ctx, groups)))
    try:
        await asyncio.gather(*tasks)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for worker in workers:
            await worker.close()
