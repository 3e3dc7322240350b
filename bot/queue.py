"""The JobQueue port and its two implementations.

``LocalQueue`` is the embedded default: the engine runs in this process (its own thread per model
group, so the event loop never blocks). ``ArqQueue`` puts jobs on arq queues in Redis, one queue per
model group, for ``remixbot worker`` processes on any machine; progress and completion come back
over Redis pub/sub (no polling), results as bytes under a key with a TTL.

Both order waiting jobs by fair share (``bot.fairness``: users of a chat/server take turns, servers
share by weight), report the same ``Event``s to one listener — waiting jobs hear their position and
an ETA from measured seconds per job of each model whenever their position changes (at most once a
second per queue) — and both cancel a queued or running job: a running one stops at its next step
(the engine checks a flag at every step).
"""

from __future__ import annotations

import asyncio
import bisect
import collections
import itertools
import json
import logging
import pickle
import threading
import time
from collections.abc import Awaitable, Callable, Mapping
from datetime import UTC, datetime
from typing import Protocol

from bot import metrics
from bot.fairness import ORIGIN, Share, assign, estimate, server_of, update_rate, user_of
from bot.jobs import Event, Job, Result, Status
from bot.logs import job_context

log = logging.getLogger(__name__)

Listener = Callable[[Event], Awaitable[None]]
ProgressReport = Callable[[int, int], None]


class Engine(Protocol):
    """What runs jobs: engine.runner.Engine, in this process or in a worker."""

    async def run(self, job: Job, on_progress: ProgressReport, cancel: threading.Event) -> Result: ...


class JobQueue(Protocol):
    async def start(self, listener: Listener) -> None: ...
    async def close(self) -> None: ...
    async def submit(self, job: Job) -> int:
        """Enqueue; returns the queue position (1 = next). Submitting a known job id is a no-op."""

    async def position(self, job_id: str) -> int | None: ...
    async def cancel(self, job_id: str) -> bool:
        """True when the job was queued or running and is now being cancelled."""

    async def recover(self, job: Job) -> None:
        """After a restart: make sure an unfinished job from the history runs (once) or reports."""


