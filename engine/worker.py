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

Nothing the worker reads from Redis can run code (``bot.queue.wire``): a job payload that isn't one
of ours fails that job with a message. A result over ``max_result_bytes`` is not stored: the job
fails saying so. arq keeps no results of its own (``keep_result=0``); the bot deletes ours once it
has stored them.

Redis may restart under a worker: the arq loops, the listener and the heartbeat reconnect with
backoff, a finished job's result waits (``DELIVER_PATIENCE``) until Redis takes it, and the lease is
renewed with SET, so a running job's claim comes back even when Redis lost everything.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import logging
import os
import resource
import socket
import sys
import threading
import time
from collections.abc import Awaitable
from typing import Any

from arq.worker import Worker, func
from redis.asyncio import Redis
from redis.exceptions import AuthenticationError, OutOfMemoryError

from bot import metrics
from bot.jobs import Event, Job, Result, Status
from bot.logs import bind_job, job_context
from bot.models import Models
from bot.queue.pacing import ProgressGate
from bot.queue.port import observe, resident
from bot.queue.reconnect import REDIS_DOWN, Backoff, patiently, subscription
from bot.queue.wire import (
    RUN_JOB,
    WORKER_PREFIX,
    Unreadable,
    cancel_channel,
    cancel_key,
    decode_job,
    encode_event,
    encode_result,
    events_channel,
    in_progress_key,
    pack_arq,
    queue_name,
    queued_channel,
    read_result,
    record_rate,
    redis_settings,
    result_key,
    unpack_arq,
)
from bot.settings import MAX_RESULT_BYTES
from engine import registry
from engine.runner import Engine

log = logging.getLogger(__name__)

MAX_TRIES = 3  # a job that was running when its worker died this many times is failed, not re-run
STOP_GRACE = 30.0  # seconds a job past its timeout gets to reach its next step and stop
DELIVER_PATIENCE = 300.0  # seconds a finished job's result waits for an unreachable Redis
UNREADABLE_JOB = "This job's data couldn't be read, so it was dropped. Please try again."


def timeout_for(models: Models, model: str, default: float) -> float:
    """A job's time limit: its model's ``timeout`` from models.toml, else the worker's default."""
    entry = models.entries.get(model)
    value = entry.options.get("timeout") if entry is not None else None
    return float(value) if value else float(default)


async def run_job(ctx: dict[str, Any], data: object = None, *, unreadable: str = "") -> str:
    """arq's function: ``data`` is the job (``Job.to_data``); ``unreadable`` says why a payload that
    isn't one of ours (``wire.unpack_arq``) was refused. Either way the bot hears how the job ended."""
    job_id = ctx["job_id"]
    with job_context(job_id):
        try:
            if unreadable:
                raise Unreadable(unreadable)
            job = decode_job(data)
            if job.id != job_id:
                raise Unreadable(f"the payload is job {job.id!r:.20}'s")
        except Unreadable as error:
            log.error("refusing job %s: %s", job_id, error)
            return await _deliver(ctx, job_id, Result(job_id, Status.failed, error=UNREADABLE_JOB))
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
    redis: Redis = ctx["redis"]
    engine: Engine = ctx["engine"]

    async def look() -> tuple[Result | None, bool]:
        cancelled = bool(await redis.exists(cancel_key(job.id)))
        try:
            return await read_result(redis, job.id, ctx["max_result_bytes"]), cancelled
        except Unreadable as error:  # not ours: run the job, and overwrite it with the real result
            log.error("the stored result of job %s is unreadable (%s); running the job", job.id, error)
            return None, cancelled

    stored, cancelled = await patiently(f"looking up job {job.id}", look, 60)
    if stored is not None:  # finished before (a retry after the worker died): report, don't run again
        await redis.publish(ctx["events_channel"], encode_event(Event(job.id, stored.status)))
        return stored.status.value
    if ctx.get("job_try", 1) > MAX_TRIES:
        log.error("job %s was running when its worker died %d times; failing it", job.id, MAX_TRIES)
        dropped = "This job stopped the worker more than once, so it was dropped. Try a smaller --size or --n."
        return await _deliver(ctx, job.id, Result(job.id, Status.failed, error=dropped))
    cancel = ctx["cancels"][job.id] = threading.Event()
    if cancelled:
        cancel.set()
    lease = asyncio.create_task(_hold_lease(redis, job.id, ctx["lease"]))
    started = time.time()
    metrics.job_started(job.group, started - job.created_at)
    try:
        await redis.publish(ctx["events_channel"], encode_event(Event(job.id, Status.running)))
    except REDIS_DOWN:  # news, not state: the bot checks its jobs when it has Redis back
        log.warning("job %s started, but Redis did not hear it", job.id)
    pending: set[asyncio.Future[Any]] = set()
    gate = ProgressGate()

    def on_progress(step: int, total: int, preview: bytes = b"") -> None:
        if not preview and not gate.passes(step, total):  # a preview is rare (engine-throttled): never dropped
            return
        event = Event(job.id, Status.running, step=step, total=total, preview=preview)
        task = asyncio.ensure_future(redis.publish(ctx["events_channel"], encode_event(event)))
        pending.add(task)
        task.add_done_callback(published)

    def published(task: asyncio.Future[Any]) -> None:
        pending.discard(task)
        if not task.cancelled() and task.exception() is not None:  # a progress update lost to a Redis blip
            log.debug("a progress update of job %s was lost: %r", job.id, task.exception())

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
        late = f"This took longer than the {limit:g} s limit for {job.request.model} and was stopped."
        result = Result(job.id, Status.failed, error=late, seconds=round(time.time() - started, 3))
    except asyncio.CancelledError:  # the worker is shutting down: stop the engine; arq re-queues the job
        cancel.set()
        raise
    finally:
        ctx["cancels"].pop(job.id, None)
        lease.cancel()
    await asyncio.gather(*pending, return_exceptions=True)  # progress goes out before the result
    observe(job, result, time.time() - started, loaded, engine)
    log.info("job %s %s in %.2fs (%s)", job.id, result.status.value, result.seconds, result.engine)
    status = await _deliver(ctx, job.id, result)
    if result.status is Status.done:  # after delivery: the user doesn't wait for the bookkeeping
        try:
            await record_rate(redis, job.request.model, result.seconds)
        except REDIS_DOWN:
            log.warning("recording the run time of job %s failed: Redis is unreachable", job.id)
    return status


