"""The JobQueue port and its two implementations.

``LocalQueue`` is the embedded default: the engine runs in this process (its own thread per model
group, so the event loop never blocks). ``ArqQueue`` puts jobs on arq queues in Redis, one queue per
model group, for ``remixbot worker`` processes on any machine; progress and completion come back
over Redis pub/sub (no polling), results as bytes under a key with a TTL.

Both report the same ``Event``s to one listener, and both cancel a queued or running job: a
running one stops at its next step (the engine checks a flag at every step).
"""

from __future__ import annotations

import asyncio
import collections
import json
import logging
import pickle
import threading
from collections.abc import Awaitable, Callable
from typing import Protocol

from bot.jobs import Event, Job, Result, Status

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


class LocalQueue:
    """In-process queue: one FIFO and one consumer task per model group."""

    def __init__(self, engine: Engine):
        self._engine = engine
        self._listener: Listener | None = None
        self._pending: dict[str, collections.deque[Job]] = collections.defaultdict(collections.deque)
        self._wake: dict[str, asyncio.Event] = {}
        self._consumers: dict[str, asyncio.Task] = {}
        self._running: dict[str, threading.Event] = {}
        self._known: set[str] = set()

    async def start(self, listener: Listener) -> None:
        self._listener = listener

    async def close(self) -> None:
        for cancel in self._running.values():
            cancel.set()
        for task in self._consumers.values():
            task.cancel()
        await asyncio.gather(*self._consumers.values(), return_exceptions=True)
        self._consumers.clear()

    async def submit(self, job: Job) -> int:
        if job.id in self._known:
            return await self.position(job.id) or 0
        self._known.add(job.id)
        pending = self._pending[job.group]
        pending.append(job)
        if job.group not in self._consumers:
            self._wake[job.group] = asyncio.Event()
            self._consumers[job.group] = asyncio.create_task(self._consume(job.group))
        self._wake[job.group].set()
        return len(pending)

    async def recover(self, job: Job) -> None:
        await self.submit(job)

    async def position(self, job_id: str) -> int | None:
        for pending in self._pending.values():
            for i, job in enumerate(pending):
                if job.id == job_id:
                    return i + 1
        return 0 if job_id in self._running else None

    async def cancel(self, job_id: str) -> bool:
        for group, pending in self._pending.items():
            for job in pending:
                if job.id == job_id:
                    pending.remove(job)
                    self._known.discard(job_id)
                    result = Result(job_id=job_id, status=Status.cancelled)
                    await self._emit(Event(job_id, Status.cancelled, result=result))
                    await self._announce_positions(group)
                    return True
        if job_id in self._running:
            self._running[job_id].set()
            return True
        return False

    async def _consume(self, group: str) -> None:
        pending, wake = self._pending[group], self._wake[group]
        while True:
            while not pending:
                wake.clear()
                await wake.wait()
            job = pending.popleft()
            await self._announce_positions(group)
            await self._run(job)

    async def _run(self, job: Job) -> None:
        cancel = self._running[job.id] = threading.Event()
        await self._emit(Event(job.id, Status.running))

        def on_progress(step: int, total: int) -> None:
            asyncio.ensure_future(self._emit(Event(job.id, Status.running, step=step, total=total)))

        try:
            result = await self._engine.run(job, on_progress, cancel)
        except Exception:  # the engine turns errors into results; this is a last line of defence
            log.exception("engine crashed on job %s", job.id)
            result = Result(job.id, Status.failed, error="Something went wrong while rendering.")
        finally:
            del self._running[job.id]
            self._known.discard(job.id)
        await self._emit(Event(job.id, result.status, result=result))

    async def _announce_positions(self, group: str) -> None:
        for i, job in enumerate(list(self._pending[group])):
            await self._emit(Event(job.id, Status.queued, position=i + 1))

    async def _emit(self, event: Event) -> None:
        if self._listener is None:
            return
        try:
            await self._listener(event)
        except Exception:
            log.exception("event listener failed for job %s", event.job_id)


# Redis keys and channels shared by ArqQueue (bot side) and engine.worker (worker side).
EVENTS_CHANNEL = "remixbot:events"
CANCEL_CHANNEL = "remixbot:cancel"