class Announcements:
    """Per-queue passes that tell waiting jobs their position, at most one pass per ``every`` seconds."""

    def __init__(self, announce: Callable[[str], Awaitable[None]], every: float):
        self._announce = announce
        self._every = every
        self._tasks: dict[str, asyncio.Task] = {}
        self._last: dict[str, float] = {}

    def soon(self, group: str) -> None:
        if group not in self._tasks:
            self._tasks[group] = asyncio.get_running_loop().create_task(self._pass(group))

    async def _pass(self, group: str) -> None:
        loop = asyncio.get_running_loop()
        try:
            await asyncio.sleep(max(0.0, self._last.get(group, -self._every) + self._every - loop.time()))
        finally:
            self._tasks.pop(group, None)  # a change from now on schedules the next pass
        self._last[group] = loop.time()
        try:
            await self._announce(group)
        except Exception:
            log.exception("announcing positions in the %s queue failed", group)

    async def close(self) -> None:
        tasks = list(self._tasks.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


class ProgressGate:
    """Lets a job's progress through at most every ``every`` seconds, and always its first and last
    step: a chat shows a few updates a second at most, and every event costs the bot a history read."""

    def __init__(self, every: float = 0.25):
        self._every = every
        self._last = float("-inf")

    def passes(self, step: int, total: int) -> bool:
        now = time.monotonic()
        if step < total and now - self._last < self._every:
            return False
        self._last = now
        return True


def resident(engine: Engine) -> set[str]:
    """The models an engine holds in memory (empty for an engine that doesn't say)."""
    return set(getattr(engine, "resident", list)())


def observe(job: Job, result: Result, run_seconds: float, loaded_before: set[str], engine: Engine) -> None:
    """Metrics of one finished job: its outcome, run time and whether it loaded its model."""
    metrics.job_finished(job.group, job.request.model, result.status.value, run_seconds)
    if job.request.model not in loaded_before and job.request.model in resident(engine):
        metrics.model_loaded(job.request.model)


class LocalQueue:
    """In-process queue: waiting jobs in fair order and one consumer task per model group.

    A group runs one job at a time, or as many as the engine's ``concurrency(group)`` says (so its
    batcher sees them together).
    """

    def __init__(self, engine: Engine, *, weights: Mapping[str, float] | None = None, announce_every: float = 1.0):
        self._engine = engine
        self._weights = dict(weights or {})  # server (bot.fairness.server_of) → weight; 1 when absent
        self._listener: Listener | None = None
        # group → its waiting jobs as (score, order of arrival, job id), smallest first
        self._waiting: dict[str, list[tuple[int, int, str]]] = collections.defaultdict(list)
        self._jobs: dict[str, Job] = {}  # waiting jobs by id
        self._shares: dict[str, Share] = collections.defaultdict(Share)
        self._scores: dict[str, dict[str, int]] = collections.defaultdict(dict)  # group → running job → score
        self._order = itertools.count()
        self._wake: dict[str, asyncio.Event] = {}
        self._consumers: dict[str, asyncio.Task] = {}
        self._running: dict[str, tuple[Job, threading.Event]] = {}
        self._runs: set[asyncio.Task] = set()
        self._rates: dict[str, float] = {}  # model → moving average of seconds per job
        self._announced: dict[str, int] = {}  # waiting job → the position it last heard
        self._announcements = Announcements(self._announce, announce_every)

    async def start(self, listener: Listener) -> None:
        self._listener = listener

    async def close(self) -> None:
        for _, cancel in self._running.values():
            cancel.set()
        tasks = [*self._consumers.values(), *self._runs]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._consumers.clear()
        await self._announcements.close()

    async def submit(self, job: Job) -> int:
        if job.id in self._jobs or job.id in self._running:
            return await self.position(job.id) or 0
        waiting = self._waiting[job.group]
        heads = list(self._scores[job.group].values()) + ([waiting[0][0]] if waiting else [])
        weight = self._weights.get(server_of(job.origin), 1.0)
        score = self._shares[job.group].tag(job.origin, min(heads, default=None), weight)
        bisect.insort(waiting, (score, next(self._order), job.id))
        self._jobs[job.id] = job
        if job.group not in self._consumers:
            self._wake[job.group] = asyncio.Event()
            self._consumers[job.group] = asyncio.create_task(self._consume(job.group))
        self._wake[job.group].set()
        self._changed(job.group)
        return await self.position(job.id) or 0

    async def recover(self, job: Job) -> None:
        await self.submit(job)

    async def position(self, job_id: str) -> int | None:
        if job_id in self._running:
            return 0
        job = self._jobs.get(job_id)
        if job is None:
            return None
        return next(i + 1 for i, (_, _, waiting) in enumerate(self._waiting[job.group]) if waiting == job_id)

    async def cancel(self, job_id: str) -> bool:
        job = self._jobs.pop(job_id, None)
        if job is not None:
            waiting = self._waiting[job.group]
            waiting[:] = [entry for entry in waiting if entry[2] != job_id]
            self._announced.pop(job_id, None)
            self._changed(job.group)
            await self._emit(Event(job_id, Status.cancelled, result=Result(job_id, Status.cancelled)))
            return True
        if job_id in self._running:
            self._running[job_id][1].set()
            return True
        return False

    def rates(self) -> dict[str, float]:
        """Model → measured seconds per job (moving average)."""
        return dict(self._rates)

    def _changed(self, group: str) -> None:
        metrics.queue_depth(group, len(self._waiting[group]))
        self._announcements.soon(group)

    async def _consume(self, group: str) -> None:
        waiting, wake, running = self._waiting[group], self._wake[group], self._scores[group]
        concurrency = getattr(self._engine, "concurrency", None)
        limit = max(1, int(concurrency(group))) if concurrency else 1
        while True:
            while not waiting or len(running) >= limit:
                wake.clear()
                await wake.wait()
            score, _, job_id = waiting.pop(0)
            job = self._jobs.pop(job_id)
            self._announced.pop(job_id, None)
            running[job_id] = score
            cancel = threading.Event()
            self._running[job.id] = (job, cancel)
            self._changed(group)
            task = asyncio.create_task(self._run(job, cancel))
            self._runs.add(task)
            task.add_done_callback(self._runs.discard)

    def _ran(self, job: Job) -> None:
        self._scores[job.group].pop(job.id, None)
        self._wake[job.group].set()

    async def _run(self, job: Job, cancel: threading.Event) -> None:
        with job_context(job.id):
            started = time.time()
            metrics.job_started(job.group, started - job.created_at)
            await self._emit(Event(job.id, Status.running))

            gate = ProgressGate()

            def on_progress(step: int, total: int) -> None:
                if gate.passes(step, total):
                    asyncio.ensure_future(self._emit(Event(job.id, Status.running, step=step, total=total)))

            loaded = resident(self._engine)
            try:
                result = await self._engine.run(job, on_progress, cancel)
            except Exception:  # the engine turns errors into results; this is a last line of defence
                log.exception("engine crashed on job %s", job.id)
                result = Result(job.id, Status.failed, error="Something went wrong while rendering.")
            finally:
                del self._running[job.id]
                self._ran(job)
            model = job.request.model
            if result.status is Status.done:
                self._rates[model] = update_rate(self._rates.get(model), result.seconds)
            observe(job, result, time.time() - started, loaded, self._engine)
            await self._emit(Event(job.id, result.status, result=result))

    async def _announce(self, group: str) -> None:
        running = [job.request.model for job, _ in self._running.values() if job.group == group]
        waiting = [self._jobs[job_id] for _, _, job_id in self._waiting[group] if job_id in self._jobs]
        models = [job.request.model for job in waiting]
        for i, job in enumerate(waiting):
            if self._announced.get(job.id) == i + 1 or job.id not in self._jobs:
                continue
            self._announced[job.id] = i + 1
            eta = estimate(models[i], running=running, waiting=models[:i], rates=self._rates, workers=1)
            await self._emit(Event(job.id, Status.queued, position=i + 1, eta_seconds=eta))

    async def _emit(self, event: Event) -> None:
        if self._listener is None:
            return
        with job_context(event.job_id):  # the listener's log lines name the job
            try:
                await self._listener(event)
            except Exception:
                log.exception("event listener failed for job %s", event.job_id)


# Redis keys and channels shared by ArqQueue (bot side) and engine.worker (worker side).
IN_PROGRESS_PREFIX = "arq:in-progress:"  # arq's claim on a running job (with a TTL)
RATES_KEY = "remixbot:rates"  # hash: model → moving average of seconds per job
FAIR_TTL = 24 * 3600  # fair-share state of a queue nobody used for this long is forgotten


def events_channel(database: int) -> str:
    """Progress and completion, worker → bots. Pub/sub spans a Redis server's databases: one per database."""
    return f"remixbot:events:{database}"


def cancel_channel(database: int) -> str:
    """Cancel requests for running jobs, bots → workers."""
    return f"remixbot:cancel:{database}"


def queued_channel(database: int) -> str:
    """A job was queued in a group (the message): workers of that group with room take it at once."""
    return f"remixbot:queued:{database}"


def queue_name(group: str) -> str:
    return f"remixbot:queue:{group}"


def result_key(job_id: str) -> str:
    return f"remixbot:result:{job_id}"


def cancel_key(job_id: str) -> str:
    return f"remixbot:cancel:{job_id}"


def fair_key(group: str, server: str = "") -> str:
    """The queue's clock (a hash with field "clock"), or a server's users' finish tags (user → tag)."""
    return f"remixbot:fair:{group}" + (f":users:{server}" if server else "")


WORKER_PREFIX = "remixbot:worker:"  # + worker id → JSON heartbeat with a TTL

# A queue's jobs in order, split into those a worker has claimed and those still waiting.
ORDER_SCRIPT = """
local running, waiting = {}, {}
for _, id in ipairs(redis.call('ZRANGE', KEYS[1], 0, -1)) do
  if redis.call('EXISTS', ARGV[1] .. id) == 1 then
    table.insert(running, id)
  else
    table.insert(waiting, id)
  end
end
return {running, waiting}
"""


# A queue's fair-share state in one round trip: its clock, its server's users' finish tags, its head.
FAIR_STATE_SCRIPT = """
local head = redis.call('ZRANGE', KEYS[3], 0, 0, 'WITHSCORES')
return {redis.call('HGET', KEYS[1], 'clock'), redis.call('HGETALL', KEYS[2]), head[2] or false}
"""


def merge_heartbeats(beats: list[dict], models) -> dict[str, str | None]:
    """Model availability from live workers' heartbeats: ready where any worker of its group has it."""
    merged: dict[str, str | None] = {}
    for entry in models:
        serving = [beat for beat in beats if entry.queue_group in beat.get("groups", [])]
        if not serving:
            merged[entry.name] = f"no worker is serving the {entry.queue_group!r} group right now"
            continue
        reasons = [beat.get("availability", {}).get(entry.name, "unknown to the worker") for beat in serving]
        merged[entry.name] = None if None in reasons else reasons[0]
    return merged


def describe_worker(beat: dict) -> str:
    """One line about a live worker from its heartbeat: where, on what device, how much memory."""
    gib = 1024**3
    gpu = beat.get("gpu")
    if gpu:
        device = (
            f"{gpu['device']} {gpu['name']} ({(gpu['total'] - gpu['free']) / gib:.1f} of "
            f"{gpu['total'] / gib:.1f} GiB in use)"
        )
    else:
        device = beat.get("device") or "auto"
    running = len(beat.get("running", []))
    return (
        f"{beat.get('id', '?')}: {device}, {beat.get('rss_bytes', 0) / gib:.2f} GiB RAM; "
        f"groups {', '.join(beat.get('groups', []))}; {running} job{'s' if running != 1 else ''} running"
    )


def encode_event(event: Event) -> str:
    """Events cross pub/sub as JSON without outputs (results travel under result_key)."""
    data = event.to_data()
    data["result"] = None
    return json.dumps(data)


def decode_event(text: str | bytes) -> Event:
    return Event.from_data(json.loads(text))


def encode_result(result: Result) -> bytes:
    return pickle.dumps(result.to_data(), protocol=pickle.HIGHEST_PROTOCOL)


def decode_result(data: bytes) -> Result:
    return Result.from_data(pickle.loads(data))


async def transact(redis, keys: list[str], work: Callable[..., Awaitable[object]]) -> object:
    """Run ``work(pipe)`` in a WATCH/MULTI transaction on ``keys`` until no one else changed them.

    ``work`` reads with the pipe (immediate mode), calls ``pipe.multi()`` and queues the writes.
    """
    from redis.exceptions import WatchError

    async with redis.pipeline(transaction=True) as pipe:
        while True:
            try:
                await pipe.watch(*keys)
                value = await work(pipe)
                await pipe.execute()
                return value
            except WatchError:
                continue


async def record_rate(redis, model: str, seconds: float) -> float:
    """Fold one run of ``model`` into the shared seconds-per-job average (workers call this)."""

    async def fold(pipe) -> float:
        old = await pipe.hget(RATES_KEY, model)
        rate = update_rate(float(old) if old is not None else None, seconds)
        pipe.multi()
        pipe.hset(RATES_KEY, model, repr(rate))
        return rate

    return await transact(redis, [RATES_KEY], fold)


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
        weights: Mapping[str, float] | None = None,
        announce_every: float = 1.0,
    ):
        self._url = redis_url
        self._job_timeout = job_timeout
        self._result_ttl = result_ttl
        self._weights = dict(weights or {})
        self._listener: Listener | None = None
        self._pool = None
        self._pubsub = None
        self._order_script = None
        self._cancel_channel = self._queued_channel = ""
        self._reader: asyncio.Task | None = None
        self._groups: dict[str, str] = {}  # unfinished job id → group, for jobs seen here
        self._models: dict[str, str] = {}  # unfinished job id → model, for ETAs
        self._announced: dict[str, int] = {}
        self._announcements = Announcements(self._announce, announce_every)
        self._serving: tuple[float, dict[str, int]] = (float("-inf"), {})  # when counted, group → workers

    async def start(self, listener: Listener) -> None:
        from arq import create_pool
        from arq.connections import RedisSettings

        self._listener = listener
        redis_settings = RedisSettings.from_dsn(self._url)
        self._cancel_channel = cancel_channel(redis_settings.database)
        self._queued_channel = queued_channel(redis_settings.database)
        self._pool = await create_pool(redis_settings)
        self._order_script = self._pool.register_script(ORDER_SCRIPT)
        self._pubsub = self._pool.pubsub()
        await self._pubsub.subscribe(events_channel(redis_settings.database))
        self._reader = asyncio.create_task(self._read_events())

    async def close(self) -> None:
        await self._announcements.close()
        if self._reader:
            self._reader.cancel()
            await asyncio.gather(self._reader, return_exceptions=True)
        if self._pubsub is not None:
            await self._pubsub.aclose()
        if self._pool is not None:
            await self._pool.aclose()

    @property
    def redis(self):
        return self._pool

    async def submit(self, job: Job) -> int:
        self._groups[job.id] = job.group
        self._models[job.id] = job.request.model
        score = await self._fair_score(job)
        await self._pool.enqueue_job(
            "run_job",
            job.to_data(),
            _job_id=job.id,
            _queue_name=queue_name(job.group),
            _defer_until=_score_time(score),
            _expires=self._result_ttl,
        )
        await self._pool.publish(self._queued_channel, job.group)  # an idle worker needn't wait for its poll
        self._announcements.soon(job.group)
        return await self.position(job.id) or 0

    async def _fair_score(self, job: Job) -> int:
        """The job's fair start tag; updates the queue's share state in Redis atomically."""
        server, user = server_of(job.origin), user_of(job.origin)
        clock_key, users_key, queue = fair_key(job.group), fair_key(job.group, server), queue_name(job.group)

        async def tag(pipe) -> int:
            clock, flat, head = await pipe.eval(FAIR_STATE_SCRIPT, 3, clock_key, users_key, queue)
            finishes = {flat[i].decode(): float(flat[i + 1]) for i in range(0, len(flat), 2)}
            tags = assign(
                head=float(head) if head is not None else None,
                clock=float(clock) if clock is not None else ORIGIN,
                finishes=finishes,
                user=user,
                weight=self._weights.get(server, 1.0),
            )
            pipe.multi()
            pipe.hset(clock_key, "clock", repr(tags.clock))
            if tags.stale:
                pipe.hdel(users_key, *tags.stale)
            pipe.hset(users_key, user, repr(tags.finish))
            pipe.expire(clock_key, FAIR_TTL)
            pipe.expire(users_key, FAIR_TTL)
            return tags.score

        return await transact(self._pool, [clock_key, users_key], tag)

    async def recover(self, job: Job) -> None:
        self._groups[job.id] = job.group
        self._models[job.id] = job.request.model
        stored = await self._pool.get(result_key(job.id))
        if stored is not None:
            result = decode_result(stored)
            await self._emit(Event(job.id, result.status, result=result))
            return
        in_queue = await self._pool.zscore(queue_name(job.group), job.id) is not None
        in_progress = await self._pool.exists(IN_PROGRESS_PREFIX + job.id)
        if not (in_queue or in_progress):
            await self._pool.delete(f"arq:job:{job.id}", f"arq:result:{job.id}")
            await self.submit(job)

    async def order(self, group: str) -> tuple[list[str], list[str]]:
        """The group's queue: job ids a worker runs now, and those waiting, in the order they will run."""
        running, waiting = await self._order_script(keys=[queue_name(group)], args=[IN_PROGRESS_PREFIX])
        return [job_id.decode() for job_id in running], [job_id.decode() for job_id in waiting]

    async def position(self, job_id: str) -> int | None:
        group = self._groups.get(job_id)
        if group is None:
            return None
        running, waiting = await self.order(group)
        if job_id in waiting:
            return waiting.index(job_id) + 1
        return 0 if job_id in running or await self._pool.exists(IN_PROGRESS_PREFIX + job_id) else None

    async def cancel(self, job_id: str) -> bool:
        group = self._groups.get(job_id)
        await self._pool.set(cancel_key(job_id), b"1", ex=self._result_ttl)
        if group is not None and await self._pool.zrem(queue_name(group), job_id):
            await self._pool.delete(f"arq:job:{job_id}")
            self._forget(job_id)
            self._announcements.soon(group)
            await self._emit(Event(job_id, Status.cancelled, result=Result(job_id, Status.cancelled)))
            return True
        running = await self._pool.exists(IN_PROGRESS_PREFIX + job_id)
        await self._pool.publish(self._cancel_channel, job_id)
        return bool(running)

    async def heartbeats(self) -> list[dict]:
        """What each live worker last said about itself (device, memory, groups, models)."""
        keys = [key async for key in self._pool.scan_iter(match=WORKER_PREFIX + "*", count=1000)]
        values = await self._pool.mget(keys) if keys else []
        return [json.loads(value) for value in values if value]

    async def availability(self, models) -> dict[str, str | None]:
        return merge_heartbeats(await self.heartbeats(), models)

    async def rates(self) -> dict[str, float]:
        """Model → measured seconds per job (moving average, kept in Redis by the workers)."""
        stored = await self._pool.hgetall(RATES_KEY)
        return {name.decode(): float(value) for name, value in stored.items()}

    async def _workers_serving(self, group: str) -> int:
        counted, serving = self._serving
        if time.monotonic() - counted > 5.0:
            beats = await self.heartbeats()
            serving = collections.Counter(served for beat in beats for served in beat.get("groups", []))
            self._serving = (time.monotonic(), serving)
        return serving.get(group, 0)

    async def _announce(self, group: str) -> None:
        running, waiting = await self.order(group)
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

    async def _read_events(self) -> None:
        while True:
            try:
                message = await self._pubsub.get_message(ignore_subscribe_messages=True, timeout=1.0)
                if message is None:
                    continue
                event = decode_event(message["data"])
                if event.total == 0:  # a job started or finished: positions in its queue moved
                    for group in {self._groups.get(event.job_id), *self._groups.values()} - {None}:
                        self._announcements.soon(group)
                if event.job_id not in self._groups:
                    continue  # not a job of this process (or delivered already)
                if event.status.finished:
                    stored = await self._pool.get(result_key(event.job_id))
                    if stored is None:
                        log.warning("finished event but no stored result", extra={"job_id": event.job_id})
                        continue
                    event = Event(event.job_id, event.status, result=decode_result(stored))
                    self._forget(event.job_id)
                elif event.status is Status.running and event.total == 0:
                    self._announced.pop(event.job_id, None)
                await self._emit(event)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("reading queue events failed; retrying")
                await asyncio.sleep(0.5)

    async def _emit(self, event: Event) -> None:
        if self._listener is None:
            return
        with job_context(event.job_id):  # the listener's log lines name the job
            try:
                await self._listener(event)
            except Exception:
                log.exception("event listener failed for job %s", event.job_id)