async def _deliver(ctx: dict[str, Any], job_id: str, result: Result) -> str:
    """Store the result for the bot and tell it (one round trip), waiting out a Redis restart.

    A result over the size cap is not stored: the job fails saying so. When Redis is full (maxmemory,
    noeviction) the failure travels in the event alone (a publish needs no memory)."""
    redis: Redis = ctx["redis"]
    payload, cap = encode_result(result), ctx["max_result_bytes"]
    if len(payload) > cap:
        log.error("job %s made %d bytes of results, over the %d-byte cap", job_id, len(payload), cap)
        result = Result(job_id, Status.failed, error=too_large(len(payload), cap), engine=result.engine)
        payload = encode_result(result)

    async def store() -> None:
        async with redis.pipeline(transaction=False) as pipe:
            pipe.set(result_key(job_id), payload, ex=ctx["result_ttl"])
            pipe.publish(ctx["events_channel"], encode_event(Event(job_id, result.status)))
            await pipe.execute()

    try:
        await patiently(f"delivering job {job_id}", store, DELIVER_PATIENCE)
    except OutOfMemoryError:
        log.error("Redis is full (maxmemory): job %s fails instead of storing its result", job_id)
        error = "The job queue ran out of memory, so this result couldn't be kept. Please try again later."
        failed = Result(job_id, Status.failed, error=error, engine=result.engine)
        await redis.publish(ctx["events_channel"], encode_event(Event(job_id, failed.status, result=failed)))
        return failed.status.value
    return result.status.value


def too_large(size: int, cap: int) -> str:
    return (
        f"The result was too large to send back ({_amount(size)}; the limit is {_amount(cap)})."
        " Try a smaller --size or fewer images (--n)."
    )


def _amount(size: int) -> str:
    """Bytes for people: 812 bytes, 4 KiB, 70.3 MiB."""
    for unit, scale in (("GiB", 1024**3), ("MiB", 1024**2), ("KiB", 1024)):
        if size >= scale:
            return f"{size / scale:.1f}".removesuffix(".0") + f" {unit}"
    return f"{size} bytes"


async def _hold_lease(redis: Redis, job_id: str, lease: float) -> None:
    """Renew arq's claim on a running job, so it lapses ``lease`` seconds after this worker dies.

    SET, not PEXPIRE: after a Redis restart that lost the claim, the next renewal puts it back, so the
    bot (which waits one renewal before it re-queues jobs Redis lost) sees the job is running."""
    while True:
        await asyncio.sleep(lease / 3)
        try:
            await redis.set(in_progress_key(job_id), b"1", px=int(lease * 1000))
        except REDIS_DOWN as error:  # a blip in Redis: try again at the next beat
            log.warning("renewing the claim on job %s failed (%s)", job_id, type(error).__name__)


