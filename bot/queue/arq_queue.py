"""``ArqQueue``: jobs on arq queues in Redis, one queue per model group, for ``remixbot worker``
processes on any machine.

Waiting jobs are scored for fair share (``bot.fairness``) in Redis, so every bot and worker sees one
order. Progress and completion come back over pub/sub (no polling); a finished job's result waits
under ``result_key`` until this process has stored it, and is deleted then (with the job's other
keys). Nothing read from Redis is trusted: see ``bot.queue.wire``.

When Redis goes away (a restart, a network blip) the queue keeps reading with backoff; once it is
back, it waits one worker lease renewal (so a job still running on a worker has re-claimed itself)
and asks the service to check its unfinished jobs against Redis (``on_reconnect``): results that
arrived meanwhile are delivered, jobs Redis lost are queued again. Submissions while Redis is down
fail at once with ``QueueUnavailable``.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import time
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

from arq import ArqRedis, create_pool
from redis.asyncio.client import Pipeline, PubSub
from redis.exceptions import OutOfMemoryError

from bot import metrics
from bot.fairness import ORIGIN, assign, estimate, server_of, user_of
from bot.jobs import Event, Job, Result, Status
from bot.models import ModelEntry
from bot.queue.pacing import Announcements
from bot.queue.port import Listener, QueueUnavailable, Reconnected, tell
from bot.queue.reconnect import REDIS_DOWN, subscription
from bot.queue.wire import (
    FAIR_STATE_SCRIPT,
    FAIR_TTL,
    ORDER_SCRIPT,
    ORDER_SCRIPT_ARGS,
    RATES_KEY,
    RUN_JOB,
    WORKER_PREFIX,
    Unreadable,
    arq_job_key,
    arq_keys,
    cancel_channel,
    cancel_key,
    decode_event,
    decode_heartbeat,
    decode_rates,
    events_channel,
    fair_key,
    in_progress_key,
    leftovers,
    merge_heartbeats,
    number,
    pack_arq,
    queue_name,
    queued_channel,
    read_result,
    redis_settings,
    transact,
    unpack_arq,
)
from bot.settings import MAX_RESULT_BYTES

log = logging.getLogger(__name__)

REFUSED: tuple[type[BaseException], ...] = (*REDIS_DOWN, OutOfMemoryError)  # what submit turns away
UNREACHABLE = "The job queue can't be reached right now, so nothing was queued. Please try again in a minute."
FULL = "The job queue is full right now, so nothing was queued. Please try again later."
UNREADABLE_RESULT = "This job's result couldn't be read back, so it was dropped. Please try again."


def _score_time(score: int) -> datetime:
    """The datetime arq turns back into ``score``; never later than now, so the job is eligible at once."""
    return datetime.fromtimestamp(min(score, time.time() * 1000) / 1000, tz=UTC)


class ArqQueue:
    """Jobs on arq queues in Redis (one per model group), scored for fair share; events over pub/sub."""

    def __init__(
        self,
        redis_url: str,
        *,
        job_timeout: int = 900,
        result_ttl: int = 7 * 24 * 3600,
        max_result_bytes: int = MAX_RESULT_BYTES,
        lease: float = 30.0,
        weights: Mapping[str, float] | None = None,
        announce_every: float = 1.0,
    ):
        self._url = redis_url
        self._job_timeout = job_timeout
        self._result_ttl = result_ttl
        self._max_result_bytes = max_result_bytes
        self._settle = lease / 3 + 1.0  # a worker renews its claims every lease/3: wait for one renewal
        self._weights = dict(weights or {})
        self._listener: Listener | None = None
        self._on_reconnect: Reconnected | None = None
        self._pool: ArqRedis | None = None
        self._pubsub: PubSub | None = None
        self._cancel_channel = self._queued_channel = ""
        self._reader: asyncio.Task[None] | None = None
        self._reconciling: asyncio.Task[None] | None = None
        self._groups: dict[str, str] = {}  # unfinished job id → group, for jobs seen here
        self._models: dict[str, str] = {}  # unfinished job id → model, for ETAs
        self._announced: dict[str, int] = {}
        self._announcements = Announcements(self._announce, announce_every)
        self._serving: tuple[float, dict[str, int]] = (float("-inf"), {})  # when counted, group → workers

    async def start(self, listener: Listener, on_reconnect: Reconnected | None = None) -> None:
        self._listener = listener
        self._on_reconnect = on_reconnect
        settings = redis_settings(self._url)
        self._cancel_channel = cancel_channel(settings.database)
        self._queued_channel = queued_channel(settings.database)
        self._pool = await create_pool(settings, job_serializer=pack_arq, job_deserializer=unpack_arq)
        self._pubsub = self._pool.pubsub()
        await self._pubsub.subscribe(events_channel(settings.database))
        self._reader = asyncio.create_task(self._read_events(self._pubsub))

    async def close(self) -> None:
        await self._announcements.close()
        for task in (self._reader, self._reconciling):
            if task is not None:
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
        if self._pubsub is not None:
            await self._pubsub.aclose()  # type: ignore[no-untyped-call]  # redis-py leaves it unannotated
        if self._pool is not None:
            await self._pool.aclose()

    @property
    def redis(self) -> ArqRedis:
        if self._pool is None:
            raise RuntimeError("the queue is not started")
        return self._pool

    async def submit(self, job: Job) -> int:
        """Raises QueueUnavailable when Redis is unreachable or full (nothing was queued then)."""
        self._groups[job.id] = job.group
        self._models[job.id] = job.request.model
        try:
            score = await self._fair_score(job)
            await self.redis.enqueue_job(
                RUN_JOB,
                job.to_data(),
                _job_id=job.id,
                _queue_name=queue_name(job.group),
                _defer_until=_score_time(score),
                _expires=self._result_ttl,
            )
            await self.redis.publish(self._queued_channel, job.group)  # an idle worker needn't wait for its poll
        except REFUSED as error:
            self._forget(job.id)
            log.warning("job %s was not queued: %s", job.id, type(error).__name__)
            raise QueueUnavailable(FULL if isinstance(error, OutOfMemoryError) else UNREACHABLE) from None
        self._announcements.soon(job.group)
        try:
            return await self.position(job.id) or 0
        except REDIS_DOWN:  # queued, but Redis went away just now: the position is not known
            return 0

    async def _fair_score(self, job: Job) -> int:
        """The job's fair start tag; updates the queue's share state in Redis atomically."""
        server, user = server_of(job.origin), user_of(job.origin)
        clock_key, users_key, queue = fair_key(job.group), fair_key(job.group, server), queue_name(job.group)

        async def tag(pipe: Pipeline) -> int:
            clock, flat, head = await pipe.eval(FAIR_STATE_SCRIPT, 3, clock_key, users_key, queue)  # type: ignore[misc]
            finishes = {}
            for name, value in zip(flat[::2], flat[1::2], strict=True):
                finish = number(value)
                if finish is not None:
                    finishes[name.decode(errors="replace")] = finish
            now = number(clock)
            tags = assign(
                head=number(head),
                clock=now if now is not None else ORIGIN,
                finishes=finishes,
                user=user,
                weight=self._weights.get(server, 1.0),
            )
            pipe.multi()  # type: ignore[no-untyped-call]  # redis-py leaves Pipeline.multi unannotated
            pipe.hset(clock_key, "clock", repr(tags.clock))
            if tags.stale:
                pipe.hdel(users_key, *tags.stale)
            pipe.hset(users_key, user, repr(tags.finish))
            pipe.expire(clock_key, FAIR_TTL)
            pipe.expire(users_key, FAIR_TTL)
            return tags.score

        return await transact(self.redis, [clock_key, users_key], tag)

    async def recover(self, job: Job) -> None:
        """Deliver the job's stored result, or tell that a worker runs it, or leave it in its queue; a
        job Redis doesn't know (lost in a restart without persistence) is queued again."""
        self._groups[job.id] = job.group
        self._models[job.id] = job.request.model
        try:
            stored = await read_result(self.redis, job.id, self._max_result_bytes)
        except Unreadable as error:
            log.error("the stored result of job %s is unreadable (%s); failing it", job.id, error)
            stored = Result(job.id, Status.failed, error=UNREADABLE_RESULT)
        if stored is not None:
            await self._deliver(stored)
        elif await self.redis.exists(in_progress_key(job.id)):
            await self._emit(Event(job.id, Status.running))  # a worker has it: the history says so again
        elif await self.redis.zscore(queue_name(job.group), job.id) is not None:
            self._announcements.soon(job.group)
        else:
            log.info("job %s is unknown to Redis; queueing it again", job.id)
            await self.redis.delete(*arq_keys(job.id))
            await self.submit(job)

    async def order(self, group: str) -> tuple[list[str], list[str]]:
        """The group's queue: job ids a worker runs now, and those waiting, in the order they will run."""
        running, waiting = await self.redis.eval(ORDER_SCRIPT, 1, queue_name(group), *ORDER_SCRIPT_ARGS)  # type: ignore[misc]
        return [job_id.decode() for job_id in running], [job_id.decode() for job_id in waiting]

    async def position(self, job_id: str) -> int | None:
        group = self._groups.get(job_id)
        if group is None:
            return None
        running, waiting = await self.order(group)
        if job_id in waiting:
            return waiting.index(job_id) + 1
        return 0 if job_id in running or await self.redis.exists(in_progress_key(job_id)) else None

    async def cancel(self, job_id: str) -> bool:
        group = self._groups.get(job_id)
        # a worker that claims the job after this reads the key and stops at its first step
        await self.redis.set(cancel_key(job_id), b"1", ex=self._job_timeout + 60)
        running = await self.redis.exists(in_progress_key(job_id))  # a running job stays in its queue
        if group is not None and not running and await self.redis.zrem(queue_name(group), job_id):
            await self.redis.delete(arq_job_key(job_id))
            self._forget(job_id)
            self._announcements.soon(group)
            await self._emit(Event(job_id, Status.cancelled, result=Result(job_id, Status.cancelled)))
            return True
        await self.redis.publish(self._cancel_channel, job_id)
        return bool(running)

    async def heartbeats(self) -> list[dict[str, Any]]:
        """What each live worker last said about itself (device, memory, groups, models)."""
        keys = [key async for key in self.redis.scan_iter(match=WORKER_PREFIX + "*", count=1000)]
        values = await self.redis.mget(keys) if keys else []
        return [beat for value in values if value and (beat := decode_heartbeat(value)) is not None]

    async def availability(self, models: Iterable[ModelEntry]) -> dict[str, str | None]:
        """Model availability from the live workers; raises QueueUnavailable while Redis is unreachable."""
        try:
            beats = await self.heartbeats()
        except REDIS_DOWN:
            raise QueueUnavailable(UNREACHABLE) from None
        return merge_heartbeats(beats, models)

    async def rates(self) -> dict[str, float]:
        """Model → measured seconds per job (moving average, kept in Redis by the workers)."""
        return decode_rates(await self.redis.hgetall(RATES_KEY))  # type: ignore[misc]

    async def _workers_serving(self, group: str) -> int:
        counted, serving = self._serving
        if time.monotonic() - counted > 5.0:
            beats = await self.heartbeats()
            serving = collections.Counter(served for beat in beats for served in beat.get("groups", []))
            self._serving = (time.monotonic(), serving)
        return serving.get(group, 0)

    async def _announce(self, group: str) -> None:
        try:
            running, waiting = await self.order(group)
        except REDIS_DOWN as error:  # positions are news, not state: the next change announces again
            log.warning("announcing positions in the %s queue: Redis is unreachable (%s)", group, type(error).__name__)
            return
        metrics.queue_depth(group, len(waiting))
        if not any(job_id in self._groups for job_id in waiting):
            return
        rates, workers = await self.rates(), await self._workers_serving(group)
        ahead = [self._models.get(job_id, "") for job_id in running]
        models = [self._models.get(job_id, "") for job_id in waiting]
        for i, job_id in enumerate(waiting):
            if job_id not in self._groups or self._announced.get(job_id) == i + 1:
                continue
            self._announced[job_id] = i + 1
            eta = estimate(models[i], running=ahead, waiting=models[:i], rates=rates, workers=workers)
            await self._emit(Event(job_id, Status.queued, position=i + 1, eta_seconds=eta))

    def _forget(self, job_id: str) -> None:
        self._groups.pop(job_id, None)
        self._models.pop(job_id, None)
        self._announced.pop(job_id, None)

    # events ----------------------------------------------------------------------------------

    async def _read_events(self, pubsub: PubSub) -> None:
        """Events from the workers, for as long as the queue runs, through Redis outages."""
        async for message in subscription(pubsub, self._reconnected):
            try:
                await self._on_message(message["data"])
            except Exception:  # one event's trouble (Redis gone mid-way included) never stops the reader
                log.exception("handling a queue event failed")

    def _reconnected(self) -> None:
        log.info("Redis is back; checking unfinished jobs in %.0f s", self._settle)
        if self._reconciling is not None:
            self._reconciling.cancel()  # one check after the latest reconnect is enough
        self._reconciling = asyncio.create_task(self._reconcile())

    async def _reconcile(self) -> None:
        await asyncio.sleep(self._settle)
        if self._on_reconnect is None:
            return
        try:
            await self._on_reconnect()
        except Exception:
            log.exception("checking unfinished jobs after a reconnect failed")

    async def _on_message(self, data: object) -> None:
        try:
            event = decode_event(data)
        except Unreadable as error:
            log.warning("ignoring a message on the events channel: %s", error)
            return
        if event.total == 0:  # a job started or finished: positions in its queue moved
            for group in {self._groups.get(event.job_id), *self._groups.values()} - {None}:
                self._announcements.soon(group)  # type: ignore[arg-type]  # None was taken out
        if event.job_id not in self._groups:
            return  # not a job of this process (or delivered already)
        if not event.status.finished:
            if event.status is Status.running and event.total == 0:
                self._announced.pop(event.job_id, None)
            await self._emit(event)
            return
        result = event.result  # a failure or a cancel comes along; outputs wait under result_key
        if result is None or result.job_id != event.job_id:
            try:
                result = await read_result(self.redis, event.job_id, self._max_result_bytes)
            except Unreadable as error:
                log.error("the result of job %s is unreadable (%s); failing it", event.job_id, error)
                result = Result(event.job_id, Status.failed, error=UNREADABLE_RESULT)
            if result is None:
                log.warning("finished event but no stored result", extra={"job_id": event.job_id})
                return
        await self._deliver(result)

    async def _deliver(self, result: Result) -> None:
        """Hand a finished job to the listener; once it has stored the result, clear the job from Redis."""
        self._forget(result.job_id)
        if await self._emit(Event(result.job_id, result.status, result=result)):
            await self.redis.delete(*leftovers(result.job_id))

    async def _emit(self, event: Event) -> bool:
        return await tell(self._listener, event)