def queue_name(group: str) -> str:
    return f"remixbot:queue:{group}"


def result_key(job_id: str) -> str:
    return f"remixbot:result:{job_id}"


def cancel_key(job_id: str) -> str:
    return f"remixbot:cancel:{job_id}"


WORKER_PREFIX = "remixbot:worker:"  # + worker id → JSON heartbeat with a TTL


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


class ArqQueue:
    """Jobs on arq queues in Redis (one per model group); events over pub/sub."""

    def __init__(self, redis_url: str, *, job_timeout: int = 900, result_ttl: int = 7 * 24 * 3600):
        self._url = redis_url
        self._job_timeout = job_timeout
        self._result_ttl = result_ttl
        self._listener: Listener | None = None
        self._pool = None
        self._pubsub = None
        self._reader: asyncio.Task | None = None
        self._groups: dict[str, str] = {}  # job id → group, for positions of jobs seen here

    async def start(self, listener: Listener) -> None:
        from arq import create_pool
        from arq.connections import RedisSettings

        self._listener = listener
        self._pool = await create_pool(RedisSettings.from_dsn(self._url))
        self._pubsub = self._pool.pubsub()
        await self._pubsub.subscribe(EVENTS_CHANNEL)
        self._reader = asyncio.create_task(self._read_events())

    async def close(self) -> None:
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
        await self._pool.enqueue_job(
            "run_job", job.to_data(), _job_id=job.id, _queue_name=queue_name(job.group),
            _expires=self._result_ttl,
        )
        return await self.position(job.id) or 0

    async def recover(self, job: Job) -> None:
        self._groups[job.id] = job.group
        stored = await self._pool.get(result_key(job.id))
        if stored is not None:
            result = decode_result(stored)
            await self._emit(Event(job.id, result.status, result=result))
            return
        in_queue = await self._pool.zscore(queue_name(job.group), job.id) is not None
        in_progress = await self._pool.exists(f"arq:in-progress:{job.id}")
        if not (in_queue or in_progress):
            await self._pool.delete(f"arq:job:{job.id}", f"arq:result:{job.id}")
            await self.submit(job)

    async def position(self, job_id: str) -> int | None:
        group = self._groups.get(job_id)
        if group is None:
            return None
        rank = await self._pool.zrank(queue_name(group), job_id)
        if rank is not None:
            return rank + 1
        return 0 if await self._pool.exists(f"arq:in-progress:{job_id}") else None

    async def cancel(self, job_id: str) -> bool:
        group = self._groups.get(job_id)
        await self._pool.set(cancel_key(job_id), b"1", ex=self._result_ttl)
        if group is not None and await self._pool.zrem(queue_name(group), job_id):
            await self._pool.delete(f"arq:job:{job_id}")
            await self._emit(Event(job_id, Status.cancelled, result=Result(job_id, Status.cancelled)))
            return True
        running = await self._pool.exists(f"arq:in-progress:{job_id}")
        await self._pool.publish(CANCEL_CHANNEL, job_id)
        return bool(running)

    async def heartbeats(self) -> list[dict]:
        """What each live worker last said about itself (device, groups, models)."""
        keys = [key async for key in self._pool.scan_iter(match=WORKER_PREFIX + "*")]
        values = await self._pool.mget(keys) if keys else []
        return [json.loads(value) for value in values if value]

    async def availability(self, models) -> dict[str, str | None]:
        return merge_heartbeats(await self.heartbeats(), models)

    async def _read_events(self) -> None:
        while True:
            try:
                message = await self._pubsub.get_message(ignore_subscribe_messages=True, timeout=1.0)
                if message is None:
                    continue
                event = decode_event(message["data"])
                if event.status.finished:
                    stored = await self._pool.get(result_key(event.job_id))
                    if stored is None:
                        log.warning("finished event for %s but no stored result", event.job_id)
                        continue
                    event = Event(event.job_id, event.status, result=decode_result(stored))
                await self._emit(event)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("reading queue events failed; retrying")
                await asyncio.sleep(0.5)

    async def _emit(self, event: Event) -> None:
        if self._listener is None:
            return
        try:
            await self._listener(event)
        except Exception:
            log.exception("event listener failed for job %s", event.job_id)