async def listen(ctx: dict[str, Any], workers: list[Worker]) -> None:
    """Cancel requests (stop a running job at its next step) and news of queued jobs (take them now).

    A lost connection is retried with backoff; redis-py subscribes again when it reconnects."""
    by_queue = {worker.queue_name: worker for worker in workers}
    pubsub = ctx["redis"].pubsub()
    await pubsub.subscribe(ctx["cancel_channel"], ctx["queued_channel"])

    def back() -> None:
        log.info("Redis is back")
        ctx["beat_now"].set()
        for worker in workers:  # jobs may have waited for the outage to end
            _soon(take_waiting_jobs(worker))

    try:
        async for message in subscription(pubsub, back):
            channel, data = (
                part.decode(errors="replace") if isinstance(part, bytes) else str(part)
                for part in (message["channel"], message["data"])
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


async def take_next_when_done(worker: Worker, ctx: dict[str, Any]) -> None:
    """arq's after_job_end: once this job has given back its slot, start the next waiting one."""
    task = asyncio.current_task()
    if task is not None:  # arq frees the slot in a callback of this task: look after it has
        task.add_done_callback(lambda _: _soon(take_waiting_jobs(worker)))


_background: set[asyncio.Future[None]] = set()


def _soon(work: Awaitable[None]) -> None:
    """Run ``work`` in the background, keeping it referenced and its failures logged."""
    task = asyncio.ensure_future(work)
    _background.add(task)

    def done(finished: asyncio.Future[None]) -> None:
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
    """Tell the bots this worker is alive: its groups, device, memory and which models it can run.

    Every ``every`` seconds, and at once when ``ctx["beat_now"]`` is set (Redis came back: a restart
    without persistence forgot every worker, and bots only send jobs to groups someone serves)."""
    engine: Engine = ctx["engine"]
    now: asyncio.Event = ctx["beat_now"]
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
            try:
                await ctx["redis"].set(key, json.dumps(state), ex=int(every * 3))
            except REDIS_DOWN:  # the next beat tries again; bots see the worker once Redis is back
                log.warning("the heartbeat could not reach Redis")
            now.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(now.wait(), every)
    finally:
        try:
            await ctx["redis"].delete(key)
        except REDIS_DOWN:
            pass  # it lapses by itself


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
    max_result_bytes: int = MAX_RESULT_BYTES,
) -> list[Worker]:
    """One arq Worker per model group, sharing one engine (and so one thread per group)."""
    settings = redis_settings(redis_url)
    ctx: dict[str, Any] = {
        "engine": engine,
        "cancels": {},
        "result_ttl": result_ttl,
        "max_result_bytes": max_result_bytes,
        "beat_now": asyncio.Event(),
        "job_timeout": job_timeout,
        "lease": lease,
        "device": device,
        "events_channel": events_channel(settings.database),
        "cancel_channel": cancel_channel(settings.database),
        "queued_channel": queued_channel(settings.database),
    }
    longest = max(
        [timeout_for(engine.models, name, job_timeout) for name in engine.models.names()] + [float(job_timeout)]
    )
    logging.getLogger("arq.worker").addFilter(HIDE_FAIR_SHARE_DELAY)  # once, however many calls
    workers = []
    for group in groups:
        worker = Worker(
            # arq's own limit is a backstop: run_job enforces each model's timeout and reports it
            functions=[func(run_job, name=RUN_JOB, timeout=longest + 2 * STOP_GRACE, max_tries=MAX_TRIES + 1)],
            queue_name=queue_name(group),
            redis_settings=settings,
            ctx=ctx,
            on_job_start=tag_job_logs,
            max_jobs=engine.concurrency(group),  # several jobs reach the engine's batcher
            poll_delay=poll_delay,
            keep_result=0,  # the result travels under result_key; arq's copy would repeat the job's images
            job_serializer=pack_arq,
            job_deserializer=unpack_arq,
            handle_signals=False,
        )
        worker.in_progress_timeout_s = lease  # arq claims for the job's whole timeout; we renew a short lease
        worker.after_job_end = functools.partial(take_next_when_done, worker)  # type: ignore[assignment]
        workers.append(worker)
    return workers


async def keep_running(worker: Worker) -> None:
    """arq's loop for one queue, started again with backoff whenever Redis goes away (arq's loop ends
    on the first failed poll; the jobs it started run on and deliver once Redis is back). A wrong
    password is not something to wait out: it ends the worker."""
    backoff = Backoff(most=5.0)
    while True:
        started = time.monotonic()
        try:
            await worker.async_run()
            return
        except AuthenticationError:
            raise
        except REDIS_DOWN as error:
            if time.monotonic() - started > 10:
                backoff.reset()
            log.warning("the %s worker lost Redis (%s); reconnecting", worker.queue_name, type(error).__name__)
            await backoff.wait()


async def serve(workers: list[Worker], groups: list[str]) -> None:
    """Run the workers, their listener and the heartbeat until cancelled."""
    tasks = [asyncio.create_task(keep_running(worker)) for worker in workers]
    ctx = workers[0].ctx
    while "redis" not in ctx:  # arq connects inside async_run and sets ctx["redis"]
        if any(task.done() for task in tasks):
            await asyncio.gather(*tasks)  # raises what ended it (a wrong password)
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
